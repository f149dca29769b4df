/**
 * Scale benchmark (issue 13, "Scale beyond one machine"): what one Redis and the
 * followers cost as the mesh grows toward 1,000 nodes and 100,000 pods.
 *
 *   npm run build && flock /run/weft-bench.lock node dist/bench/scale.js [--quick]
 *     [--workloads 10000,30000,100000] [--followers 100,300,1000] [--changes 20]
 *     [--loads 3] [--storm 20]
 *   node dist/bench/scale.js --heap-breakdown [--workloads 100000]
 *
 * Starts its own redis-server on a free loopback port. Three parts:
 *  1. snapshot: for each registry size, a fresh follower in its OWN process
 *     (scale-follower.ts) loads the snapshot: time, RSS; Redis' CPU and bytes per load.
 *  2. storm: `--storm` clients read the largest snapshot at once, as nodes restarting
 *     together do: Redis CPU and bytes per snapshot served (raw replies, no parsing).
 *  3. fan-out: `--followers` RegistryFollowers in THIS process, each with its own
 *     MeshState, against a small registry; one change at a time, write → applied in
 *     every follower. One process applies every follower's copy on one core, so the
 *     latencies are an upper bound: a real node applies only its own.
 * Redis CPU is INFO cpu (used_cpu_sys + used_cpu_user), bytes are INFO stats
 * total_net_output_bytes, both as deltas around the measured phase.
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { formatBytes, formatTable, type Cell } from '../cli/output';
import { WeftError } from '../lib/errors';
import { inMiB } from '../lib/markdown';
import { openRedis } from '../registry/connection';
import { registryKeys, DEFAULT_PREFIX } from '../registry/layout';
import { RegistryStore } from '../registry/store';
import { KINDS } from '../registry/types';
import { redisCounters, startRedis } from './redis';
import { FOLLOWER_RSS_GOAL, populate, sizeFor, type PopulationSize } from './registry-population';
import { fanoutPhase, fanoutSize, rawFanout, type RawRow } from './scale-fanout';
import type { FollowerLoadReport } from './scale-follower';
import type { HeapBreakdown } from './scale-heap';
import { runBench } from './signals';
import { median } from './stats';


interface Args { workloads: number[]; followers: number[]; changes: number; loads: number; storm: number; fanoutWorkloads: number }

const DEFAULTS: Args = { workloads: [10_000, 30_000, 100_000], followers: [100, 300, 1000], changes: 20, loads: 3, storm: 20, fanoutWorkloads: 200 };
const QUICK: Args = { workloads: [3_000, 10_000], followers: [30, 100], changes: 10, loads: 2, storm: 5, fanoutWorkloads: 100 };


/** Median RSS after the ztunnel's start-up reclaim; undefined without the native helper. */
function atRest(loads: readonly FollowerLoadReport[]): number | undefined {
  const kept = loads.flatMap((l) => (l.reclaimedRss === undefined ? [] : [l.reclaimedRss]));
  return kept.length ? median(kept) : undefined;
}
const GOAL_P99_MS = 100;

export function parseArgs(argv: string[]): Args {
  const a: Args = argv.includes('--quick') ? { ...QUICK } : { ...DEFAULTS };
  const rest = argv.filter((x) => x !== '--quick' && x !== '--heap-breakdown');
  const list = (v: string | undefined) => (v ?? '').split(',').map(Number);
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]?.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase()) as keyof Args;
    if (!(key in a)) throw new WeftError('WEFT_USAGE', `unknown argument ${rest[i]}: expected --quick, --heap-breakdown, --${Object.keys(a).join(', --')}`);
    const values = list(rest[i + 1]);
    if (values.some((v) => !Number.isInteger(v) || v <= 0)) throw new WeftError('WEFT_USAGE', `bad value for ${rest[i]}: ${rest[i + 1] ?? ''} (positive integers${Array.isArray(a[key]) ? ', comma-separated' : ''})`);
    (a as unknown as Record<string, unknown>)[key] = Array.isArray(a[key]) ? values : values[0];
  }
  return a;
}


const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ms`;
const mb = (x: number) => `${inMiB(x)} MB`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

const execFileP = promisify(execFile);

/** scale-heap.ts in a process of its own (a fresh heap, --expose-gc). */
async function childHeap(workloads: number): Promise<HeapBreakdown> {
  const { stdout } = await execFileP(process.execPath, ['--expose-gc', join(__dirname, 'scale-heap.js'), String(workloads)], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as HeapBreakdown;
}

/** `--heap-breakdown`: where a follower's heap goes, per structure, at each --workloads size; no Redis. */
async function heapBreakdownMain(a: Args): Promise<void> {
  const sizes = [...a.workloads].sort((x, y) => x - y);
  const runs: HeapBreakdown[] = [];
  for (const w of sizes) runs.push(await childHeap(w));
  const perWorkload = (bytes: number, w: number) => `${Math.round(bytes / w)} B`;
  print('Heap of a loaded MeshState, per workload, by structure (cleared one at a time in this order, full GC before each reading)',
    ['structure', ...runs.map((r) => `${r.workloads} workloads`)],
    [
      ...runs[0]!.parts.map((p, i) => [p.structure, ...runs.map((r) => perWorkload(r.parts[i]!.bytes, r.workloads))]),
      ['the rest (nodes, namespaces, the state itself)', ...runs.map((r) => perWorkload(r.restBytes, r.workloads))],
      ['whole state', ...runs.map((r) => `${perWorkload(r.stateBytes, r.workloads)} (${mb(r.stateBytes)})`)],
    ]);
  process.stdout.write(`\nload average ${load()} at end\n`);
}

/** scale-follower.ts in a process of its own; with `node`, its node-scoped experiment. */
async function childLoad(url: string, node?: string): Promise<FollowerLoadReport> {
  const { stdout } = await execFileP(process.execPath, ['--expose-gc', join(__dirname, 'scale-follower.js'), url, ...(node ? [node] : [])], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as FollowerLoadReport;
}

interface SnapshotRow { size: PopulationSize; writeMs: number; redisMemory: number; loads: FollowerLoadReport[]; redisCpuMs: number; bytes: number }

async function snapshotPhase(url: string, admin: Redis, store: RegistryStore, workloads: number, loads: number): Promise<SnapshotRow> {
  await admin.flushall();
  const size = sizeFor(workloads);
  const writeMs = await populate(store, size);
  const redisMemory = (await redisCounters(admin)).usedMemory;
  const reports: FollowerLoadReport[] = [];
  const cpu: number[] = [];
  const bytes: number[] = [];
  for (let i = 0; i < loads; i++) {
    const before = await redisCounters(admin);
    reports.push(await childLoad(url));
    const after = await redisCounters(admin);
    cpu.push((after.cpuS - before.cpuS) * 1000);
    bytes.push(after.outBytes - before.outBytes);
    if (reports[i]!.workloads !== workloads) throw new Error(`the follower loaded ${reports[i]!.workloads} workloads, expected ${workloads}`);
  }
  return { size, writeMs, redisMemory, loads: reports, redisCpuMs: median(cpu), bytes: median(bytes) };
}

interface StormRow { clients: number; wallMs: number; redisCpuMsPerSnapshot: number; bytesPerSnapshot: number }

/** `n` clients read the whole registry at once (the follower's MULTI, raw replies): Redis' side of a restart storm. */
async function stormPhase(url: string, admin: Redis, n: number): Promise<StormRow> {
  const keys = registryKeys(DEFAULT_PREFIX);
  const clients = Array.from({ length: n }, () => openRedis(url, { lazyConnect: true }));
  await Promise.all(clients.map((c) => c.connect()));
  try {
    const before = await redisCounters(admin);
    const t0 = performance.now();
    await Promise.all(clients.map(async (c) => {
      const multi = c.multi();
      for (const kind of KINDS) multi.hgetallBuffer(keys.kind(kind));
      multi.get(keys.revision);
      await multi.exec();
    }));
    const wallMs = performance.now() - t0;
    const after = await redisCounters(admin);
    return { clients: n, wallMs, redisCpuMsPerSnapshot: ((after.cpuS - before.cpuS) * 1000) / n, bytesPerSnapshot: (after.outBytes - before.outBytes) / n };
  } finally {
    for (const c of clients) c.disconnect();
  }
}

function print(title: string, headers: string[], rows: Cell[][]): void {
  process.stdout.write(`\n${title}\n${formatTable({ headers, rows })}`);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (process.argv.includes('--heap-breakdown')) {
    process.stdout.write(`weft scale bench, --heap-breakdown: load average ${load()} at start\n`);
    await heapBreakdownMain(a);
    return;
  }
  const redis = await startRedis();
  const admin = openRedis(redis.url);
  const store = RegistryStore.connect(redis.url);
  const started = performance.now();
  process.stdout.write(`weft scale bench: load average ${load()} at start\n`);
  try {
    const snaps: SnapshotRow[] = [];
    for (const w of [...a.workloads].sort((x, y) => x - y)) {
      snaps.push(await snapshotPhase(redis.url, admin, store, w, a.loads));
      process.stderr.write(`  snapshot ${w} workloads done\n`);
    }
    // The largest registry is still in Redis: storm it.
    const storm = await stormPhase(redis.url, admin, a.storm);
    const big = snaps[snaps.length - 1]!;
    const scoped = await childLoad(redis.url, `node-${Math.floor(big.size.nodes / 2)}`);
    const fan = await fanoutPhase(redis.url, admin, store, a);
    // The fan-out registry is still in Redis; raw readers rewrite its workloads too.
    const raw: RawRow[] = [];
    for (const n of [...a.followers].sort((x, y) => x - y)) raw.push(await rawFanout(redis.url, admin, store, n, a.changes, fanoutSize(a)));

    print(`Snapshot load, one follower in its own process (median of ${a.loads}; goal: RSS ≤ 150 MB at 100k workloads)`,
      ['workloads', 'services', 'nodes', 'redis memory', 'bytes sent', 'load', 'redis CPU/load', 'RSS before', 'RSS after (GC)', 'after reclaim', 'peak RSS', 'heap', 'RSS per workload', 'goal (after GC)'],
      snaps.map((s) => {
        const rss = median(s.loads.map((l) => l.rss));
        const base = median(s.loads.map((l) => l.baselineRss));
        const kept = atRest(s.loads);
        return [s.size.workloads, s.size.services, s.size.nodes, mb(s.redisMemory), formatBytes(s.bytes), ms(median(s.loads.map((l) => l.loadMs))),
          ms(s.redisCpuMs), mb(base), mb(rss), kept === undefined ? '-' : mb(kept), mb(median(s.loads.map((l) => l.peakRss))), mb(median(s.loads.map((l) => l.heapUsed))),
          `${((rss - base) / s.size.workloads / 1024).toFixed(2)} KB`, rss <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met'];
      }));
    print(`Node-scoped view (experiment): one node's ${scoped.workloads} workloads + every service, node and namespace of the ${big.size.workloads}-workload registry`,
      ['workloads held', 'RSS before', 'RSS after (GC)', 'after reclaim', 'heap', 'goal (after GC)'],
      [[scoped.workloads, mb(scoped.baselineRss), mb(scoped.rss), scoped.reclaimedRss === undefined ? '-' : mb(scoped.reclaimedRss), mb(scoped.heapUsed),
        scoped.rss <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met']]);
    print(`Restart storm: ${storm.clients} clients read the ${big.size.workloads}-workload snapshot at once (raw replies)`,
      ['clients', 'all served in', 'redis CPU per snapshot', 'bytes per snapshot', '1,000 nodes: redis CPU', '1,000 nodes: bytes'],
      [[storm.clients, ms(storm.wallMs), ms(storm.redisCpuMsPerSnapshot), formatBytes(storm.bytesPerSnapshot),
        `${(storm.redisCpuMsPerSnapshot).toFixed(0)} s`, formatBytes(storm.bytesPerSnapshot * 1000)]]);
    print(`One change reaching N followers (${a.changes} changes, one at a time; ${a.fanoutWorkloads}-workload registry; goal: p99 ≤ 100 ms at 1,000)`,
      ['followers', 'redis clients', 'redis memory per follower', 'start all', 'redis CPU idle', 'p50', 'p99', 'max', 'last follower p50', 'redis CPU/change', 'bytes/change', 'sim CPU per follower·change', 'goal'],
      fan.map((f) => [f.followers, f.connections, formatBytes(f.redisBytesPerFollower), ms(f.startMs), `${f.idleRedisCpuPct.toFixed(1)} %`, ms(f.p50), ms(f.p99), ms(f.max), ms(f.lastP50),
        ms(f.redisCpuMsPerChange), formatBytes(f.bytesPerChange), `${f.simCpuUsPerFollowerChange.toFixed(0)} µs`, f.p99 <= GOAL_P99_MS ? 'met' : 'NOT met (one process applies all)']));
    print(`One change reaching N raw readers (bare sockets in XREAD BLOCK: Redis' delivery alone)`,
      ['readers', 'p50', 'p99', 'max', 'redis CPU/change', 'bytes/change'],
      raw.map((r) => [r.readers, ms(r.p50), ms(r.p99), ms(r.max), ms(r.redisCpuMsPerChange), formatBytes(r.bytesPerChange)]));

    const fanMax = fan[fan.length - 1]!;
    const rawMax = raw[raw.length - 1]!;
    const bigRss = median(big.loads.map((l) => l.rss));
    const bigKept = atRest(big.loads);
    // A real node's latency, bounded from load-stable costs: Redis answers every blocked
    // reader in one pass, so the last reply leaves after about Redis' CPU per change
    // (given a core of its own); then the node applies its own copy only.
    const nodeBound = fanMax.redisCpuMsPerChange + fanMax.simCpuUsPerFollowerChange / 1000;
    const verdict = (x: number) => (x <= GOAL_P99_MS ? 'met' : 'NOT met');
    print('Goals (issue 13, "Scale beyond one machine")', ['measure', 'goal', 'measured', 'measured / goal', ''], [
      [`follower RSS, ${big.size.workloads} workloads (full view)`, mb(FOLLOWER_RSS_GOAL), mb(bigRss), (bigRss / FOLLOWER_RSS_GOAL).toFixed(2), bigRss <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met'],
      ...(bigKept === undefined ? [] : [[`follower RSS, ${big.size.workloads} workloads (full view), after the ztunnel's start-up reclaim`, mb(FOLLOWER_RSS_GOAL), mb(bigKept), (bigKept / FOLLOWER_RSS_GOAL).toFixed(2), bigKept <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met']]),
      [`follower RSS, node-scoped view of the same`, mb(FOLLOWER_RSS_GOAL), mb(scoped.rss), (scoped.rss / FOLLOWER_RSS_GOAL).toFixed(2), scoped.rss <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met'],
      [`change → ${fanMax.followers} nodes, bound: Redis CPU per change + one node's apply`, ms(GOAL_P99_MS), ms(nodeBound), (nodeBound / GOAL_P99_MS).toFixed(2), verdict(nodeBound)],
      [`change → ${rawMax.readers} raw readers p99, read in one process`, ms(GOAL_P99_MS), ms(rawMax.p99), (rawMax.p99 / GOAL_P99_MS).toFixed(2), verdict(rawMax.p99)],
      [`change → ${fanMax.followers} followers p99, all applied in one process (upper bound)`, ms(GOAL_P99_MS), ms(fanMax.p99), (fanMax.p99 / GOAL_P99_MS).toFixed(2), verdict(fanMax.p99)],
      [`Redis CPU per change, ${fanMax.followers} followers`, '-', ms(fanMax.redisCpuMsPerChange), '-', ''],
    ]);
    process.stdout.write(`\nload average ${load()} at end; ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  } finally {
    admin.disconnect();
    await store.close();
    await redis.stop();
  }
}

if (require.main === module) {
  runBench(main);
}
