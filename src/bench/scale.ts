/**
 * Scale benchmark (issue 13, "Scale beyond one machine"): what one Redis and the
 * followers cost as the mesh grows toward 1,000 nodes and 100,000 pods.
 *
 *   npm run build && flock /run/weft-bench.lock node dist/bench/scale.js [--quick]
 *     [--workloads 10000,30000,100000] [--followers 100,300,1000] [--changes 20]
 *     [--loads 3] [--storm 20]
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
import { openRedis } from '../registry/connection';
import { RegistryFollower } from '../registry/follower';
import { registryKeys, DEFAULT_PREFIX } from '../registry/layout';
import { MeshState } from '../registry/state';
import { RegistryStore } from '../registry/store';
import { KINDS } from '../registry/types';
import { startRedis } from './redis';
import { benchWorkload, populate, type PopulationSize } from './registry-population';
import type { FollowerLoadReport } from './scale-follower';
import { percentile } from './stats';


interface Args { workloads: number[]; followers: number[]; changes: number; loads: number; storm: number; fanoutWorkloads: number }

const DEFAULTS: Args = { workloads: [10_000, 30_000, 100_000], followers: [100, 300, 1000], changes: 20, loads: 3, storm: 20, fanoutWorkloads: 200 };
const QUICK: Args = { workloads: [3_000, 10_000], followers: [30, 100], changes: 10, loads: 2, storm: 5, fanoutWorkloads: 100 };

const GOAL_RSS = 150 * 1024 * 1024;
const GOAL_P99_MS = 100;

export function parseArgs(argv: string[]): Args {
  const a: Args = argv.includes('--quick') ? { ...QUICK } : { ...DEFAULTS };
  const rest = argv.filter((x) => x !== '--quick');
  const list = (v: string | undefined) => (v ?? '').split(',').map(Number);
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]?.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase()) as keyof Args;
    if (!(key in a)) throw new Error(`unknown argument ${rest[i]}: expected --quick, --${Object.keys(a).join(', --')}`);
    const values = list(rest[i + 1]);
    if (values.some((v) => !Number.isInteger(v) || v <= 0)) throw new Error(`bad value for ${rest[i]}: ${rest[i + 1] ?? ''} (positive integers${Array.isArray(a[key]) ? ', comma-separated' : ''})`);
    (a as unknown as Record<string, unknown>)[key] = Array.isArray(a[key]) ? values : values[0];
  }
  return a;
}

/** A registry of `workloads` pods at the proportions: 10 pods per service and per node, 100 per namespace. */
function sizeFor(workloads: number): PopulationSize {
  return { workloads, services: Math.max(1, Math.round(workloads / 10)), namespaces: Math.max(1, Math.round(workloads / 100)), nodes: Math.max(1, Math.round(workloads / 100)) };
}

const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)} ms`;
const mb = (x: number) => `${(x / 1024 / 1024).toFixed(1)} MB`;
const median = (xs: number[]) => percentile([...xs].sort((p, q) => p - q), 50);
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

/** Redis' own counters, read with INFO: CPU seconds (all threads), bytes sent, clients, memory. */
async function redisCounters(admin: Redis): Promise<{ cpuS: number; outBytes: number; clients: number; usedMemory: number }> {
  const text = await admin.info();
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    cpuS: field('used_cpu_sys') + field('used_cpu_user'),
    outBytes: field('total_net_output_bytes'),
    clients: field('connected_clients'),
    usedMemory: field('used_memory'),
  };
}

const execFileP = promisify(execFile);

async function childLoad(url: string): Promise<FollowerLoadReport> {
  const { stdout } = await execFileP(process.execPath, ['--expose-gc', join(__dirname, 'scale-follower.js'), url], { maxBuffer: 1 << 20 });
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

interface FanoutRow {
  followers: number; connections: number; startMs: number;
  idleRedisCpuPct: number; p50: number; p99: number; max: number; lastP50: number;
  redisCpuMsPerChange: number; bytesPerChange: number; simCpuUsPerFollowerChange: number;
}

/**
 * Grows the set of followers to each size in turn and sends `changes` workload
 * rewrites, one at a time: the next only after every follower applied the previous,
 * so each latency is one change's fan-out, not a queue.
 */
async function fanoutPhase(url: string, admin: Redis, store: RegistryStore, a: Args): Promise<FanoutRow[]> {
  await admin.flushall();
  const size: PopulationSize = { workloads: a.fanoutWorkloads, services: Math.max(1, Math.round(a.fanoutWorkloads / 10)), namespaces: Math.max(1, Math.round(a.fanoutWorkloads / 100)), nodes: Math.max(...a.followers) };
  await populate(store, size);
  const followers: RegistryFollower[] = [];
  const sentAt = new Map<string, number>();
  const arrived = new Map<string, number[]>();
  let version = 0;
  const rows: FanoutRow[] = [];
  try {
    for (const target of [...a.followers].sort((x, y) => x - y)) {
      const t0 = performance.now();
      while (followers.length < target) {
        const batch = Math.min(50, target - followers.length);
        await Promise.all(Array.from({ length: batch }, async () => {
          const state = new MeshState({ trustDomain: 'cluster.local' });
          state.on('change', (changes) => {
            const now = performance.now();
            for (const c of changes) {
              const sent = sentAt.get(c.key);
              if (sent !== undefined) arrived.get(c.key)!.push(now - sent);
            }
          });
          const f = new RegistryFollower({ url, state });
          followers.push(f);
          await f.start();
        }));
      }
      const startMs = performance.now() - t0;
      // Idle: every follower's XREAD BLOCK times out each second and is sent again.
      const idle0 = await redisCounters(admin);
      const idleT0 = performance.now();
      await new Promise((r) => setTimeout(r, 2000));
      const idle1 = await redisCounters(admin);
      const idleRate = (idle1.cpuS - idle0.cpuS) / ((performance.now() - idleT0) / 1000);

      const all: number[] = [];
      const last: number[] = [];
      const before = await redisCounters(admin);
      const cpu0 = process.cpuUsage();
      const phaseT0 = performance.now();
      for (let i = 0; i < a.changes; i++) {
        const w = benchWorkload(i % size.workloads, size, `v${++version + 1}`);
        arrived.set(w.uid, []);
        sentAt.set(w.uid, performance.now());
        await store.put('workload', w);
        const deadline = performance.now() + 10_000;
        while (arrived.get(w.uid)!.length < target && performance.now() < deadline) await new Promise((r) => setTimeout(r, 1));
        const got = arrived.get(w.uid)!;
        if (got.length < target) throw new Error(`change ${i} reached ${got.length} of ${target} followers within 10 s`);
        sentAt.delete(w.uid);
        arrived.delete(w.uid);
        all.push(...got);
        last.push(Math.max(...got));
      }
      const phaseS = (performance.now() - phaseT0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const after = await redisCounters(admin);
      all.sort((x, y) => x - y);
      rows.push({
        followers: target, connections: after.clients - 1, startMs,
        idleRedisCpuPct: idleRate * 100,
        p50: percentile(all, 50), p99: percentile(all, 99), max: all[all.length - 1]!, lastP50: median(last),
        redisCpuMsPerChange: Math.max(0, ((after.cpuS - before.cpuS) - idleRate * phaseS) * 1000) / a.changes,
        bytesPerChange: (after.outBytes - before.outBytes) / a.changes,
        simCpuUsPerFollowerChange: (cpu.user + cpu.system) / (a.changes * target),
      });
      process.stderr.write(`  fan-out ${target} followers done\n`);
    }
  } finally {
    await Promise.all(followers.map((f) => f.stop()));
  }
  return rows;
}

function print(title: string, headers: string[], rows: Cell[][]): void {
  process.stdout.write(`\n${title}\n${formatTable({ headers, rows })}`);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
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
    const fan = await fanoutPhase(redis.url, admin, store, a);

    print(`Snapshot load, one follower in its own process (median of ${a.loads}; goal: RSS ≤ 150 MB at 100k workloads)`,
      ['workloads', 'services', 'nodes', 'redis memory', 'bytes sent', 'load', 'redis CPU/load', 'RSS before', 'RSS after (GC)', 'peak RSS', 'heap', 'RSS per workload', 'goal'],
      snaps.map((s) => {
        const rss = median(s.loads.map((l) => l.rss));
        const base = median(s.loads.map((l) => l.baselineRss));
        return [s.size.workloads, s.size.services, s.size.nodes, mb(s.redisMemory), formatBytes(s.bytes), ms(median(s.loads.map((l) => l.loadMs))),
          ms(s.redisCpuMs), mb(base), mb(rss), mb(median(s.loads.map((l) => l.peakRss))), mb(median(s.loads.map((l) => l.heapUsed))),
          `${((rss - base) / s.size.workloads / 1024).toFixed(2)} KB`, rss <= GOAL_RSS ? 'met' : 'NOT met'];
      }));
    const big = snaps[snaps.length - 1]!;
    print(`Restart storm: ${storm.clients} clients read the ${big.size.workloads}-workload snapshot at once (raw replies)`,
      ['clients', 'all served in', 'redis CPU per snapshot', 'bytes per snapshot', '1,000 nodes: redis CPU', '1,000 nodes: bytes'],
      [[storm.clients, ms(storm.wallMs), ms(storm.redisCpuMsPerSnapshot), formatBytes(storm.bytesPerSnapshot),
        `${(storm.redisCpuMsPerSnapshot).toFixed(0)} s`, formatBytes(storm.bytesPerSnapshot * 1000)]]);
    print(`One change reaching N followers (${a.changes} changes, one at a time; ${a.fanoutWorkloads}-workload registry; goal: p99 ≤ 100 ms at 1,000)`,
      ['followers', 'redis clients', 'start all', 'redis CPU idle', 'p50', 'p99', 'max', 'last follower p50', 'redis CPU/change', 'bytes/change', 'sim CPU per follower·change', 'goal'],
      fan.map((f) => [f.followers, f.connections, ms(f.startMs), `${f.idleRedisCpuPct.toFixed(1)} %`, ms(f.p50), ms(f.p99), ms(f.max), ms(f.lastP50),
        ms(f.redisCpuMsPerChange), formatBytes(f.bytesPerChange), `${f.simCpuUsPerFollowerChange.toFixed(0)} µs`, f.p99 <= GOAL_P99_MS ? 'met' : 'NOT met']));
    process.stdout.write(`\nload average ${load()} at end; ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  } finally {
    admin.disconnect();
    await store.close();
    await redis.stop();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  });
}
