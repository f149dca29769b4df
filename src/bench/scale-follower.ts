/**
 * One follower in its own process, for scale.ts: loads the registry's snapshot into a
 * MeshState exactly as a ztunnel does (RegistryFollower, not a bench copy), then
 * prints one JSON line with the load time and this process's memory. Run by scale.ts
 * with --expose-gc so the settled figures are after a full collection; then once more
 * after the ztunnel's start-up reclaim (memory-reclaim.ts): what a ztunnel keeps at rest.
 *
 *   node --expose-gc dist/bench/scale-follower.js redis://127.0.0.1:PORT [NODE]
 *
 * With NODE, an experiment instead: the state keeps only NODE's workloads (and every
 * node, namespace, service and policy), what a ztunnel that fetched other nodes'
 * workloads on demand would hold at rest. Workloads are scanned in pages of 1,000
 * (HSCAN), so the load never holds the whole workload hash, as an on-demand reader
 * would not; the scan is not atomic, so only the settled heap and RSS count.
 */
import { performance } from 'node:perf_hooks';
import { rssBytes } from '../faults/observe';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { openRedis } from '../registry/connection';
import { DEFAULT_PREFIX, parseHashes, parseRecord, registryKeys } from '../registry/layout';
import { KINDS, type WorkloadRecord } from '../registry/types';
import { giveMemoryBack, loadNativeMemory } from '../ztunnel/memory-reclaim';

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
  /**
   * RSS after what a ztunnel does once its start-up is over (memory-reclaim.ts: V8's
   * compacting collection, then malloc_trim): what a ztunnel keeps at rest. Absent when
   * this machine did not build the native helper (the ztunnel then does not reclaim either).
   */
  reclaimedRss?: number;
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

/** The node-scoped experiment's load; its own function so nothing read stays reachable from main's frame. */
async function loadNodeScoped(url: string, node: string, state: MeshState): Promise<void> {
  const keys = registryKeys(DEFAULT_PREFIX);
  const redis = openRedis(url);
  try {
    const others = KINDS.filter((k) => k !== 'workload');
    const multi = redis.multi();
    for (const kind of others) multi.hgetall(keys.kind(kind));
    multi.get(keys.revision);
    const replies = ((await multi.exec()) ?? []).map(([err, v]) => { if (err) throw err; return v; });
    const onInvalid = () => {};
    const hashes = KINDS.map((k) => (k === 'workload' ? {} : replies[others.indexOf(k)] as Record<string, string>));
    const records = parseHashes(hashes, onInvalid);
    let cursor = '0';
    do {
      const [next, flat] = await redis.hscan(keys.kind('workload'), cursor, 'COUNT', 1000);
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const w = parseRecord('workload', flat[i]!, flat[i + 1]!, 'hash', onInvalid) as WorkloadRecord | undefined;
        if (w?.node === node) records.workload.push(w);
      }
      cursor = next;
    } while (cursor !== '0');
    state.replaceAll(records, Number(replies[others.length] ?? 0));
  } finally {
    redis.disconnect();
  }
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
    await loadNodeScoped(url, node, state);
  } else {
    const follower = new RegistryFollower({ url, state });
    await follower.start();
    await follower.stop();
  }
  const loadMs = performance.now() - t0;
  collect();
  const mem = process.memoryUsage();
  const report: FollowerLoadReport = {
    workloads: state.workloads().length, loadMs, baselineRss, rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, peakRss: rssBytes(process.pid, 'VmHWM'),
  };
  const native = loadNativeMemory();
  if (native) {
    giveMemoryBack(native);
    report.reclaimedRss = process.memoryUsage().rss;
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
