/**
 * Loopback benchmark of the waypoint's L7 path (issue 10), 1 KiB HTTP/1.1 POSTs with
 * 1 KiB answers over keep-alive connections:
 *
 *   direct:            client ─────────────────────────────────────────► upstream (HTTP)
 *   waypoint:          client ═HBONE (mTLS h2 CONNECT VIP:80)═► WaypointApp ─► upstream (HTTP)
 *   haproxy mTLS→TLS:  client ═TLS, client cert required═► HAProxy (mode http) ═mTLS═► upstream (HTTPS)
 *   haproxy mTLS→TCP:  the same with a plain backend: the like-for-like of the waypoint row
 *
 * The client plays a source ztunnel: one pooled HBONE tunnel with the client's certificate,
 * a CONNECT stream per connection. The waypoint is the real WaypointApp (registry follower
 * on a real redis-server, L7 handler, mesh router) with an in-process issuer instead of the
 * CA. The upstream is outside the mesh (plain TCP), so there is no second ztunnel hop.
 * Upstream and waypoint are child processes, HAProxy runs with one thread (one Node thread
 * each), and the load generator is this process: everything shares the machine's cores.
 *
 * Per path: max req/s (closed loop, --connections in flight), then latency at a fixed
 * --rate (open loop, 8 connections, measured from the scheduled send time) with the
 * proxy's CPU seconds and RSS read from /proc over that phase. Ratios are against rows of
 * the same run; loopback on a shared machine is noisy, so compare ratios, not figures.
 *
 *   npm run bench:waypoint [-- --seconds 5] [--rate 1000] [--connections 16]
 *
 * `--tracing` measures what tracing costs instead: three waypoints, sampling 0 (off),
 * 0.01 (the default) and 1.0, max req/s of each in interleaved rounds (--rounds, median
 * kept, so a neighbour's load spread over the run hits every variant alike), printed as
 * ratios against off. The requests carry no traceparent: each is a new trace, sampled
 * at the ratio (the waypoint makes a server span and an attempt span per sampled request).
 * On a machine shared with other work, max req/s swings with the neighbours' load; the
 * waypoint's own CPU time per request (from /proc, over the same rounds) does not, and for
 * a one-thread proxy max req/s is its inverse: that ratio is the one to read there.
 *
 * `--variant label:script:node-args` (repeated) compares waypoints the same way: of other
 * builds (a copy of an older dist's bench/waypoint.js, so before/after share one run) or
 * with other Node flags (V8 heap sizes), each round also a --rate phase (p99, CPU, RSS).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { join } from 'node:path';
import pino from 'pino';
import { generateRootCa, Issuer, type CaKeyPair } from '../ca/issuer';
import { cpuSeconds, rssBytes } from '../faults/observe';
import { HbonePool } from '../hbone/pool';
import { namespaceRecord, serviceRecord, waypointRecord, workloadRecord } from '../registry/fixtures';
import { RegistryStore } from '../registry/store';
import { USE_WAYPOINT_LABEL } from '../registry/types';
import { WaypointApp } from '../waypoint/app';
import { WAYPOINT_NODE_FLAGS } from '../waypoint/node-flags';
import { WeftError } from '../lib/errors';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { loadWaypointConfig } from '../waypoint/options';
import { IssuerCertSource } from '../ztunnel/testing/issuer-certs';
import { mdTable } from '../lib/markdown';
import { fixedRate, maxRate, type Dial, type Fixed, type Path } from './waypoint-load';
import { median } from './stats';
import { freePort, startRedis, waitListening } from './redis';
import { runBench } from './signals';
import { benchTempDir } from './temp-dir';

const TD = 'cluster.local';
const id = (sa: string) => `spiffe://${TD}/ns/demo/sa/${sa}`;
const VIP = '10.96.0.10';
const UPSTREAM_IP = '127.0.0.2';
const CLIENT_IP = '127.0.0.9';
const SIZE = 1024;

interface Pem { keyPem: string; certPem: string; rootPem: string }
type ChildConfig = { role: 'upstream'; tls: Pem } | { role: 'waypoint'; redis: string; root: CaKeyPair; sampling?: number };

// ---------- children ----------

async function runUpstream(pem: Pem): Promise<{ http: number; https: number }> {
  const body = Buffer.alloc(SIZE, 0x62);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SIZE }).end(body));
  };
  const plain = http.createServer({ keepAliveTimeout: 120_000 }, handler);
  const secure = https.createServer({ keepAliveTimeout: 120_000, key: pem.keyPem, cert: pem.certPem, ca: pem.rootPem, requestCert: true, rejectUnauthorized: true }, handler);
  const listen = (s: net.Server) => new Promise<number>((r) => s.listen(0, UPSTREAM_IP, () => r((s.address() as net.AddressInfo).port)));
  return { http: await listen(plain), https: await listen(secure) };
}

async function runWaypoint(redis: string, root: CaKeyPair, sampling: number | undefined): Promise<{ port: number }> {
  const certs = new IssuerCertSource(new Issuer(root, { trustDomain: TD }), root.certPem);
  const config = loadWaypointConfig(['--name', 'waypoint', '--namespace', 'demo', '--address', '127.0.0.1', '--redis-url', redis,
    '--trust-anchor-file', '/nonexistent', '--identity-token-file', '/nonexistent', '--hbone-port', '0', '--metrics-port', '0',
    '--readiness-port', '0', '--admin-port', '0', ...(sampling === undefined ? [] : ['--trace-sampling', String(sampling)])], {});
  const app = new WaypointApp(config, pino({ level: 'warn' }), { certs });
  await app.start();
  return { port: app.hboneAddress()!.port };
}

if (process.argv[2] === '--child') {
  process.once('message', (cfg: ChildConfig) => {
    (cfg.role === 'upstream' ? runUpstream(cfg.tls) : runWaypoint(cfg.redis, cfg.root, cfg.sampling))
      .then((r) => process.send!(r), (err: unknown) => { console.error(err); process.exit(1); });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0)); // exits normally, so --cpu-prof writes its profile
}

// ---------- parent ----------

const children: ChildProcess[] = [];

function startChild<T>(cfg: ChildConfig, build: { script?: string; nodeArgs?: string[] } = {}): Promise<{ child: ChildProcess; reply: T }> {
  // WEFT_BENCH_NODE_ARGS="--cpu-prof" profiles the children (the waypoint's profile says what limits it).
  const execArgv = [...(process.env.WEFT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...(build.nodeArgs ?? [])];
  const child = fork(build.script ?? __filename, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', (m: T) => resolve({ child, reply: m }));
    child.once('exit', (code) => reject(new Error(`${cfg.role} child exited with ${code}`)));
    child.send(cfg);
  });
}

function stopAll(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}

async function haproxy(dir: string, pems: { front: Pem; back: Pem }, upstream: { http: number; https: number }): Promise<{ proc: ChildProcess; tlsPort: number; plainPort: number }> {
  const write = (name: string, p: Pem) => { writeFileSync(join(dir, name), p.certPem + '\n' + p.keyPem); return join(dir, name); };
  const front = write('front.pem', pems.front);
  const back = write('back.pem', pems.back);
  const root = join(dir, 'root.pem');
  writeFileSync(root, pems.front.rootPem);
  const [tlsPort, plainPort] = [await freePort(), await freePort()];
  const bind = (port: number) => `  bind 127.0.0.1:${port} ssl crt ${front} ca-file ${root} verify required\n`;
  const cfg = 'global\n  nbthread 1\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3\n' +
    'defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n  timeout http-keep-alive 120s\n' +
    `listen mtls_tls\n${bind(tlsPort)}  server up ${UPSTREAM_IP}:${upstream.https} ssl crt ${back} ca-file ${root} verify required\n` +
    `listen mtls_tcp\n${bind(plainPort)}  server up ${UPSTREAM_IP}:${upstream.http}\n`;
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  const proc = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(proc);
  await waitListening('127.0.0.1', tlsPort);
  await waitListening('127.0.0.1', plainPort);
  return { proc, tlsPort, plainPort };
}

const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  seconds: { flag: 'seconds', default: 5, description: 'seconds of each max-rate and paced phase', parse: parse.int({ min: 1, max: 600 }) },
  rate: { flag: 'rate', default: 1000, description: 'paced req/s of the latency phase (0 with --variant: none)', parse: parse.int({ min: 0 }) },
  connections: { flag: 'connections', default: 16, description: 'connections of the max-rate phase', parse: parse.int({ min: 1, max: 1024 }) },
  rounds: { flag: 'rounds', default: 3, description: '--tracing and --variant: interleaved rounds (medians printed)', parse: parse.int({ min: 1, max: 20 }) },
  tracing: {
    flag: 'tracing', boolean: true, default: false, parse: parse.bool(),
    description: 'instead: what trace sampling costs, the waypoint with sampling 0, 0.01 and 1.0: max req/s ratios against 0',
  },
};

/** --variant repeats, which parseOptions does not take: parseVariants reads it apart; listed here for the help. */
const variantHelp = {
  variant: {
    flag: 'variant', default: undefined as string | undefined, parse: parse.string(),
    description: 'label:script:node-args, repeated; instead: waypoints of other builds (script: another dist\'s bench/waypoint.js; empty: this one) or Node flags, '
      + 'in interleaved rounds: max req/s, CPU per request, p99, RSS, as ratios against the first variant. '
      + 'E.g. --variant before:/tmp/old/dist/bench/waypoint.js: --variant after:: --variant semi4::--max-semi-space-size=4',
  },
};

const HELP = `node dist/bench/waypoint.js [flags]: direct, the waypoint and HAProxy: max req/s, latency at --rate, CPU, RSS\n${optionsHelp({ ...specs, ...variantHelp })}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('-h')) return void console.log(HELP);
  // --variant repeats, which parseOptions does not take: read apart, the rest checked there.
  const { variants, rest } = parseVariants(argv);
  const o = parseOptions(specs, rest, {}).values;
  if (o.help) return void console.log(HELP);
  const { seconds, rate, connections, rounds } = o;
  // Redis first: it removes its own directory when it fails to start; nothing else is made before the try.
  const redis = await startRedis();
  const tmp = benchTempDir('waypoint');
  const dir = tmp.path;
  const store = RegistryStore.connect(redis.url);
  let pool: HbonePool | undefined;
  try {
    const root = await generateRootCa({ trustDomain: TD });
    const certs = new IssuerCertSource(new Issuer(root, { trustDomain: TD }), root.certPem);
    const pem = async (sa: string): Promise<Pem> => {
      const c = await certs.get(id(sa));
      return { keyPem: c.keyPem, certPem: c.certChainPem.slice(0, -1).join('\n'), rootPem: root.certPem };
    };
    const upstream = await startChild<{ http: number; https: number }>({ role: 'upstream', tls: await pem('upstream') });
    await store.apply([
      { op: 'put', kind: 'namespace', record: namespaceRecord('demo', { [USE_WAYPOINT_LABEL]: 'waypoint' }) },
      { op: 'put', kind: 'waypoint', record: waypointRecord({ namespace: 'demo', name: 'waypoint' }) },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'client', node: 'n1', addresses: [CLIENT_IP], serviceAccount: 'client' }) },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'echo', node: 'n1', addresses: [UPSTREAM_IP], labels: { app: 'echo' } }) },
      { op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo', vips: [VIP], ports: [{ name: 'http', port: 80, targetPort: upstream.reply.http }], selector: { app: 'echo' } }) },
    ]);
    if (o.tracing) {
      pool = new HbonePool({ certs, logger: pino({ level: 'silent' }) });
      await tracingCost(pool, redis.url, root, { seconds, connections, rounds });
      return;
    }
    if (variants.length > 0) {
      pool = new HbonePool({ certs, logger: pino({ level: 'silent' }) });
      const vo = { seconds, connections, rounds, rate };
      printVariants(await compareVariants(pool, redis.url, root, variants, vo), vo);
      return;
    }
    // With the flags it runs with in the lab and in a cluster.
    const wp = await startChild<{ port: number }>({ role: 'waypoint', redis: redis.url, root }, { nodeArgs: [...WAYPOINT_NODE_FLAGS] });
    const idleRssMb = rssBytes(wp.child.pid!) / 2 ** 20;
    const ha = await haproxy(dir, { front: await pem('haproxy'), back: await pem('haproxy-client') }, upstream.reply);
    const client = await pem('client');
    const p = new HbonePool({ certs, logger: pino({ level: 'silent' }) });
    pool = p;
    const tlsDial = (port: number): Dial => () => new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, key: client.keyPem, cert: client.certPem, ca: client.rootPem,
        checkServerIdentity: () => undefined }, () => resolve(s));
      s.setNoDelay(true);
      s.once('error', reject);
    });
    const paths: Path[] = [
      { name: 'direct', proxyPids: () => [], dial: () => new Promise((resolve, reject) => {
        const s = net.connect({ host: UPSTREAM_IP, port: upstream.reply.http, noDelay: true }, () => resolve(s));
        s.once('error', reject);
      }) },
      { name: 'waypoint (HBONE in, TCP out)', proxyPids: () => [wp.child.pid!], dial: async () => (await p.open({
        sourceIdentity: id('client'), destinationIdentity: id('waypoint'), nextHop: { host: '127.0.0.1', port: wp.reply.port },
        authority: { ip: VIP, port: 80 }, forwardedFor: { ip: CLIENT_IP, port: 40000 }, counters: { sent: 0, received: 0 },
      })).stream },
      { name: 'haproxy http, mTLS in, mTLS out', proxyPids: () => [ha.proc.pid!], dial: tlsDial(ha.tlsPort) },
      { name: 'haproxy http, mTLS in, TCP out', proxyPids: () => [ha.proc.pid!], dial: tlsDial(ha.plainPort) },
    ];
    const rows: Array<{ name: string; max: { rps: number; errors: number }; fixed: Fixed }> = [];
    for (const path of paths) {
      await maxRate(path.dial, connections, 1); // warm-up: tunnels, TLS, JIT, upstream pools
      const max = await maxRate(path.dial, connections, seconds);
      const fixed = await fixedRate(path.dial, rate, seconds, path.proxyPids());
      rows.push({ name: path.name, max, fixed });
      console.error(`${path.name}: ${max.rps.toFixed(0)} req/s max, p99 ${fixed.p99.toFixed(3)} ms at ${fixed.achieved.toFixed(0)} req/s`);
    }
    report(rows, { seconds, rate, connections, idleRssMb });
  } finally {
    await pool?.close();
    stopAll();
    await store.close();
    await redis.stop();
    tmp.remove();
  }
}

/** A waypoint to compare: its build (the bench script of another dist), its Node flags, its trace sampling. */
interface Variant { name: string; script?: string; nodeArgs?: string[]; sampling?: number }

/**
 * `--variant label:script:node args` (the args replace the production WAYPOINT_NODE_FLAGS), e.g. `before:/tmp/old/dist/bench/waypoint.js:` and
 * `semi4::--max-semi-space-size=4` (an empty script is this build).
 */
function parseVariants(argv: string[]): { variants: Variant[]; rest: string[] } {
  const variants: Variant[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--variant') { rest.push(argv[i]!); continue; }
    const [name, script, ...flags] = (argv[++i] ?? '').split(':');
    if (!name) throw new WeftError('WEFT_USAGE', '--variant wants label:script:node args (script and args may be empty), e.g. --variant semi4::--max-semi-space-size=4');
    variants.push({ name, ...(script ? { script } : {}), nodeArgs: flags.join(':').split(' ').filter(Boolean) });
  }
  return { variants, rest };
}

/**
 * One waypoint per variant, in interleaved rounds (rotated, so no variant always runs
 * first or right after another's GC debt): max req/s with the waypoint's CPU time per
 * request, then the fixed rate's p99 and CPU per request; medians kept. CPU per request
 * from /proc holds still on a loaded machine where max req/s does not.
 */
async function compareVariants(pool: HbonePool, redis: string, root: CaKeyPair, list: Variant[], o: { seconds: number; connections: number; rounds: number; rate: number }): Promise<Array<{ v: Variant; startedMb: number; rps: number; cpuUs: number; p99: number; fixedCpuUs: number; rssMb: number; errors: number }>> {
  const variants: Array<{ v: Variant; dial: Dial; pid: number; startedMb: number; rps: number[]; cpuUs: number[]; p99: number[]; fixedCpuUs: number[]; rssMb: number[]; errors: number }> = [];
  for (const v of list) {
    const wp = await startChild<{ port: number }>({ role: 'waypoint', redis, root, ...(v.sampling === undefined ? {} : { sampling: v.sampling }) }, v);
    const startedMb = rssBytes(wp.child.pid!) / 2 ** 20;
    const dial: Dial = async () => (await pool.open({
      sourceIdentity: id('client'), destinationIdentity: id('waypoint'), nextHop: { host: '127.0.0.1', port: wp.reply.port },
      authority: { ip: VIP, port: 80 }, forwardedFor: { ip: CLIENT_IP, port: 40000 }, counters: { sent: 0, received: 0 },
    })).stream;
    await maxRate(dial, o.connections, 1); // warm-up: tunnel, JIT, upstream pool
    variants.push({ v, dial, pid: wp.child.pid!, startedMb, rps: [], cpuUs: [], p99: [], fixedCpuUs: [], rssMb: [], errors: 0 });
  }
  for (let round = 0; round < o.rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const x = variants[(i + round) % variants.length]!;
      const cpu0 = cpuSeconds(x.pid);
      const r = await maxRate(x.dial, o.connections, o.seconds);
      const cpuUs = ((cpuSeconds(x.pid) - cpu0) / Math.max(1, r.done)) * 1e6;
      x.rps.push(r.rps);
      x.cpuUs.push(cpuUs);
      x.errors += r.errors;
      let line = `round ${round + 1}: ${x.v.name}: ${r.rps.toFixed(0)} req/s, ${cpuUs.toFixed(1)} µs CPU per request`;
      if (o.rate > 0) {
        const f = await fixedRate(x.dial, o.rate, o.seconds, [x.pid]);
        x.p99.push(f.p99);
        x.fixedCpuUs.push(f.cpu * 1000); // vCPU per 1000 req/s = ms CPU per request
        x.rssMb.push(f.rssMb);
        x.errors += f.errors;
        line += `; at ${o.rate} req/s: p99 ${f.p99.toFixed(3)} ms, ${(f.cpu * 1000).toFixed(1)} µs CPU per request, ${f.rssMb.toFixed(1)} MB`;
      }
      console.error(line);
    }
  }
  return variants.map((x) => ({ v: x.v, startedMb: x.startedMb, rps: median(x.rps), cpuUs: median(x.cpuUs), p99: median(x.p99), fixedCpuUs: median(x.fixedCpuUs), rssMb: median(x.rssMb), errors: x.errors }));
}

function printVariants(rows: Awaited<ReturnType<typeof compareVariants>>, o: { seconds: number; connections: number; rounds: number; rate: number }): void {
  const f = (n: number, d: number) => (Number.isFinite(n) ? n.toFixed(d) : '–');
  const [base] = rows as [typeof rows[0]];
  console.log(`\nclosed loop, ${o.connections} connections, ${o.seconds} s per round, ${o.rounds} rounds (medians)${o.rate > 0 ? `; then ${o.rate} req/s open loop, ${o.seconds} s` : ''}.`);
  console.log(`CPU: the waypoint process's user+system time per request served; capacity = max req/s as CPU allows it (× ${base.v.name}).\n`);
  console.log(mdTable(
    ['variant', 'max req/s', `× ${base.v.name}`, 'µs CPU per request', `capacity × ${base.v.name}`, `p99 ms at ${o.rate} req/s`, `µs CPU per request at ${o.rate} req/s`, 'RSS MB (started)', 'errors'],
    rows.map((r) => [r.v.name, f(r.rps, 0), f(r.rps / base.rps, 3), f(r.cpuUs, 1), f(base.cpuUs / r.cpuUs, 3), f(r.p99, 3), f(r.fixedCpuUs, 1), `${f(r.rssMb, 1)} (${f(r.startedMb, 1)})`, r.errors])));
}

/** The tracing cost: sampling 0, 0.01 and 1.0, compared with tracing off. */
async function tracingCost(pool: HbonePool, redis: string, root: CaKeyPair, o: { seconds: number; connections: number; rounds: number }): Promise<void> {
  const opts = { ...o, rate: 0 };
  const rows = await compareVariants(pool, redis, root, [
    { name: 'off (0)', sampling: 0, nodeArgs: [...WAYPOINT_NODE_FLAGS] }, { name: 'default (0.01)', sampling: 0.01, nodeArgs: [...WAYPOINT_NODE_FLAGS] },
    { name: 'all (1.0)', sampling: 1, nodeArgs: [...WAYPOINT_NODE_FLAGS] },
  ], opts);
  printVariants(rows, opts);
  const cost = (i: number) => (1 - rows[i]!.rps / rows[0]!.rps) * 100;
  const cpuCost = (i: number) => (1 - rows[0]!.cpuUs / rows[i]!.cpuUs) * 100;
  const f = (n: number, d: number) => n.toFixed(d);
  const verdict = (x: number, limit: number) => (x <= limit ? 'met' : 'NOT met');
  console.log(`\ndefault sampling costs ≤ 2 %: max req/s ${f(cost(1), 1)} % (${verdict(cost(1), 2)}), CPU capacity ${f(cpuCost(1), 1)} % (${verdict(cpuCost(1), 2)})`);
  console.log(`100 % sampling costs ≤ 10 %: max req/s ${f(cost(2), 1)} % (${verdict(cost(2), 10)}), CPU capacity ${f(cpuCost(2), 1)} % (${verdict(cpuCost(2), 10)})`);
}

function report(rows: Array<{ name: string; max: { rps: number; errors: number }; fixed: Fixed }>, o: { seconds: number; rate: number; connections: number; idleRssMb: number }): void {
  const [direct, wp, ha] = rows as [typeof rows[0], typeof rows[0], typeof rows[0]];
  const f = (n: number, d = 3) => (Number.isFinite(n) ? n.toFixed(d) : '–');
  console.log(`\nmax: closed loop, ${o.connections} connections, ${o.seconds} s. Latency, CPU, RSS: open loop at ${o.rate} req/s, 8 connections, ${o.seconds} s.`);
  console.log('CPU: the proxy process, vCPU per 1000 req/s served; RSS: its VmRSS at the end of the fixed-rate phase.\n');
  console.log(mdTable(['path', 'max req/s', '×direct', '×haproxy mTLS→mTLS', 'errors', 'p50 ms', 'p99 ms', 'added p99 ms', 'vCPU per 1000 req/s', 'RSS MB'], rows.map((r) => {
    const proxied = r !== direct;
    return [r.name, f(r.max.rps, 0), f(r.max.rps / direct.max.rps, 2), f(r.max.rps / ha.max.rps, 2), r.max.errors + r.fixed.errors,
      f(r.fixed.p50), f(r.fixed.p99), f(r.fixed.p99 - direct.fixed.p99), proxied ? f(r.fixed.cpu, 3) : '–', proxied ? f(r.fixed.rssMb, 1) : '–'];
  })));
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const ratio = wp.max.rps / ha.max.rps;
  const added = wp.fixed.p99 - direct.fixed.p99;
  console.log(`\nmax req/s ≥ 0.8× HAProxy (mTLS both sides): ${f(ratio, 2)}× — ${verdict(ratio >= 0.8)}`);
  console.log(`added p99 at ${o.rate} req/s ≤ 1 ms: ${f(added)} ms — ${verdict(added <= 1)}`);
  console.log(`waypoint CPU ≤ 0.25 vCPU per 1000 req/s: ${f(wp.fixed.cpu)} — ${verdict(wp.fixed.cpu <= 0.25)}`);
  console.log(`waypoint RSS ≤ 60 MB: ${f(wp.fixed.rssMb, 1)} MB (${f(o.idleRssMb, 1)} MB started, before any request) — ${verdict(wp.fixed.rssMb <= 60)}`);
}

if (require.main === module && process.argv[2] !== '--child') {
  runBench(main, stopAll);
}
