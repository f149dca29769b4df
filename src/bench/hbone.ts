/**
 * Loopback microbenchmark of the HBONE data path:
 *
 *   direct:  iperf3 client ─────────────────────────────────────────► iperf3 server
 *   weft:    iperf3 client ─► node-a OutboundProxy ═HBONE/mTLS═► node-b InboundServer ─► iperf3 server
 *   haproxy: iperf3 client ─► haproxy A ═════TLS 1.3 mTLS═════► haproxy B ─► iperf3 server
 *
 * Each proxy "node" is its own process (as in production, and so the two hops do not
 * share one event loop). Throughput: one iperf3 stream, plus the CPU both proxy
 * processes spent per GiB (steadier than Gbit/s on a shared machine). Latency: 1 KiB
 * request/echo over one persistent connection paced at a fixed rate; "added" is the
 * percentile minus the direct one. Setups run interleaved, `--repeat` times, and
 * medians are printed: loopback on a shared CPU is noisy, so compare ratios within
 * one run, not across machines.
 *
 * CPU is also printed per unit of work, each proxy process and both summed: ms per GiB
 * over the iperf3 phase, and vCPU per 1,000 req/s over the paced 1 KiB phase (issue 13's
 * "ztunnel CPU per 1,000 req/s"), with the HAProxy pair's and the ratios. `--baseline
 * <dist dir>` adds the weft setup run from another build, for before/after in one run.
 *
 * Findings that shaped the defaults (see the report in the commit history): Node's
 * 64 KiB default windows cost ~30 %; batching socket writes per loop turn (src/hbone/pipe.ts)
 * was the largest single gain; frame size, bigger windows and GC flags were noise.
 *
 * `--same-node` adds one ztunnel process tunnelling to its own inbound (what a connection
 * between two pods of one node costs today) and a plain in-process relay (the floor of a
 * same-node path that skipped the HBONE hop); `--hops` traces the latency phase's
 * syscalls with perf and prints where a round trip's time goes, hop by hop (hops.ts).
 *
 *   npx tsc -p . && node dist/bench/hbone.js [--seconds 5] [--rate 1000] [--repeat 3]
 *       [--variants [--filter text]] [--weft-only] [--no-latency | --latency-only]
 *       [--baseline <other build's dist dir>] [--same-node] [--hops] [--help]
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { setPriority } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../ca/issuer';
import { cpuSeconds } from '../faults/observe';
import type { HboneTuning } from '../hbone/settings';
import { ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { freePort, waitListening } from './redis';
import { runBench } from './signals';
import { benchTempDir } from './temp-dir';
import { percentile } from './stats';
import { CLIENT_ID, CLIENT_POD, NODE_A, NODE_B, runChild, SERVER_ID, SERVER_POD, TD, type Certs, type ChildConfig } from './hbone-node';
import { canTraceHops, gapNames, hopReport, matchRoundTrips, parseEvents, printHopReport, recordHops, roundTripSteps } from './hops';
import { report, type Latency, type Sample } from './hbone-report';

const MiB = 1024 * 1024;

/** `nice`: the proxies' scheduling priority (setpriority; negative needs root), to see how much of the tail is waiting for a CPU. */
const VARIANTS: Array<{ name: string; tuning: Partial<HboneTuning>; nodeArgs?: string[]; nice?: number }> = [
  { name: 'weft default (4/16 MiB windows, 1 MiB frames, 1 MiB pipe hwm)', tuning: {} },
  { name: 'weft, Node default windows (64 KiB)', tuning: { streamWindow: 65_535, connectionWindow: 65_535 } },
  { name: 'weft, 16 KiB frames', tuning: { maxFrameSize: 16_384 } },
  { name: 'weft, 64 KiB pipe hwm', tuning: { pipeHighWaterMark: 64 * 1024 } },
  { name: 'weft, 256 KiB pipe hwm', tuning: { pipeHighWaterMark: 256 * 1024 } },
  { name: 'weft, 16/64 MiB windows', tuning: { streamWindow: 16 * MiB, connectionWindow: 64 * MiB } },
  { name: 'weft, --max-semi-space-size=32', tuning: {}, nodeArgs: ['--max-semi-space-size=32'] },
  { name: 'weft, --max-semi-space-size=1', tuning: {}, nodeArgs: ['--max-semi-space-size=1'] },
  { name: `weft, ${ZTUNNEL_NODE_FLAGS.join(' ')} (the ztunnel's own flags)`, tuning: {}, nodeArgs: [...ZTUNNEL_NODE_FLAGS] },
  { name: 'weft, proxies at nice -10', tuning: {}, nice: -10 },
  // V8's background GC threads compete with the proxies for the same two cores.
  { name: 'weft, --single-threaded-gc', tuning: {}, nodeArgs: ['--single-threaded-gc'] },
  { name: `weft, ${ZTUNNEL_NODE_FLAGS.join(' ')} --single-threaded-gc`, tuning: {}, nodeArgs: [...ZTUNNEL_NODE_FLAGS, '--single-threaded-gc'] },
];

if (process.argv[2] === '--child') {
  process.once('message', (cfg: ChildConfig) => {
    runChild(cfg).then((ports) => process.send!({ ports }), (err) => { console.error(err); process.exit(1); });
  });
  // WEFT_BENCH_LOOP_DELAY=1: print each proxy's event-loop delay at exit (is the tail ours?).
  const h = process.env.WEFT_BENCH_LOOP_DELAY ? monitorEventLoopDelay({ resolution: 1 }) : undefined;
  h?.enable();
  const exit = () => {
    if (h) console.error(`[${process.pid}] loop delay ms p50 ${(h.percentile(50) / 1e6).toFixed(3)} p99 ${(h.percentile(99) / 1e6).toFixed(3)} max ${(h.max / 1e6).toFixed(3)}`);
    process.exit(0);
  };
  process.on('disconnect', exit);
  process.on('SIGTERM', exit);
}

// ---------- parent: orchestration and measurement ----------

const children: ChildProcess[] = [];

/**
 * Sets the priority of every thread of `pid` (Linux keeps it per thread: V8's GC
 * helpers and libuv's threadpool, started by now, would keep 0 with the main thread's
 * alone; threads started later inherit it from the main thread).
 */
function renice(pid: number, nice: number): void {
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) setPriority(Number(tid), nice);
  } catch (err) {
    console.error(`cannot set the proxies' priority to ${nice} (a negative one needs root): ${(err as Error).message}; the row runs at the default`);
  }
}

/** `script`: another build's dist/bench/hbone.js (--baseline), or this one. */
function startChild(cfg: ChildConfig, nodeArgs: string[] = [], script = __filename, nice?: number): Promise<number[]> {
  // WEFT_BENCH_NODE_ARGS="--cpu-prof" profiles the proxy processes.
  const execArgv = [...(process.env.WEFT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...nodeArgs];
  const child = fork(script, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', (m: { ports: number[] }) => {
      if (nice !== undefined) renice(child.pid!, nice);
      resolve(m.ports);
    });
    child.once('exit', (code) => reject(new Error(`${cfg.role} exited with ${code}`)));
    child.send(cfg);
  });
}

function stopAll(): void {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGTERM');
}

async function issue(): Promise<{ certs: Certs; roots: string; root: { certPem: string } }> {
  const root = await generateRootCa({ trustDomain: TD });
  const issuer = new Issuer(root, { trustDomain: TD });
  const certs: Certs = {};
  for (const id of [CLIENT_ID, SERVER_ID]) {
    const { keyPem, csrPem } = await generateKeyAndCsr();
    certs[id] = { keyPem, chain: issuer.signCsr(csrPem, { identity: id, ttlMs: 3_600_000 }) };
  }
  return { certs, roots: root.certPem, root };
}

/**
 * One iperf3 stream; returns Gbit/s received (the sender's figure if the receiver's is
 * missing), or NaN with a warning when iperf3 reports an error: one failed run must
 * not lose the others' figures.
 */
function iperf(host: string, port: number, seconds: number, bind?: string): number {
  const args = ['-c', host, '-p', String(port), '-t', String(seconds), '-J', '-P', '1'];
  if (bind) args.push('-B', bind);
  const r = spawnSync('iperf3', args, { encoding: 'utf8', timeout: (seconds + 20) * 1000 });
  return iperfGbps(r.stdout ?? '', r.status === 0 ? undefined : (r.stderr || `exit ${r.status ?? r.signal}`));
}

interface IperfSum { bits_per_second?: number }
/** iperf3 -J output: `end.sum_received` / `end.sum_sent`, or `error` when the test failed. */
interface IperfResult { error?: string; end?: { sum_received?: IperfSum; sum_sent?: IperfSum } }

function iperfGbps(stdout: string, failure?: string): number {
  let j: IperfResult = {};
  try {
    j = JSON.parse(stdout) as IperfResult;
  } catch {
    // Not JSON (killed, or iperf3 missing): the failure text says why.
  }
  const bps = j.end?.sum_received?.bits_per_second ?? j.end?.sum_sent?.bits_per_second;
  if (typeof bps === 'number' && Number.isFinite(bps) && !j.error) return bps / 1e9;
  console.error(`iperf3 gave no throughput: ${j.error ?? failure ?? stdout.slice(0, 300)}`);
  return NaN;
}

async function echoServer(host: string): Promise<{ port: number; close(): void }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer({ noDelay: true }, (s) => { socks.add(s); s.on('error', () => {}); s.pipe(s); s.on('close', () => socks.delete(s)); });
  await new Promise<void>((r) => srv.listen(0, host, () => r()));
  return { port: (srv.address() as net.AddressInfo).port, close: () => { for (const s of socks) s.destroy(); srv.close(); } };
}

interface FixedRate { lat: Latency; /** CPU seconds of each of `pids` over the paced phase (not the warm-up). */ cpu: number[]; /** Round trips per second achieved. */ achieved: number; elapsed: number }

/** CPU seconds (utime + stime, /proc) of each process; NaN for one that is gone, so its run drops out of the medians instead of reading as 0 CPU. */
function cpuOf(pids: number[]): number[] {
  return pids.map((p) => cpuSeconds(p));
}

/** 1 KiB echo round trips paced at `rate`/s on one connection; the CPU of `pids` over the paced phase. */
async function latency(host: string, port: number, rate: number, seconds: number, pids: number[], bind?: string): Promise<FixedRate> {
  const s = net.connect({ host, port, localAddress: bind, noDelay: true });
  await new Promise<void>((r, j) => { s.once('connect', () => r()); s.once('error', j); });
  const size = 1024;
  const payload = Buffer.alloc(size, 0x61);
  let want = 0;
  let wake: (() => void) | undefined;
  let broken: Error | undefined;
  let fail: ((err: Error) => void) | undefined;
  s.on('data', (b: Buffer) => { want -= b.length; if (want <= 0 && wake) { const w = wake; wake = undefined; w(); } });
  // A proxy that refuses or drops the connection ends the phase (NaN figures), not the bench.
  s.on('error', () => {});
  s.on('close', () => { broken = new Error(`the ${host}:${port} connection closed during the latency phase`); fail?.(broken); });
  const roundTrip = () => new Promise<void>((r, j) => {
    if (broken) return j(broken);
    want += size; wake = r; fail = j; s.write(payload);
  });
  for (let i = 0; i < 200; i++) await roundTrip(); // warm-up: tunnel, JIT
  const samples: number[] = [];
  const interval = 1000 / rate;
  const total = Math.floor(rate * seconds);
  const cpu0 = cpuOf(pids);
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // From the actual send: timer slack of this (shared-CPU) load generator would
    // otherwise dominate the percentiles of every setup alike.
    const sent = performance.now();
    await roundTrip();
    samples.push(performance.now() - sent);
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = cpuOf(pids).map((c, i) => c - cpu0[i]!);
  s.destroy();
  samples.sort((a, b) => a - b);
  const lat = { p50: percentile(samples, 50), p90: percentile(samples, 90), p99: percentile(samples, 99), p999: percentile(samples, 99.9), n: samples.length };
  return { lat, cpu, achieved: samples.length / elapsed, elapsed };
}

/** Two haproxy processes, one per "node", with one listener per route (TCP mode, TLS 1.3 mTLS between them). */
async function haproxyPair(dir: string, certs: Certs, roots: string, routes: Array<{ ip: string; port: number }>): Promise<{ ports: number[]; procs: ChildProcess[] }> {
  const pem = (id: string) => { const c = certs[id]!; return c.chain.slice(0, -1).join('\n') + '\n' + c.keyPem; };
  writeFileSync(join(dir, 'client.pem'), pem(CLIENT_ID));
  writeFileSync(join(dir, 'server.pem'), pem(SERVER_ID));
  writeFileSync(join(dir, 'root.pem'), roots);
  const common = 'global\n  nbthread 1\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3\n' +
    'defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
  let a = common;
  let b = common;
  const ports: number[] = [];
  for (const [i, dst] of routes.entries()) {
    const aPort = await freePort(NODE_A);
    const bPort = await freePort(NODE_B);
    ports.push(aPort);
    a += `listen a${i}\n  bind ${NODE_A}:${aPort}\n  server b ${NODE_B}:${bPort} ssl crt ${join(dir, 'client.pem')} ca-file ${join(dir, 'root.pem')} verify required\n`;
    b += `listen b${i}\n  bind ${NODE_B}:${bPort} ssl crt ${join(dir, 'server.pem')} ca-file ${join(dir, 'root.pem')} verify required\n  server pod ${dst.ip}:${dst.port}\n`;
  }
  writeFileSync(join(dir, 'a.cfg'), a);
  writeFileSync(join(dir, 'b.cfg'), b);
  const procs = ['a.cfg', 'b.cfg'].map((f) => spawn('haproxy', ['-db', '-f', join(dir, f)], { stdio: ['ignore', 'ignore', 'inherit'] }));
  children.push(...procs);
  for (const p of ports) await waitListening(NODE_A, p);
  return { ports, procs };
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * `pids`: the proxy processes, source node's first. `hopPath`: the processes a request
 * passes, in order (--hops); default `pids`.
 */
interface Running { tputPort: number; latPort: number; host: string; bind?: string; pids: number[]; hopPath?: number[] }
interface Setup { name: string; start(): Promise<Running> }


const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  seconds: { flag: 'seconds', default: 5, description: 'seconds of each iperf3 and paced-latency phase', parse: parse.int({ min: 1, max: 600 }) },
  rate: { flag: 'rate', default: 1000, description: '1 KiB round trips per second in the latency phase', parse: parse.int({ min: 1 }) },
  repeat: { flag: 'repeat', default: 3, description: 'interleaved rounds (medians printed)', parse: parse.int({ min: 1, max: 20 }) },
  variants: { flag: 'variants', boolean: true, default: false, description: 'also the tuning variants', parse: parse.bool() },
  filter: { flag: 'filter', default: undefined as string | undefined, description: '--variants: only those whose name contains this text, or one of several separated by | (the default always runs)', parse: parse.string() },
  baseline: { flag: 'baseline', default: undefined as string | undefined, description: "another build's dist dir: its weft setup interleaved, for before/after ratios", parse: parse.string() },
  weftOnly: { flag: 'weft-only', boolean: true, default: false, description: 'no HAProxy pair', parse: parse.bool() },
  noLatency: { flag: 'no-latency', boolean: true, default: false, description: 'skip the paced latency phase', parse: parse.bool() },
  latencyOnly: { flag: 'latency-only', boolean: true, default: false, description: 'skip the iperf3 phase', parse: parse.bool() },
  sameNode: { flag: 'same-node', boolean: true, default: false, description: 'also the same-node path (outbound and inbound in one process, HBONE to itself) and a plain in-process relay (no TLS, no HTTP/2)', parse: parse.bool() },
  hops: { flag: 'hops', boolean: true, default: false, description: 'trace the latency phase\'s syscalls with perf (root) and print where each round trip\'s time goes, hop by hop', parse: parse.bool() },
};

async function main(): Promise<void> {
  const o = parseOptions(specs, process.argv.slice(2), {}).values;
  if (o.help) return void console.log(`node dist/bench/hbone.js [flags]\n${optionsHelp(specs)}`);
  const { seconds, rate, repeat, filter } = o;
  if (!has('iperf3')) throw new Error('iperf3 is needed for the throughput figures (apt-get install iperf3)');
  const iperfPort = await freePort(SERVER_POD);
  const tmp = benchTempDir('hbone');
  const dir = tmp.path;
  const iperfd = spawn('iperf3', ['-s', '-B', SERVER_POD, '-p', String(iperfPort)], { stdio: 'ignore' });
  // Not in `children` (stopped after every setup): a signal's process.exit stops it here.
  const stopIperf = () => { if (iperfd.exitCode === null && iperfd.signalCode === null) iperfd.kill('SIGTERM'); };
  process.once('exit', stopIperf);
  let echo: Awaited<ReturnType<typeof echoServer>> | undefined;
  try {
    echo = await echoServer(SERVER_POD);
    const echoPort = echo.port;
    await waitListening(SERVER_POD, iperfPort);
    const { certs, roots } = await issue();
    const routes = [{ ip: SERVER_POD, port: iperfPort }, { ip: SERVER_POD, port: echoPort }];
    const weft = (name: string, tuning: Partial<HboneTuning>, nodeArgs?: string[], script?: string, nice?: number): Setup => ({
      name,
      async start() {
        const [inboundPort] = await startChild({ role: 'node-b', tuning, certs, roots, routes: [], inboundPort: 0 }, nodeArgs, script, nice);
        const [tputPort, latPort] = await startChild({ role: 'node-a', tuning, certs, roots, inboundPort: inboundPort!, routes }, nodeArgs, script, nice);
        return { tputPort: tputPort!, latPort: latPort!, host: NODE_A, bind: CLIENT_POD, pids: children.map((c) => c.pid!).reverse() };
      },
    });
    // --same-node: one process for both ends (it passes it twice), or a plain relay (once).
    const single = (name: string, role: 'same-node' | 'relay'): Setup => ({
      name,
      async start() {
        const [tputPort, latPort] = await startChild({ role, tuning: {}, certs, roots, inboundPort: 0, routes });
        const pid = children[children.length - 1]!.pid!;
        return { tputPort: tputPort!, latPort: latPort!, host: NODE_A, bind: CLIENT_POD, pids: [pid], hopPath: role === 'same-node' ? [pid, pid] : [pid] };
      },
    });
    const setups: Setup[] = [
      { name: 'direct TCP', start: async () => ({ tputPort: iperfPort, latPort: echoPort, host: SERVER_POD, pids: [] }) },
      ...(o.variants ? VARIANTS.filter((v, i) => i === 0 || !filter || filter.split('|').some((f) => v.name.includes(f))) : VARIANTS.slice(0, 1))
        .map((v) => weft(v.name, v.tuning, v.nodeArgs, undefined, v.nice)),
      ...(o.sameNode ? [single('weft same-node (one ztunnel, HBONE/mTLS to itself)', 'same-node'), single('plain relay in one process (Pipe, no TLS, no HTTP/2)', 'relay')] : []),
    ];
    // --baseline <dist dir>: the same setup run from another build (e.g. main's, built
    // into a directory of its own), interleaved, for before/after ratios in one run.
    const baseline = o.baseline;
    if (baseline) setups.push(weft(`weft baseline (${baseline})`.slice(0, 64), {}, undefined, join(resolve(baseline), 'bench', 'hbone.js')));
    if (has('haproxy') && !o.weftOnly) {
      setups.push({
        name: 'haproxy mTLS TCP pair (nbthread 1)',
        async start() {
          const ha = await haproxyPair(dir, certs, roots, routes);
          return { tputPort: ha.ports[0]!, latPort: ha.ports[1]!, host: NODE_A, pids: ha.procs.map((p) => p.pid!) };
        },
      });
    }
    const samples = new Map<string, Sample[]>(setups.map((s) => [s.name, []]));
    const hops = o.hops && !o.noLatency && canTraceHops() ? new Map<string, number[][]>(setups.map((s) => [s.name, []])) : undefined;
    if (o.hops && !hops) console.error('--hops: perf cannot trace syscalls here (needs perf and root, or --no-latency was given); no hop table');
    // Interleaved repetitions: drift of a shared machine hits every setup alike.
    for (let r = 0; r < repeat; r++) {
      for (const setup of setups) {
        console.error(`[${new Date().toISOString().slice(11, 19)}] round ${r + 1}/${repeat}: ${setup.name}`);
        const run = await setup.start();
        const cpu0 = cpuOf(run.pids);
        const gbps = o.latencyOnly ? NaN : iperf(run.host, run.tputPort, seconds, run.bind);
        const cpu = cpuOf(run.pids).map((c, i) => c - cpu0[i]!);
        if (process.env.WEFT_BENCH_STATS) {
          for (const p of run.pids) {
            const st = readFileSync(`/proc/${p}/status`, 'utf8');
            const sw = st.split('\n').filter((l) => l.includes('ctxt_switches')).join(' ');
            console.error(`[${setup.name.slice(0, 12)}] pid ${p} cpu ${cpuSeconds(p).toFixed(2)} s ${sw.replace(/\s+/g, ' ')}`);
          }
        }
        const gib = (gbps * 1e9 * seconds) / 8 / 2 ** 30;
        const none: FixedRate = { lat: { p50: NaN, p90: NaN, p99: NaN, p999: NaN, n: 0 }, cpu: run.pids.map(() => NaN), achieved: NaN, elapsed: NaN };
        // --hops: the trace starts after the warm-up and ends before the paced phase does.
        const traced = hops && seconds >= 2
          ? new Promise<void>((r) => setTimeout(r, 700)).then(() => recordHops([process.pid, ...run.pids], Math.min(3, seconds - 1.2), dir))
          : undefined;
        const fixed = o.noLatency ? none
          : await latency(run.host, run.latPort, rate, seconds, run.pids, run.bind).catch((err: Error) => { console.error(err.message); return none; });
        if (traced && hops) {
          const steps = roundTripSteps(process.pid, run.hopPath ?? run.pids);
          hops.get(setup.name)!.push(...matchRoundTrips(parseEvents(await traced, new Set([process.pid, ...run.pids])), steps));
        }
        samples.get(setup.name)!.push({
          gbps,
          cpuMsPerGiB: cpu.map((c) => (c * 1000) / gib),
          lat: fixed.lat,
          // vCPU = CPU seconds per second; per 1,000 round trips per second achieved.
          vcpuPer1k: fixed.cpu.map((c) => c / fixed.elapsed / (fixed.achieved / 1000)),
        });
        stopAll();
        await new Promise((res) => setTimeout(res, 300));
      }
    }
    report(setups.map((s) => s.name), samples, { seconds, rate, repeat });
    if (hops) {
      console.log(`\nHops (--hops): syscall timestamps of the bench process (client and echo) and the proxies, ${Math.min(3, seconds - 1.2)} s of each paced phase, all rounds pooled.`);
      for (const [i, s] of setups.entries()) {
        const labels = s.name.startsWith('direct') ? [] : s.name.includes('same-node') ? ['ztunnel out', 'ztunnel in'] : s.name.startsWith('plain relay') ? ['relay'] : ['source', 'dest'];
        const trips = hops.get(s.name)!;
        // Direct: the client and the echo server are one process, so a read or write
        // cannot be told to be the client's or the echo's (the trace has no fd on reads).
        if (!labels.length) console.log(`\n${s.name}: not decomposed (client and echo are one process); its p99 is in the table above`);
        else if (trips.length) printHopReport(setups[i]!.name, hopReport(trips, gapNames(labels)));
      }
    }
  } finally {
    echo?.close();
    stopAll();
    process.off('exit', stopIperf);
    stopIperf();
    tmp.remove();
  }
}

if (require.main === module && process.argv[2] !== '--child') {
  runBench(main, stopAll);
}
