/**
 * Memory of the real ztunnel (issue 13: idle ≤ 50 MB, ≤ 10 KB per idle tunnelled
 * connection, back within 10 % of the idle figure after they close). Two ZtunnelApp
 * processes on loopback (ztunnel-rig.ts), a fresh pair per connection count:
 *
 *   idle      after start and the ztunnel's start-up reclaim (10 s after start)
 *   held      N idle tunnelled connections open (each round-tripped one byte, so it is
 *             tunnelled end to end), 2 s after the last opened
 *   closed    every connection closed by the client and gone from both ztunnels
 *   settled   --settle seconds later (the memory reclaimer looks every 2 s)
 *
 * Each figure per process (node-a: outbound side, node-b: inbound side): VmRSS, V8's
 * committed heap and the heap in use (process.memoryUsage() over IPC), "off-heap" =
 * RSS − committed heap, and file-backed RSS (smaps_rollup: Rss − Anonymous, mostly the
 * node binary's code). Then CPU: the two processes' CPU per 1,000 connections opened
 * and closed, and per GiB echoed through one tunnelled connection (--bulk-mib each way).
 *
 * The ztunnels run with the Node flags they run with in production (ZTUNNEL_NODE_FLAGS).
 * `--variants` instead runs one pair per V8 flag set at --variant-count connections,
 * each with its CPU cost, as ratios against Node's defaults in the same run.
 * `--modules` prints what loading the ztunnel costs, package by package: a fresh
 * process requires them in the order below, then the ztunnel command; after each,
 * a full GC and the growth of RSS, anonymous memory and the V8 heap (the order
 * matters: what a package shares with an earlier one is charged to the earlier).
 *
 * `--pool-idle <s>` shortens the HBONE pool's idle timeout (5 min in the ztunnel) and adds
 * the phase "pool empty": both pools have let their idle tunnels go, and the reclaim after it.
 * `--heap-diff <dir>` writes heap snapshots of both ztunnels idle and held and prints the
 * heap's growth per connection by constructor (heap-diff.ts); the RSS figures of such a run
 * include the snapshots' own memory, so take them from a run without it.
 *
 *   npm run bench:memory [-- --quick] [--counts 1000,5000] [--settle 10] [--bulk-mib 256] [--help]
 *       [--pool-idle 60] [--heap-diff dir]
 *       [--variants [--variant-count 2000] [--rounds 1] [--filter text,text]] [--modules]
 *   WEFT_BENCH_NODE_ARGS="--heap-prof" or "--heapsnapshot-signal=SIGUSR2" profiles the ztunnels.
 */
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds } from '../faults/observe';
import { procBytes } from '../lib/proc';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags';
import { inMiB, mdHeader, mdRow, mdTable } from '../lib/markdown';
import { heapDiff, heapGroups } from './heap-diff';
import { runBench } from './signals';
import { median } from './stats';
import { RIG_IP, startZtunnelRig, type ChildMemory, type RigNode, type ZtunnelRig } from './ztunnel-rig';

const MB = 1024 * 1024;

const VARIANTS: Array<{ name: string; nodeArgs: string[] }> = [
  { name: 'node defaults (before)', nodeArgs: [] },
  { name: `weft's (${ZTUNNEL_NODE_FLAGS.join(' ')})`, nodeArgs: [...ZTUNNEL_NODE_FLAGS] },
  // GC off the second core: lower p99 and more single-stream throughput (bench/hbone); its RSS here.
  { name: `weft's + --single-threaded-gc`, nodeArgs: [...ZTUNNEL_NODE_FLAGS, '--single-threaded-gc'] },
  { name: '--max-semi-space-size=1', nodeArgs: ['--max-semi-space-size=1'] },
  { name: '--max-semi-space-size=2', nodeArgs: ['--max-semi-space-size=2'] },
  { name: '--max-semi-space-size=4', nodeArgs: ['--max-semi-space-size=4'] },
  { name: '--optimize-for-size', nodeArgs: ['--optimize-for-size'] },
  { name: '--max-old-space-size=64', nodeArgs: ['--max-old-space-size=64'] },
  { name: '--lite-mode', nodeArgs: ['--lite-mode'] },
  { name: '--optimize-for-size --max-semi-space-size=1', nodeArgs: ['--optimize-for-size', '--max-semi-space-size=1'] },
];

interface Sample { mem: ChildMemory; fileBacked: number }

async function sample(node: RigNode): Promise<Sample> {
  const mem = await node.mem();
  const { Rss, Anonymous } = procBytes(node.pid, 'smaps_rollup', ['Rss', 'Anonymous']);
  return { mem, fileBacked: Rss - Anonymous };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Opens `n` connections as the client pod, each round-tripping one byte through both ztunnels. */
async function openTunnelled(rig: ZtunnelRig, n: number, concurrency = 64): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  let next = 0;
  const one = () => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: rig.outbound.host, port: rig.outbound.port, localAddress: RIG_IP.client });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no echo within 10 s')); }, 10_000);
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
    s.once('connect', () => s.write('x'));
    s.once('data', () => { clearTimeout(timer); s.removeAllListeners('error'); s.on('error', () => undefined); resolve(s); });
  });
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) { next++; socks.push(await one()); }
  }));
  return socks;
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Echoes `mib` MiB through one tunnelled connection; CPU seconds of both ztunnels per GiB each way. */
async function bulkCpuPerGiB(rig: ZtunnelRig, mib: number): Promise<number> {
  const [s] = await openTunnelled(rig, 1, 1);
  const pids = [rig.nodeA.pid, rig.nodeB.pid];
  const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const total = mib * MB;
  await new Promise<void>((resolve, reject) => {
    let got = 1; // the opening byte is already counted out
    s!.on('data', (d: Buffer) => { got += d.length; if (got >= total) resolve(); });
    s!.on('close', () => reject(new Error('closed before all bytes came back')));
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!s!.write(chunk)) return void s!.once('drain', pump);
      }
    };
    pump();
  });
  s!.destroy();
  return (pids.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0) / (mib / 1024);
}

interface Round {
  count: number;
  idle: [Sample, Sample];
  held: [Sample, Sample];
  closed: [Sample, Sample];
  settled: [Sample, Sample];
  /** --pool-idle: once both pools let their idle tunnels go, and the reclaim after it. */
  poolEmpty?: [Sample, Sample];
  cpuPer1000Conns: number;
  cpuPerGiB: number;
}

interface RoundExtras {
  /** The HBONE pool's idle timeout in seconds: then also measured once the pool is empty. */
  poolIdleS?: number;
  /** Heap snapshots of both ztunnels idle and held into this directory, and their difference per connection printed. */
  heapDir?: string;
}

/** `nodeArgs`: the ztunnels' Node flags, by default those they run with in the lab and the DaemonSet. */
async function round(count: number, settleS: number, bulkMib: number, nodeArgs: readonly string[] = ZTUNNEL_NODE_FLAGS, extras: RoundExtras = {}): Promise<Round> {
  const rig = await startZtunnelRig({ nodeArgs, ...(extras.poolIdleS ? { poolIdleTimeoutMs: extras.poolIdleS * 1000 } : {}) });
  const snap = async (phase: string) => {
    if (!extras.heapDir) return;
    for (const n of [rig.nodeA, rig.nodeB]) await n.snapshot(join(extras.heapDir, `${n.role}-${count}-${phase}.heapsnapshot`));
  };
  try {
    const both = async () => [await sample(rig.nodeA), await sample(rig.nodeB)] as [Sample, Sample];
    // A running ztunnel's idle: after its one reclaim 10 s after start (memory-reclaim.ts afterStartMs).
    // Without it (a slow start on a loaded machine) the idle row is still printed, its reclaims column 0: said here.
    await until('the start-up reclaim', async () => (await rig.nodeA.mem()).reclaims >= 1 && (await rig.nodeB.mem()).reclaims >= 1, 20_000)
      .catch(() => console.error('warning: no start-up reclaim within 20 s of start; the idle figures are from before it'));
    await sleep(1000);
    const idle = await both();
    await snap('idle');
    const pids = [rig.nodeA.pid, rig.nodeB.pid];
    const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
    const socks = await openTunnelled(rig, count);
    await sleep(2000);
    const held = await both();
    await snap('held');
    for (const s of socks) s.destroy();
    await until('both ztunnels to let every connection go', async () => (await rig.nodeA.mem()).tracked === 0 && (await rig.nodeB.mem()).tracked === 0);
    const cpuPer1000Conns = (pids.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0) / (count / 1000);
    const closed = await both();
    await sleep(settleS * 1000);
    const settled = await both();
    let poolEmpty: [Sample, Sample] | undefined;
    if (extras.poolIdleS) {
      const reclaimsBefore = (await rig.nodeA.mem()).reclaims;
      await until('both pools to let their idle tunnels go', async () => (await rig.nodeA.mem()).tunnels === 0 && (await rig.nodeB.mem()).tunnels === 0,
        extras.poolIdleS * 1000 + 60_000);
      // The reclaimer's tunnel-drop reclaim, at most once a minute (memory-reclaim.ts minIntervalMs).
      await until('the reclaim after the pool emptied', async () => (await rig.nodeA.mem()).reclaims > reclaimsBefore, 70_000)
        .catch(() => console.error('warning: no reclaim within 70 s of the pool emptying'));
      await sleep(2000);
      poolEmpty = await both();
    }
    const cpuPerGiB = bulkMib > 0 ? await bulkCpuPerGiB(rig, bulkMib) : NaN;
    if (extras.heapDir) printHeapDiff(extras.heapDir, count);
    return { count, idle, held, closed, settled, ...(poolEmpty ? { poolEmpty } : {}), cpuPer1000Conns, cpuPerGiB };
  } finally {
    await rig.stop();
  }
}

/** The heap's growth per held connection, by constructor (heap-diff.ts), both ztunnels. */
function printHeapDiff(dir: string, count: number): void {
  for (const role of ['node-a', 'node-b']) {
    const rows = heapDiff(heapGroups(join(dir, `${role}-${count}-idle.heapsnapshot`)), heapGroups(join(dir, `${role}-${count}-held.heapsnapshot`)), count);
    const total = rows.reduce((a, r) => a + r.bytes, 0);
    console.log(`\n### ${role}: V8 heap per held connection, self sizes, ${count} held vs idle (top 30; total ${f(total / 1024, 2)} KB)\n`);
    console.log(mdTable(['group', 'objects per connection', 'bytes per connection'], rows.slice(0, 30).map((r) => [r.key, f(r.count, 2), f(r.bytes, 0)])));
  }
}

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '–');
const pct = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${f(x * 100)} %` : '–');

function printRound(r: Round, settleS: number): void {
  console.log(`\n### ${r.count} idle tunnelled connections\n`);
  console.log(mdHeader(['ztunnel', 'phase', 'RSS MB', 'V8 heap committed MB', 'heap used MB', 'off-heap MB (RSS − committed)', 'file-backed MB', 'external MB', 'tracked', 'tunnels', 'reclaims']));
  for (const [i, role] of [[0, 'node-a (outbound)'], [1, 'node-b (inbound)']] as const) {
    const phases: Array<[string, Sample]> = [['idle', r.idle[i]], [`${r.count} held`, r.held[i]], ['closed', r.closed[i]], [`+${settleS} s`, r.settled[i]]];
    if (r.poolEmpty) phases.push(['pool empty', r.poolEmpty[i]]);
    for (const [phase, s] of phases) {
      const m = s.mem;
      console.log(mdRow([role, phase, inMiB(m.rss), inMiB(m.heapCommitted), inMiB(m.heapUsed), inMiB(m.rss - m.heapCommitted), inMiB(s.fileBacked), inMiB(m.external), m.tracked, m.tunnels, m.reclaims]));
    }
  }
}

interface Summary { idleMb: number; perConnKb: number; heapPerConnKb: number; settledVsIdle: number; poolEmptyVsIdle: number }

function summary(r: Round, i: 0 | 1): Summary {
  const idle = r.idle[i].mem;
  return {
    idleMb: idle.rss / MB,
    perConnKb: (r.held[i].mem.rss - idle.rss) / r.count / 1024,
    heapPerConnKb: (r.held[i].mem.heapUsed - idle.heapUsed) / r.count / 1024,
    settledVsIdle: r.settled[i].mem.rss / idle.rss - 1,
    poolEmptyVsIdle: r.poolEmpty ? r.poolEmpty[i].mem.rss / idle.rss - 1 : NaN,
  };
}

/** The round whose CPU per GiB is the median, with every field's median where it is a number. */
function medianRound(rs: Round[]): Round {
  const byCpu = [...rs].sort((a, b) => a.cpuPerGiB - b.cpuPerGiB)[Math.floor(rs.length / 2)]!;
  return { ...byCpu, cpuPer1000Conns: median(rs.map((r) => r.cpuPer1000Conns)), cpuPerGiB: median(rs.map((r) => r.cpuPerGiB)) };
}

/** Whole numbers ≥ 1, comma-separated. */
const countList = (raw: string): number[] => raw.split(',').map((x) => {
  if (!/^\d+$/.test(x) || Number(x) < 1) throw new Error('expected connection counts ≥ 1, comma-separated, e.g. 1000,5000');
  return Number(x);
});

// Defaults left undefined depend on --quick (filled in by args()).
const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  quick: { flag: 'quick', boolean: true, default: false, description: 'shorter: 500 connections, --settle 5, --bulk-mib 64, --variant-count 500', parse: parse.bool() },
  counts: { flag: 'counts', default: undefined as number[] | undefined, defaultText: '1000,5000', description: 'idle tunnelled connections per round, comma-separated', parse: countList },
  settle: { flag: 'settle', default: undefined as number | undefined, defaultText: '10', description: 'seconds after close before the settled figure', parse: parse.int({ min: 0, max: 600 }) },
  bulkMib: { flag: 'bulk-mib', default: undefined as number | undefined, defaultText: '256', description: 'MiB echoed each way for CPU per GiB (0: skip)', parse: parse.int({ min: 0 }) },
  variants: { flag: 'variants', boolean: true, default: false, description: 'one pair per V8 flag set, ratios against node\'s defaults', parse: parse.bool() },
  variantCount: { flag: 'variant-count', default: undefined as number | undefined, defaultText: '2000', description: 'connections per --variants round', parse: parse.int({ min: 1 }) },
  rounds: { flag: 'rounds', default: 1, description: '--variants: interleaved rounds (medians printed)', parse: parse.int({ min: 1, max: 20 }) },
  filter: { flag: 'filter', default: undefined as string | undefined, description: '--variants: only those whose name contains one of these, comma-separated (node defaults always run)', parse: parse.string() },
  poolIdle: { flag: 'pool-idle', default: undefined as number | undefined, description: 'the HBONE pool\'s idle timeout in seconds (the ztunnel\'s is 300): RSS is also measured once both pools are empty and reclaimed', parse: parse.int({ min: 1, max: 300 }) },
  heapDiff: { flag: 'heap-diff', default: undefined as string | undefined, description: 'directory: heap snapshots of both ztunnels idle and held, and their growth per connection by constructor', parse: parse.string() },
  modules: { flag: 'modules', boolean: true, default: false, description: 'what loading the ztunnel costs, package by package', parse: parse.bool() },
};

function args(argv: string[]) {
  const o = parseOptions(specs, argv, {}).values;
  return {
    help: o.help,
    counts: o.counts ?? (o.quick ? [500] : [1000, 5000]),
    settle: o.settle ?? (o.quick ? 5 : 10),
    bulkMib: o.bulkMib ?? (o.quick ? 64 : 256),
    variants: o.variants,
    modules: o.modules,
    variantCount: o.variantCount ?? (o.quick ? 500 : 2000),
    rounds: o.rounds,
    filter: o.filter,
    poolIdleS: o.poolIdle,
    heapDir: o.heapDiff,
  };
}

/** What the ztunnel loads, heaviest first; the dist/ entries are Weft's own code on top of them. */
const MODULES = ['node:tls', 'node:http2', 'pino', 'prom-client', 'ioredis', 'yaml', 'node-forge', '@grpc/grpc-js', '@grpc/proto-loader',
  'registry/follower', 'ca/cert-manager', 'hbone/pool', 'telemetry/proxy-telemetry', 'ztunnel/app', 'ztunnel/command'];

function moduleCosts(): void {
  const out = execFileSync(process.execPath, ['--expose-gc', join(__dirname, 'module-cost.js'), ...MODULES], { encoding: 'utf8' });
  console.log('\n## What loading costs (a fresh process, cumulative in this order)\n');
  console.log(mdHeader(['module', 'ms', 'RSS +MB', 'anonymous +MB', 'V8 heap used +MB', 'V8 heap committed +MB']));
  console.log(out.trimEnd());
}

async function main(): Promise<void> {
  const o = args(process.argv.slice(2));
  if (o.help) return void console.log(`node dist/bench/ztunnel-memory.js [flags]\n${optionsHelp(specs)}`);
  console.log(`ztunnel memory bench: two ZtunnelApp processes on loopback (real Redis, CA, HBONE); node ${process.version}`);
  if (o.modules) return moduleCosts();
  if (o.variants) return variants(o);
  const rounds: Round[] = [];
  for (const count of o.counts) {
    if (o.heapDir) mkdirSync(o.heapDir, { recursive: true });
    const r = await round(count, o.settle, o.bulkMib, ZTUNNEL_NODE_FLAGS, {
      ...(o.poolIdleS ? { poolIdleS: o.poolIdleS } : {}), ...(o.heapDir ? { heapDir: o.heapDir } : {}) });
    printRound(r, o.settle);
    rounds.push(r);
  }
  console.log('\n## Summary (goals: idle ≤ 50 MB, ≤ 10 KB per idle tunnelled connection, within 10 % of idle after close)\n');
  console.log(mdHeader(['connections', 'ztunnel', 'idle RSS MB', 'RSS per connection KB', 'heap in use per connection KB', 'after close + settle vs idle', 'pool empty vs idle', 'CPU s per 1000 conns (both)', 'CPU s per GiB echoed (both)']));
  for (const r of rounds) {
    for (const [i, role] of [[0, 'node-a'], [1, 'node-b']] as const) {
      const s = summary(r, i);
      console.log(mdRow([r.count, role, f(s.idleMb), f(s.perConnKb), f(s.heapPerConnKb), `${s.settledVsIdle >= 0 ? '+' : ''}${f(s.settledVsIdle * 100)} %`, pct(s.poolEmptyVsIdle), f(r.cpuPer1000Conns, 2), f(r.cpuPerGiB, 2)]));
    }
  }
}

async function variants(o: ReturnType<typeof args>): Promise<void> {
  const wanted = o.filter?.split(',');
  const list = VARIANTS.filter((v, i) => !wanted || i === 0 || wanted.some((w) => v.name.includes(w)));
  // Rounds interleave the variants, so a neighbour's load hits each alike; medians kept.
  const all = list.map((v) => ({ name: v.name, rounds: [] as Round[] }));
  for (let i = 0; i < o.rounds; i++) {
    for (const [k, v] of list.entries()) {
      all[k]!.rounds.push(await round(o.variantCount, o.settle, o.bulkMib, v.nodeArgs));
      console.log(`round ${i + 1}: ${v.name} done`);
    }
  }
  const results = all.map(({ name, rounds }) => ({ name, r: medianRound(rounds) }));
  const base = results[0]!.r;
  const avg = (r: Round, k: keyof Summary) => (summary(r, 0)[k] + summary(r, 1)[k]) / 2;
  console.log(`\n## V8 flags, ${o.variantCount} connections, both ztunnels averaged, median of ${o.rounds} interleaved round(s); ratios against node's defaults\n`);
  console.log(mdTable(['flags', 'idle RSS MB', '×node defaults', 'RSS per connection KB', '×node defaults', 'after close + settle vs idle', 'CPU s per 1000 conns', '×node defaults', 'CPU s per GiB', '×node defaults'],
    results.map(({ name, r }) => [name, f(avg(r, 'idleMb')), f(avg(r, 'idleMb') / avg(base, 'idleMb'), 2), f(avg(r, 'perConnKb')), f(avg(r, 'perConnKb') / avg(base, 'perConnKb'), 2),
      `${f(avg(r, 'settledVsIdle') * 100)} %`, f(r.cpuPer1000Conns, 2), f(r.cpuPer1000Conns / base.cpuPer1000Conns, 2), f(r.cpuPerGiB, 2), f(r.cpuPerGiB / base.cpuPerGiB, 2)])));
}

if (require.main === module) {
  // The rig's ztunnels leave when their IPC channel closes; redis-server and the directories by exit hooks.
  runBench(main);
}
