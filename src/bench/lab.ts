/**
 * `npm run bench`: the data path measured on the lab, three ways side by side in one
 * run, so every figure is a ratio against baselines taken on the same machine at the
 * same time:
 *
 *   direct   legacy/client → legacy/echo-1 (node-1 → node-2, no proxy)
 *   weft     demo/client   → demo/echo-2   (node-1 → ztunnel → HBONE → ztunnel → node-2)
 *   haproxy  legacy/client → HAProxy (node-1) → mTLS → HAProxy (node-2) → legacy/echo-1
 *
 * Throughput: one iperf3 stream. Latency: 1 KiB request/response at a fixed rate
 * (loadgen.ts). Connection rate: open/exchange/close loops. Needs root (the lab).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../ca/issuer';
import type { LabContext } from '../lab/context';
import { run } from '../lab/run';
import { withLab } from '../lab/session';

const REPO = join(__dirname, '..', '..');
const LOADGEN = join(REPO, 'dist', 'bench', 'loadgen.js');
const LAB_DIR = process.env.WEFT_BENCH_LAB_DIR ?? join(REPO, '.weft-lab', 'bench');
const CONTEXT = join(LAB_DIR, 'context.json');
const ENV = { ...process.env, WEFT_LAB_DIR: LAB_DIR, WEFT_CONTEXT: CONTEXT };

const SECONDS = Number(process.env.WEFT_BENCH_SECONDS ?? 5);
const RATE = Number(process.env.WEFT_BENCH_RATE ?? 1000);
const CONNS = Number(process.env.WEFT_BENCH_CONNECTIONS ?? 2000);
const REPEAT = Number(process.env.WEFT_BENCH_REPEAT ?? 3);

/** A command in `netns`; its stdout (a failure throws with its stderr). */
async function runIn(netns: string, cmd: string, args: string[]): Promise<string> {
  return (await run('ip', ['netns', 'exec', netns, cmd, ...args], { env: ENV })).stdout;
}

/** A server the bench owns, logging to the lab dir; killed by its PID at the end. */
function background(netns: string, cmd: string, args: string[]): ChildProcess {
  const log = openSync(join(LAB_DIR, `${cmd}-${netns}.log`), 'w');
  const child = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', log, log] });
  closeSync(log);
  return child;
}

interface Path { name: string; client: string; iperf: string; echo: string }
interface Result { gbps: number; p50: number; p99: number; cps: number }

async function haproxyPair(ctx: LabContext, dir: string, echoIp: string): Promise<ChildProcess[]> {
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
  const global = 'global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
  const front = (port: number, to: number) =>
    `listen p${port}\n  bind ${n1.address}:${port}\n  server s ${n2.address}:${to} ssl crt ${clientPem} ca-file ${join(dir, 'root.pem')} verify required alpn h2\n`;
  const back = (port: number, to: number) =>
    `listen p${port}\n  bind ${n2.address}:${port} ssl crt ${serverPem} ca-file ${join(dir, 'root.pem')} verify required\n  server s ${echoIp}:${to}\n`;
  writeFileSync(join(dir, 'a.cfg'), global + front(17001, 17002) + front(17003, 17004));
  writeFileSync(join(dir, 'b.cfg'), global + back(17002, 5201) + back(17004, 9000));
  const procs = [background(n1.netns, 'haproxy', ['-db', '-f', join(dir, 'a.cfg')]), background(n2.netns, 'haproxy', ['-db', '-f', join(dir, 'b.cfg')])];
  await sleep(800);
  for (const p of procs) if (p.exitCode !== null) throw new Error(`haproxy failed to start; see ${LAB_DIR}/haproxy-*.log and the configs in ${dir}`);
  return procs;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(path: Path): Promise<Result> {
  const gbps: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  const cps: number[] = [];
  const [iperfHost, iperfPort] = path.iperf.split(':');
  for (let i = 0; i < REPEAT; i++) {
    const ip = JSON.parse(await runIn(path.client, 'iperf3', ['-c', iperfHost!, '-p', iperfPort!, '-t', String(SECONDS), '-J'])) as {
      end: { sum_received: { bits_per_second: number } };
    };
    gbps.push(ip.end.sum_received.bits_per_second / 1e9);
    const lat = JSON.parse(await runIn(path.client, process.execPath, [LOADGEN, 'latency', '--target', path.echo, '--rate', String(RATE),
      '--duration', String(SECONDS * 1000), '--size', '1024', '--connections', '8'])) as { p50Ms: number; p99Ms: number; errors: number };
    if (lat.errors) throw new Error(`${path.name}: ${lat.errors} latency requests failed`);
    p50.push(lat.p50Ms);
    p99.push(lat.p99Ms);
    const cr = JSON.parse(await runIn(path.client, process.execPath, [LOADGEN, 'connrate', '--target', path.echo, '--count', String(CONNS),
      '--concurrency', '8', '--size', '64'])) as { perSecond: number; errors: number };
    cps.push(cr.perSecond);
    process.stderr.write(`  ${path.name} run ${i + 1}/${REPEAT}: ${gbps.at(-1)!.toFixed(2)} Gb/s, p50 ${p50.at(-1)!.toFixed(3)} ms, p99 ${p99.at(-1)!.toFixed(3)} ms, ${cps.at(-1)} conn/s\n`);
  }
  return { gbps: median(gbps), p50: median(p50), p99: median(p99), cps: median(cps) };
}

function table(results: Record<string, Result>): string {
  const d = results.direct!;
  const h = results.haproxy!;
  const rows: string[][] = [['path', 'throughput Gb/s', 'p50 ms', 'p99 ms', 'added p99 ms', 'conn/s',
    'throughput ×direct', 'throughput ×haproxy', 'p99 ×haproxy', 'conn/s ×direct', 'conn/s ×haproxy']];
  for (const [name, r] of Object.entries(results)) {
    rows.push([name, r.gbps.toFixed(2), r.p50.toFixed(3), r.p99.toFixed(3), (r.p99 - d.p99).toFixed(3), String(r.cps),
      (r.gbps / d.gbps).toFixed(2), (r.gbps / h.gbps).toFixed(2), (r.p99 / h.p99).toFixed(2), (r.cps / d.cps).toFixed(2), (r.cps / h.cps).toFixed(2)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
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
      owned.push(...(await haproxyPair(ctx, dir, ip('legacy/echo-1'))));
      await sleep(300);
      const n1 = ctx.nodes[0]!.address;
      const paths: Path[] = [
        { name: 'direct', client: netns('legacy/client'), iperf: `${ip('legacy/echo-1')}:5201`, echo: `${ip('legacy/echo-1')}:9000` },
        { name: 'weft', client: netns('demo/client'), iperf: `${ip('demo/echo-2')}:5201`, echo: `${ip('demo/echo-2')}:9000` },
        { name: 'haproxy', client: netns('legacy/client'), iperf: `${n1}:17001`, echo: `${n1}:17003` },
      ];
      process.stderr.write(`bench: ${REPEAT} runs per path, ${SECONDS} s each, latency at ${RATE} req/s, ${CONNS} connections per rate run; medians reported\n`);
      const results: Record<string, Result> = {};
      for (const p of paths) results[p.name] = await measure(p);
      process.stdout.write(`\n${table(results)}\n\n`);
      process.stdout.write(JSON.stringify({ seconds: SECONDS, rate: RATE, repeat: REPEAT, results }) + '\n');
    } finally {
      for (const p of owned) if (p.exitCode === null) p.kill('SIGKILL');
    }
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
