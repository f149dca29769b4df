/**
 * One follower in its own process, for scale.ts: loads the registry's snapshot into a
 * MeshState exactly as a ztunnel does (RegistryFollower, not a bench copy), then
 * prints one JSON line with the load time and this process's memory. Run by scale.ts
 * with --expose-gc so the settled figures are after a full collection.
 *
 *   node --expose-gc dist/bench/scale-follower.js redis://127.0.0.1:PORT [NODE]
 *
 * With NODE, an experiment instead: the state keeps only NODE's workloads (and every
 * node, namespace, service and policy), what a ztunnel that fetched other nodes'
 * workloads on demand would hold at rest. It is read with RegistryStore.snapshot(),
 * so the load's figures are not a follower's; only the settled heap and RSS count.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { RegistryStore } from '../registry/store';

export interface FollowerLoadReport {
  workloads: number;
  loadMs: number;
  /** RSS before the follower connected: Node, ioredis and the registry code loaded. */
  baselineRss: number;
  /** After the load and a full GC: what the process keeps while following. */
  rss: number;
  heapUsed: number;
  /** V8's heap reservation: heapUsed plus free space V8 has not returned. */
  heapTotal: number;
  /** Memory outside the JS heap (Buffers: the Redis replies while they are parsed). */
  external: number;
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
  if (!url) throw new Error('usage: scale-follower.js <redis-url> [node]');
  collect();
  const baselineRss = process.memoryUsage().rss;
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const node = process.argv[3];
  const t0 = performance.now();
  if (node) {
    const store = RegistryStore.connect(url);
    const { revision, records } = await store.snapshot();
    await store.close();
    state.replaceAll({ ...records, workload: records.workload.filter((w) => w.node === node) }, revision);
  } else {
    const follower = new RegistryFollower({ url, state });
    await follower.start();
    await follower.stop();
  }
  const loadMs = performance.now() - t0;
  collect();
  const mem = process.memoryUsage();
  const report: FollowerLoadReport = {
    workloads: state.workloads().length, loadMs, baselineRss, rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, peakRss: procStatusBytes('VmHWM'),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
