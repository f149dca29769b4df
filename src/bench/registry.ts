/**
 * Registry benchmark: how long a fresh follower takes to load a realistic registry,
 * and how long a change takes from the writer to a follower's MeshState.
 *
 *   npx tsc -p . && node dist/bench/registry.js [--workloads N] [--services N] [--changes N] [--rate PER_SECOND]
 *
 * Starts its own redis-server on a free loopback port and removes it afterwards.
 * Writer and follower share this process (as the lab's CLI and a ztunnel would not),
 * so latencies include event-loop contention between them: an upper bound.
 */
import { performance } from 'node:perf_hooks';
import { WeftError } from '../lib/errors';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { RegistryStore } from '../registry/store';
import { benchWorkload, populate } from './registry-population';
import { startRedis } from './redis';
import { runBench } from './signals';
import { percentile } from './stats';

interface Args { workloads: number; services: number; namespaces: number; nodes: number; changes: number; rate: number; runs: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { workloads: 10_000, services: 1_000, namespaces: 100, nodes: 20, changes: 1_000, rate: 200, runs: 7 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '') as keyof Args;
    const value = Number(argv[i + 1]);
    if (!(key in a) || !Number.isInteger(value) || value <= 0) {
      throw new WeftError('WEFT_USAGE', `bad argument ${argv[i]} ${argv[i + 1] ?? ''}: expected --${Object.keys(a).join('|--')} <positive integer>`);
    }
    a[key] = value;
  }
  return a;
}

const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 1)} ms`;

async function snapshotLoad(url: string, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const follower = new RegistryFollower({ url, state });
    const t0 = performance.now();
    await follower.start();
    times.push(performance.now() - t0);
    await follower.stop();
  }
  return times.sort((x, y) => x - y);
}

async function propagation(url: string, store: RegistryStore, a: Args): Promise<number[]> {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const follower = new RegistryFollower({ url, state });
  await follower.start();
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  state.on('change', (changes) => {
    const now = performance.now();
    for (const c of changes) {
      const t0 = sentAt.get(c.key);
      if (t0 !== undefined) { latencies.push(now - t0); sentAt.delete(c.key); }
    }
  });
  const interval = 1000 / a.rate;
  const start = performance.now();
  const pending: Promise<number>[] = [];
  for (let i = 0; i < a.changes; i++) {
    // Paced against the schedule, not the previous write, so a slow write does not lower the rate.
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const n = i % a.workloads;
    const record = benchWorkload(n, a, `v${2 + i}`);
    sentAt.set(record.uid, performance.now());
    pending.push(store.put('workload', record));
  }
  await Promise.all(pending);
  const deadline = performance.now() + 10_000;
  while (sentAt.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await follower.stop();
  if (sentAt.size > 0) throw new Error(`${sentAt.size} changes never reached the follower`);
  return latencies.sort((x, y) => x - y);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const redis = await startRedis();
  const store = RegistryStore.connect(redis.url);
  try {
    const writeMs = await populate(store, a);
    const revision = await store.revision();
    const snap = await snapshotLoad(redis.url, a.runs);
    const lat = await propagation(redis.url, store, a);
    const rows: [string, string][] = [
      ['registry', `${a.workloads} workloads, ${a.services} services, ${a.namespaces} namespaces, ${a.nodes} nodes (revision ${revision})`],
      ['initial write (batches of 500)', ms(writeMs)],
      [`snapshot load, fresh follower (median of ${a.runs})`, ms(percentile(snap, 50))],
      ['snapshot load min / max', `${ms(snap[0]!)} / ${ms(snap[snap.length - 1]!)}`],
      [`propagation writer→follower, ${a.changes} changes @ ${a.rate}/s: p50`, ms(percentile(lat, 50))],
      ['propagation p99', ms(percentile(lat, 99))],
      ['propagation max', ms(lat[lat.length - 1]!)],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  } finally {
    await store.close();
    await redis.stop();
  }
}

runBench(main);
