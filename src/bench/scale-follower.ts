/**
 * One follower in its own process, for scale.ts: loads the registry's snapshot into a
 * MeshState exactly as a ztunnel does (RegistryFollower, not a bench copy), then
 * prints one JSON line with the load time and this process's memory. Run by scale.ts
 * with --expose-gc so the settled figures are after a full collection.
 *
 *   node --expose-gc dist/bench/scale-follower.js redis://127.0.0.1:PORT
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';

export interface FollowerLoadReport {
  workloads: number;
  loadMs: number;
  /** RSS before the follower connected: Node, ioredis and the registry code loaded. */
  baselineRss: number;
  /** After the load and a full GC: what the process keeps while following. */
  rss: number;
  heapUsed: number;
  /** Peak RSS of the process (VmHWM): the load's transient copies included. */
  peakRss: number;
}

/** A field of /proc/self/status in bytes (Linux reports kB). */
function procStatusBytes(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

async function main(): Promise<void> {
  const url = process.argv[2];
  if (!url) throw new Error('usage: scale-follower.js <redis-url>');
  collect();
  const baselineRss = process.memoryUsage().rss;
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const follower = new RegistryFollower({ url, state });
  const t0 = performance.now();
  await follower.start();
  const loadMs = performance.now() - t0;
  await follower.stop();
  collect();
  const mem = process.memoryUsage();
  const report: FollowerLoadReport = {
    workloads: state.workloads().length, loadMs, baselineRss, rss: mem.rss, heapUsed: mem.heapUsed, peakRss: procStatusBytes('VmHWM'),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
