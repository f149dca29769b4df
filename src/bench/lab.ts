/**
 * `npm run bench`: the data path measured on the lab, three ways side by side in one
 * run, so every figure is a ratio against baselines taken on the same machine at the
 * same time:
 *
 *   direct   legacy/client → legacy/echo-1 (node-1 → node-2, no proxy)
 *   weft     demo/client   → demo/echo-2   (node-1 → ztunnel → HBONE → ztunnel → node-2)
 *   haproxy  legacy/client → HAProxy (node-1) → mTLS → HAProxy (node-2) → legacy/echo-1
 *
 *   weft-w2  as weft, both ztunnels restarted with `--workers 2` (WEFT_BENCH_WORKERS; 1 or
 *            empty leaves the row out) for that path's rounds, back to one after;
 *            WEFT_BENCH_SCHED_NONE=1 adds weft-w2-none, the workers accepting themselves
 *
 * plus `haproxy-1t`, the same pair with `nbthread 1` (one thread each, like one ztunnel
 * worker); `haproxy` runs HAProxy's default threading (one thread per CPU).
 *
 * Throughput: one iperf3 stream, and 8 parallel streams (`iperf3 -P 8`), which is what
 * several threads or workers can spread over cores. Latency: 1 KiB request/response at
 * a fixed rate (loadgen.ts). Connection rate: open/exchange/close loops. Rounds are
 * interleaved across the paths (path A, B, C, then again), so a load swing from other
 * work on the machine hits every path alike (every other round backwards, so the
 * ztunnels change worker counts once a round); medians. Needs root (the lab).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../ca/issuer';
import type { LabContext } from '../lab/context';
import { run } from '../lab/run';
import { withLab } from '../lab/session';
import { readState, type ProcessResource } from '../lab/state';
import { startZtunnel, stopZtunnel } from '../lab/ztunnel-ctl';
import { parsePromText, samplesOf } from '../telemetry/prom-text';
import { cpuSeconds, rssBytes } from '../faults/observe';
import { mdTable } from '../lib/markdown';
import { connrateArgv, type ConnrateResult } from './loadgen';
import { median } from './stats';

const REPO = join(__dirname, '..', '..');
const LOADGEN = join(REPO, 'dist', 'bench', 'loadgen.js');
const LAB_DIR = process.env.WEFT_BENCH_LAB_DIR ?? join(REPO, '.weft-lab', 'bench');
const CONTEXT = join(LAB_DIR, 'context.json');
// The weft rows say how many ztunnel workers they run; none comes from the caller's environment.
delete process.env.WEFT_ZTUNNEL_WORKERS;
delete process.env.NODE_CLUSTER_SCHED_POLICY;
const ENV = { ...process.env, WEFT_LAB_DIR: LAB_DIR, WEFT_CONTEXT: CONTEXT };

/** The numbers this bench reads from the environment: name, default, what it sets (also its --help). */
const KNOBS = {
  SECONDS: [3, 'seconds per iperf3 and latency phase'],
  RATE: [1000, 'latency phase: requests per second'],
  CONNECTIONS: [2000, 'connection-rate phase: connections per run'],
  REPEAT: [3, 'interleaved rounds per path (medians)'],
  PARALLEL: [8, 'iperf3 -P streams'],
  WORKERS: [2, 'the weft-wN row: both ztunnels with --workers N (1: no row)'],
} as const;
const knob = (name: keyof typeof KNOBS) => Number(process.env[`WEFT_BENCH_${name}`] ?? KNOBS[name][0]);
const SECONDS = knob('SECONDS');
const RATE = knob('RATE');
const CONNS = knob('CONNECTIONS');
const REPEAT = knob('REPEAT');
const PARALLEL = knob('PARALLEL');
const WORKERS = knob('WORKERS') || 1;
/** Also a weft-wN-none row: the workers accept themselves (NODE_CLUSTER_SCHED_POLICY=none) instead of the primary's round-robin. */
const SCHED_NONE = /^(1|true|yes)$/i.test(process.env.WEFT_BENCH_SCHED_NONE ?? '');

/** A command in `netns`; its stdout (a failure throws with its stderr). */
async function runIn(netns: string, cmd: string, args: string[]): Promise<string> {
  return (await run('ip', ['netns', 'exec', netns, cmd, ...args], { env: ENV })).stdout;
}

/** A server the bench owns, logging to the lab dir; killed by its PID at the end. */
function background(netns: string, cmd: string, args: string[], tag: string = cmd): ChildProcess {
  const log = openSync(join(LAB_DIR, `${tag}-${netns}.log`), 'w');
  const child = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', log, log] });
  closeSync(log);
  return child;
}

type Sched = 'rr' | 'none';
interface Path { name: string; client: string; iperf: string; echo: string; workers?: number; sched?: Sched }
interface Measures { gbps: number; gbpsP: number; p50: number; p99: number; cps: number; rssMb: number; cpuMsPerGiB: number; cpuUsPerConn: number }
type Samples = { [K in keyof Measures]: number[] } & { resets: number[] };
/**
 * Medians; the iperf3 runs (of REPEAT) that gave no result; on weft paths, the HBONE
 * streams the ztunnels reset because their stall reservations did not fit the buffer
 * budget (weft_ztunnel_hbone_refused_total{reason="buffer_budget"}), summed over the rounds.
 */
interface Result extends Measures { failed: { gbps: number; gbpsP: number }; budgetResets: number }

/** HAProxy's threads per process: its default (one per CPU it may run on), or one. */
type Threads = 'auto' | 1;

/** Ports of one HAProxy pair: iperf3 front/back, echo front/back. */
const HAPROXY_PORTS: Record<string, readonly [number, number, number, number]> = {
  auto: [17001, 17002, 17003, 17004],
  1: [17011, 17012, 17013, 17014],
};

/** Starts the pair; its processes go into `owned` as they are spawned, so a failed start is cleaned up with the rest. */
async function haproxyPair(ctx: LabContext, dir: string, echoIp: string, threads: Threads, owned: ChildProcess[]): Promise<void> {
  const root = await generateRootCa({ trustDomain: 'bench.local' });
  const issuer = new Issuer(root, { trustDomain: 'bench.local' });
  const pem = async (who: string) => {
    const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: who });
    const chain = issuer.signCsr(csrPem, { identity: `spiffe://bench.local/ns/bench/sa/${who}`, ttlMs: 3_600_000, serverAuth: true });
    const file = join(dir, `${who}.pem`);
    writeFileSync(file, chain[0] + keyPem);
    return file;
  };
  writeFileSync(join(dir, 'root.pem'), issuer.rootPem);
  const [clientPem, serverPem] = [await pem('client'), await pem('server')];
  const [n1, n2] = [ctx.nodes[0]!, ctx.nodes[1]!];
  const global = `global\n  maxconn 4000\n${threads === 1 ? '  nbthread 1\n' : ''}defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n`;
  const front = (port: number, to: number) =>
    `listen p${port}\n  bind ${n1.address}:${port}\n  server s ${n2.address}:${to} ssl crt ${clientPem} ca-file ${join(dir, 'root.pem')} verify required alpn h2\n`;
  const back = (port: number, to: number) =>
    `listen p${port}\n  bind ${n2.address}:${port} ssl crt ${serverPem} ca-file ${join(dir, 'root.pem')} verify required\n  server s ${echoIp}:${to}\n`;
  const [iperfFront, iperfBack, echoFront, echoBack] = HAPROXY_PORTS[threads]!;
  const [a, b] = [join(dir, 'a.cfg'), join(dir, 'b.cfg')];
  writeFileSync(a, global + front(iperfFront, iperfBack) + front(echoFront, echoBack));
  writeFileSync(b, global + back(iperfBack, 5201) + back(echoBack, 9000));
  const tag = `haproxy-${threads}`;
  const procs = [background(n1.netns, 'haproxy', ['-db', '-f', a], tag), background(n2.netns, 'haproxy', ['-db', '-f', b], tag)];
  owned.push(...procs);
  await sleep(800);
  for (const p of procs) if (p.exitCode !== null) throw new Error(`haproxy failed to start; see ${LAB_DIR}/haproxy-*.log and the configs in ${dir}`);
}

let running = '1/rr';

/** Restarts both ztunnels with `n` workers (the environment reaches them through startZtunnel's). */
async function ztunnelWorkers(n: number, sched: Sched = 'rr'): Promise<void> {
  if (`${n}/${sched}` === running) return;
  const started = Date.now();
  const nodes = (JSON.parse(readFileSync(CONTEXT, 'utf8')) as LabContext).nodes.map((node) => node.name);
  await Promise.all(nodes.map((node) => stopZtunnel(LAB_DIR, node, 'SIGTERM')));
  process.env.WEFT_ZTUNNEL_WORKERS = String(n);
  process.env.NODE_CLUSTER_SCHED_POLICY = sched;
  // One at a time: each start rewrites the lab's state file.
  for (const node of nodes) await startZtunnel(LAB_DIR, node);
  running = `${n}/${sched}`;
  process.stderr.write(`  ztunnels restarted with ${n} worker${n > 1 ? `s, scheduling ${sched}` : ''} (${Date.now() - started} ms)\n`);
}

/** HBONE streams reset for the buffer budget so far, all nodes' ztunnels (their primaries sum the workers). */
async function budgetResets(): Promise<number> {
  let n = 0;
  for (const node of (JSON.parse(readFileSync(CONTEXT, 'utf8')) as LabContext).nodes) {
    const res = await fetch(`http://${node.address}:15020/metrics`, { signal: AbortSignal.timeout(5000) });
    const scrape = parsePromText(await res.text());
    n += samplesOf(scrape, 'weft_ztunnel_hbone_refused_total').filter((x) => x.labels.reason === 'buffer_budget').reduce((a, x) => a + x.value, 0);
  }
  return n;
}

/** A node's ztunnel processes: the one the lab started and its workers. */
function ztunnelPids(node: string): number[] {
  const proc = readState(LAB_DIR)!.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === `ztunnel/${node}`)!;
  return [proc.pid!, ...readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)];
}

/** Resident memory of a node's ztunnel, all its processes. */
function ztunnelRssMb(node: string): number {
  return ztunnelPids(node).reduce((sum, pid) => sum + rssBytes(pid), 0) / 1024 / 1024;
}

/** CPU seconds so far of both nodes' ztunnels, all their processes. */
function ztunnelsCpuSeconds(): number {
  const nodes = (JSON.parse(readFileSync(CONTEXT, 'utf8')) as LabContext).nodes;
  return nodes.flatMap((n) => ztunnelPids(n.name)).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** A throughput median, with how many runs gave no result ("5.10 (1/3 failed)"). */
function gbpsCell(gbps: number, failed: number): string {
  if (Number.isNaN(gbps)) return 'failed';
  return `${gbps.toFixed(2)}${failed ? ` (${failed}/${REPEAT} failed)` : ''}`;
}

/**
 * One iperf3 run's received Gb/s. A run without a result (iperf3 ended in an error,
 * e.g. a proxy reset one of its streams) is tried once more; NaN when that fails too,
 * so the table shows the failures instead of the bench stopping.
 */
async function iperf(path: Path, streams: number, retry = true): Promise<number> {
  const [host, port] = path.iperf.split(':');
  const cpuBefore = path.workers ? ztunnelsCpuSeconds() : 0;
  const out = JSON.parse(await runIn(path.client, 'iperf3', ['-c', host!, '-p', port!, '-t', String(SECONDS), '-P', String(streams), '-J'])) as {
    end?: { sum_received?: { bits_per_second: number; bytes: number } }; error?: string;
  };
  const received = out.end?.sum_received;
  if (received !== undefined) {
    // CPU of both ztunnels (all their processes) per GiB received, for this run only.
    if (path.workers && streams > 1) lastCpuMsPerGiB = (ztunnelsCpuSeconds() - cpuBefore) * 1000 / (received.bytes / 2 ** 30);
    return received.bits_per_second / 1e9;
  }
  const why = `${path.name}: iperf3 -P ${streams} gave no result (${out.error ?? 'no sum_received'})`;
  process.stderr.write(`  ${why}${retry ? '; once more' : ''}\n`);
  if (!retry) return NaN;
  return iperf(path, streams, false);
}

let lastCpuMsPerGiB = NaN;

/** One round of every measure on `path`, added to its samples. */
async function round(path: Path, s: Samples, i: number): Promise<void> {
  if (path.workers) await ztunnelWorkers(path.workers, path.sched);
  const resetsBefore = path.workers ? await budgetResets() : 0;
  s.gbps.push(await iperf(path, 1));
  lastCpuMsPerGiB = NaN;
  s.gbpsP.push(await iperf(path, PARALLEL));
  if (path.workers) s.cpuMsPerGiB.push(lastCpuMsPerGiB);
  const lat = JSON.parse(await runIn(path.client, process.execPath, [LOADGEN, 'latency', '--target', path.echo, '--rate', String(RATE),
    '--duration', String(SECONDS * 1000), '--size', '1024', '--connections', '8'])) as { p50Ms: number; p99Ms: number; errors: number };
  if (lat.errors) throw new Error(`${path.name}: ${lat.errors} latency requests failed`);
  s.p50.push(lat.p50Ms);
  s.p99.push(lat.p99Ms);
  // Both ztunnels' CPU per new connection: steadier than conn/s on a shared machine.
  const connCpuBefore = path.workers ? ztunnelsCpuSeconds() : 0;
  const cr = JSON.parse(await runIn(path.client, process.execPath, connrateArgv(path.echo, CONNS))) as ConnrateResult;
  s.cps.push(cr.perSecond);
  if (path.workers) s.cpuUsPerConn.push((ztunnelsCpuSeconds() - connCpuBefore) * 1e6 / cr.connections);
  if (path.workers) {
    s.rssMb.push(ztunnelRssMb('node-1'));
    s.resets.push(await budgetResets() - resetsBefore);
  }
  process.stderr.write(`  ${path.name} run ${i + 1}/${REPEAT}: ${s.gbps.at(-1)!.toFixed(2)} Gb/s, -P ${PARALLEL} ${s.gbpsP.at(-1)!.toFixed(2)} Gb/s, `
    + `p50 ${s.p50.at(-1)!.toFixed(3)} ms, p99 ${s.p99.at(-1)!.toFixed(3)} ms, ${s.cps.at(-1)} conn/s\n`);
}

/** REPEAT rounds over all paths, interleaved; the median of each measure per path. */
async function measure(paths: Path[]): Promise<Record<string, Result>> {
  const samples = new Map(paths.map((p) => [p.name, { gbps: [], gbpsP: [], p50: [], p99: [], cps: [], rssMb: [], cpuMsPerGiB: [], cpuUsPerConn: [], resets: [] } as Samples]));
  // Every other round backwards, so the ztunnels switch worker counts once per round, not twice.
  for (let i = 0; i < REPEAT; i++) for (const p of i % 2 ? [...paths].reverse() : paths) await round(p, samples.get(p.name)!, i);
  const results: Record<string, Result> = {};
  for (const [name, s] of samples) {
    const failed = (xs: number[]) => xs.filter((x) => Number.isNaN(x)).length;
    results[name] = {
      gbps: median(s.gbps), gbpsP: median(s.gbpsP), p50: median(s.p50), p99: median(s.p99), cps: median(s.cps), rssMb: median(s.rssMb), cpuMsPerGiB: median(s.cpuMsPerGiB), cpuUsPerConn: median(s.cpuUsPerConn),
      failed: { gbps: failed(s.gbps), gbpsP: failed(s.gbpsP) },
      budgetResets: s.resets.length ? s.resets.reduce((a, b) => a + b, 0) : NaN,
    };
  }
  return results;
}

function table(results: Record<string, Result>): string {
  const d = results.direct!;
  const h = results.haproxy!;
  const rows: string[][] = [['path', 'throughput Gb/s', `-P ${PARALLEL} Gb/s`, 'p50 ms', 'p99 ms', 'added p99 ms', 'conn/s', 'ztunnel RSS MB', `ztunnel CPU ms/GiB (-P ${PARALLEL})`, 'ztunnel CPU µs/conn', 'budget resets',
    'throughput ×direct', 'throughput ×haproxy', `-P ${PARALLEL} ×haproxy`, 'p99 ×haproxy', 'conn/s ×direct', 'conn/s ×haproxy']];
  for (const [name, r] of Object.entries(results)) {
    rows.push([name, gbpsCell(r.gbps, r.failed.gbps), gbpsCell(r.gbpsP, r.failed.gbpsP), r.p50.toFixed(3), r.p99.toFixed(3), (r.p99 - d.p99).toFixed(3), String(r.cps),
      Number.isNaN(r.rssMb) ? '-' : r.rssMb.toFixed(0), Number.isNaN(r.cpuMsPerGiB) ? '-' : r.cpuMsPerGiB.toFixed(0),
      Number.isNaN(r.cpuUsPerConn) ? '-' : r.cpuUsPerConn.toFixed(0), Number.isNaN(r.budgetResets) ? '-' : String(r.budgetResets),
      ...[r.gbps / d.gbps, r.gbps / h.gbps, r.gbpsP / h.gbpsP, r.p99 / h.p99, r.cps / d.cps, r.cps / h.cps].map((x) => (Number.isFinite(x) ? x.toFixed(2) : '-'))]);
  }
  return mdTable(rows[0]!, rows.slice(1), { aligned: true });
}

/** Configured by environment only (the header above); a flag is a mistake, not a 4-minute run. */
const USAGE = [
  'npm run bench  (node dist/bench/lab.js): the lab data path, weft vs HAProxy vs direct; no flags, only these (defaults):',
  ...Object.entries(KNOBS).map(([name, [value, what]]) => `  ${`WEFT_BENCH_${name}=${value}`.padEnd(29)}${what}`),
  `  ${'WEFT_BENCH_SCHED_NONE=1'.padEnd(29)}also weft-wN-none: the workers accept themselves`,
  `  ${'WEFT_BENCH_LAB_DIR=<dir>'.padEnd(29)}the bench's lab directory (.weft-lab/bench)`,
].join('\n');

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.length) {
    if (args.some((a) => a === '--help' || a === '-h')) return void console.log(USAGE);
    throw new Error(`node dist/bench/lab.js takes no arguments (got ${args.join(' ')})\n${USAGE}`);
  }
  if (process.getuid?.() !== 0) throw new Error('the lab benchmark needs root (network namespaces)');
  mkdirSync(LAB_DIR, { recursive: true });
  await withLab({ env: ENV, progress: (l) => process.stderr.write(`bench: ${l}\n`) }, async (onAbort) => {
    const owned: ChildProcess[] = [];
    onAbort(() => { for (const c of owned) c.kill('SIGTERM'); });
    try {
      const ctx = JSON.parse(readFileSync(CONTEXT, 'utf8')) as LabContext;
      const ip = (uid: string) => ctx.pods.find((p) => p.uid === uid)!.ip;
      const netns = (uid: string) => ctx.pods.find((p) => p.uid === uid)!.netns;
      for (const uid of ['legacy/echo-1', 'demo/echo-2']) owned.push(background(netns(uid), 'iperf3', ['-s', '-p', '5201']));
      const dir = join(LAB_DIR, 'haproxy');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      for (const threads of ['auto', 1] as const) {
        // Each pair its own root and certificates, in its own directory.
        const own = join(dir, `nbthread-${threads}`);
        mkdirSync(own);
        await haproxyPair(ctx, own, ip('legacy/echo-1'), threads, owned);
      }
      await sleep(300);
      const n1 = ctx.nodes[0]!.address;
      const paths: Path[] = [
        { name: 'direct', client: netns('legacy/client'), iperf: `${ip('legacy/echo-1')}:5201`, echo: `${ip('legacy/echo-1')}:9000` },
        { name: 'weft', client: netns('demo/client'), iperf: `${ip('demo/echo-2')}:5201`, echo: `${ip('demo/echo-2')}:9000`, workers: 1 },
        { name: 'haproxy', client: netns('legacy/client'), iperf: `${n1}:${HAPROXY_PORTS.auto![0]}`, echo: `${n1}:${HAPROXY_PORTS.auto![2]}` },
        { name: 'haproxy-1t', client: netns('legacy/client'), iperf: `${n1}:${HAPROXY_PORTS[1]![0]}`, echo: `${n1}:${HAPROXY_PORTS[1]![2]}` },
      ];
      if (WORKERS > 1) paths.push({ ...paths[1]!, name: `weft-w${WORKERS}`, workers: WORKERS });
      if (WORKERS > 1 && SCHED_NONE) paths.push({ ...paths[1]!, name: `weft-w${WORKERS}-none`, workers: WORKERS, sched: 'none' });
      process.stderr.write(`bench: ${REPEAT} interleaved rounds per path, ${SECONDS} s each (iperf3 -P 1 and -P ${PARALLEL}, latency at ${RATE} req/s), `
        + `${CONNS} connections per rate run; medians reported\n`);
      const results = await measure(paths);
      process.stdout.write(`\n${table(results)}\n\n`);
      process.stdout.write(JSON.stringify({ seconds: SECONDS, rate: RATE, repeat: REPEAT, parallel: PARALLEL, workers: WORKERS, results }) + '\n');
    } finally {
      for (const p of owned) if (p.exitCode === null) p.kill('SIGKILL');
    }
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
