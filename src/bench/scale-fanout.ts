/**
 * The fan-out part of the scale bench (scale.ts): one registry change reaching N
 * followers, two ways.
 *  - followers: N RegistryFollowers in this process, each with its own MeshState, as
 *    N nodes' ztunnels would hold. This process applies every copy on one core, one
 *    after the other, so the last follower's latency includes N-1 others' work: an
 *    upper bound. A real node applies only its own copy.
 *  - raw readers: N bare sockets blocked in XREAD, which note the reply's arrival and
 *    nothing else: how fast Redis itself delivers one entry to N blocked clients.
 * A real node's latency is about the raw readers' plus one follower's apply (the
 * "sim CPU per follower·change" column).
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { RegistryFollower } from '../registry/follower';
import { DEFAULT_PREFIX, registryKeys } from '../registry/layout';
import { MeshState } from '../registry/state';
import type { RegistryStore } from '../registry/store';
import { redisCounters } from './redis';
import { benchWorkload, populate, type PopulationSize } from './registry-population';
import { median, percentile } from './stats';

export interface FanoutArgs { followers: number[]; changes: number; fanoutWorkloads: number }

/** The small registry the fan-out runs against: its size does not change one change's cost. */
export function fanoutSize(a: FanoutArgs): PopulationSize {
  return { workloads: a.fanoutWorkloads, services: Math.max(1, Math.round(a.fanoutWorkloads / 10)), namespaces: Math.max(1, Math.round(a.fanoutWorkloads / 100)), nodes: Math.max(...a.followers) };
}

export interface FanoutRow {
  followers: number; connections: number; startMs: number;
  /** Redis' used_memory growth per follower added (its two connections' buffers and client state). */
  redisBytesPerFollower: number;
  idleRedisCpuPct: number; p50: number; p99: number; max: number; lastP50: number;
  redisCpuMsPerChange: number; bytesPerChange: number; simCpuUsPerFollowerChange: number;
}

/**
 * Grows the set of followers to each size in turn and sends `changes` workload
 * rewrites, one at a time: the next only after every follower applied the previous,
 * so each latency is one change's fan-out, not a queue.
 */
export async function fanoutPhase(url: string, admin: Redis, store: RegistryStore, a: FanoutArgs): Promise<FanoutRow[]> {
  await admin.flushall();
  const size = fanoutSize(a);
  await populate(store, size);
  const followers: RegistryFollower[] = [];
  const sentAt = new Map<string, number>();
  const arrived = new Map<string, number[]>();
  let version = 0;
  const rows: FanoutRow[] = [];
  try {
    for (const target of [...a.followers].sort((x, y) => x - y)) {
      const mem0 = (await redisCounters(admin)).usedMemory;
      const added = target - followers.length;
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
      const redisBytesPerFollower = ((await redisCounters(admin)).usedMemory - mem0) / added;
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
        followers: target, connections: after.clients - 1, startMs, redisBytesPerFollower,
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

export interface RawRow { readers: number; p50: number; p99: number; max: number; redisCpuMsPerChange: number; bytesPerChange: number }

/** One RESP command, as bytes. */
function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * `n` bare sockets, each blocked in `XREAD BLOCK 0 STREAMS changes $`; one change at a
 * time, each socket notes when its reply's first bytes arrive; once all have, they all
 * block again. The changes are ~400-byte entries, read in one chunk.
 */
export async function rawFanout(url: string, admin: Redis, store: RegistryStore, readers: number, changes: number, size: PopulationSize): Promise<RawRow> {
  const { hostname, port } = new URL(url);
  const command = resp('XREAD', 'BLOCK', '0', 'STREAMS', registryKeys(DEFAULT_PREFIX).changes, '$');
  let sentAt = 0;
  let got: number[] = [];
  const sockets: Socket[] = [];
  try {
    await Promise.all(Array.from({ length: readers }, () => new Promise<void>((resolve, reject) => {
      const s = connect(Number(port), hostname, () => { s.write(command); resolve(); });
      s.setNoDelay(true);
      // Only the arrival is noted here; blocking again waits until every reader has
      // its reply, so the last readers' latency does not include the others' writes.
      s.on('data', () => { got.push(performance.now() - sentAt); });
      s.once('error', reject);
      sockets.push(s);
    })));
    // INFO clients only: a full INFO's ~5 KB reply, polled, would swamp the bytes measured.
    const blocked = async () => Number(/^blocked_clients:(\d+)/m.exec(await admin.info('clients'))?.[1] ?? 0);
    // Every XREAD must be blocked in Redis before a change, or it would miss it (`$`).
    const allBlocked = async () => {
      for (let i = 0; i < 1000 && (await blocked()) < readers; i++) await new Promise((r) => setTimeout(r, 5));
    };
    await allBlocked();
    const all: number[] = [];
    const before = await redisCounters(admin);
    const read0 = sockets.reduce((n, s) => n + s.bytesRead, 0);
    for (let i = 0; i < changes; i++) {
      got = [];
      sentAt = performance.now();
      await store.put('workload', benchWorkload(i % size.workloads, size, `raw${i}`));
      const deadline = performance.now() + 10_000;
      while (got.length < readers && performance.now() < deadline) await new Promise((r) => setTimeout(r, 1));
      if (got.length < readers) throw new Error(`raw change ${i} reached ${got.length} of ${readers} readers within 10 s`);
      for (const s of sockets) s.write(command);
      await allBlocked();
      all.push(...got);
    }
    const after = await redisCounters(admin);
    const read = sockets.reduce((n, s) => n + s.bytesRead, 0) - read0;
    all.sort((x, y) => x - y);
    return {
      readers, p50: percentile(all, 50), p99: percentile(all, 99), max: all[all.length - 1]!,
      // The INFO clients polls between changes are in the delta too; they cost Redis microseconds.
      redisCpuMsPerChange: ((after.cpuS - before.cpuS) * 1000) / changes,
      bytesPerChange: read / changes,
    };
  } finally {
    for (const s of sockets) s.destroy();
  }
}
