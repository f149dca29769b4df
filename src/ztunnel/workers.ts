/**
 * `--workers N|auto`: how many ztunnel processes serve one node's data path. Each
 * worker is a whole ztunnel (registry follower, certificates, HBONE pool, the three
 * proxy listeners) sharing the listening sockets through Node's `cluster` module; the
 * primary serves readiness and the aggregated metrics, restarts a worker that dies and
 * carries a shutdown to all of them (cluster-primary.ts, cluster-worker.ts).
 *
 * `auto` is the CPUs this process may use (the ones it may run on, and no more than its
 * container's CPU limit), capped: past a handful of workers the
 * per-worker cost (a registry view, certificates and tunnels each; measured in
 * docs/performance.md "Several ztunnel workers") buys less than a core's worth.
 */
import { availableParallelism } from 'node:os';
import type { HboneLimits } from '../hbone/limits';
import { readFileIfAny } from '../lib/files';

export const MAX_WORKERS = 16;
/** What `auto` stops at. */
export const AUTO_WORKERS_CAP = 8;

/** `quota period` in microseconds as CPUs; undefined for no limit (`max`, v1's -1) or anything else. */
function quotaCpus(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/**
 * The CPU limit of this process's cgroup in CPUs (a container's `resources.limits.cpu`:
 * cgroup v2 `cpu.max`, else v1's CFS quota and period), undefined when there is none.
 * Node 20's availableParallelism() ignores it, so in the DaemonSet (limit 2 CPUs) on a
 * 16-CPU node `auto` forked 8 workers: 8 views, certificates and pools in 2 CPUs, and
 * ~8x the memory against the pod's memory limit.
 */
export function cgroupCpuLimit(read: (path: string) => string | undefined = readFileIfAny): number | undefined {
  const v2 = read('/sys/fs/cgroup/cpu.max');
  if (v2 !== undefined) {
    const [quota, period] = v2.trim().split(/\s+/);
    return quotaCpus(quota, period);
  }
  return quotaCpus(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim(), read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim());
}

/** The CPUs this process may use: those it may run on, at most its cgroup's limit (rounded up: 1.5 CPUs are 2 workers' worth). */
export function usableCpus(limit: number | undefined = cgroupCpuLimit(), cpus: number = availableParallelism()): number {
  return limit === undefined ? cpus : Math.min(cpus, Math.ceil(limit));
}

/** Parses the flag's value; `cpus` is asked only for `auto`. Throws a sentence saying what is expected. */
export function parseWorkers(raw: string, cpus: () => number = usableCpus): number {
  if (raw === 'auto') return Math.max(1, Math.min(AUTO_WORKERS_CAP, cpus()));
  if (!/^\d+$/.test(raw)) throw new Error(`expected a whole number of worker processes (1-${MAX_WORKERS}) or auto (one per CPU, at most ${AUTO_WORKERS_CAP})`);
  const n = Number(raw);
  if (n < 1 || n > MAX_WORKERS) throw new Error(`expected 1 to ${MAX_WORKERS} worker processes, or auto`);
  return n;
}

/** The environment variable a forked worker learns its index from (0 owns capture and admin). */
export const WORKER_INDEX_ENV = 'WEFT_ZTUNNEL_WORKER_INDEX';

/** The HBONE limits that bound the whole node (src/hbone/limits.ts HboneNodeLimits), not one session. */
export type NodeWideHboneLimits = Pick<HboneLimits, 'nodeBufferBytes' | 'maxPendingDials' | 'maxPendingDialsPerIdentity' | 'maxHandshakes' | 'maxSessionsPerPeer'>;

/**
 * One worker's share of the node-wide HBONE limits: each worker enforces its own, so
 * with N workers each holds 1/N (rounded up) and the node's bound stays what the flags
 * say. Connections reach the workers round-robin, so a peer's sessions, handshakes and
 * dials spread over them as its bytes do.
 */
export function workerShare(node: NodeWideHboneLimits, workers: number): NodeWideHboneLimits {
  const share = (n: number) => Math.ceil(n / workers);
  return {
    nodeBufferBytes: share(node.nodeBufferBytes),
    maxPendingDials: share(node.maxPendingDials),
    maxPendingDialsPerIdentity: share(node.maxPendingDialsPerIdentity),
    maxHandshakes: share(node.maxHandshakes),
    maxSessionsPerPeer: share(node.maxSessionsPerPeer),
  };
}
