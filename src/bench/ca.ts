/**
 * CA throughput: `npx tsc -p . && node dist/bench/ca.js [--rounds R] [--count N] [--e2e-count N] [--rsa-count N] [--baseline DIR] [--json]`.
 *
 * The CA runs in child processes (their own core and event loop, as in a real mesh)
 * with a 1,000-workload registry, one with an RSA-2048 root and one with an ECDSA P-256
 * root; this process is the node. RSA-2048 (the old default) and ECDSA P-256 keys are
 * compared in interleaved rounds, medians printed:
 *   keygen: key generation + CSR, client side;
 *   sign:   Issuer.signCsr in-process, no network (the CA's CPU ceiling per core);
 *   issue:  CreateCertificate over gRPC/mutual TLS with CSRs made up front (the CA);
 *   e2e:    key generation + CSR + CreateCertificate per certificate (what a node sees);
 *   tls:    loopback mutual-TLS handshakes with each kind of certificate;
 *   crypto: single OpenSSL operations the CA and TLS make per certificate (sign and
 *           verify, on the event loop and in the threadpool; a P-256 key import and export).
 * `--baseline DIR` (another built checkout, e.g. a worktree of main) also starts that
 * build's CA (RSA root) and runs the issue and e2e phases with ECDSA keys against it in
 * the same rounds, order alternating, for a before/after ratio from one run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg as osLoadavg } from 'node:os';
import { Registry } from 'prom-client';
import { CaClient } from '../ca/client';
import { signInPool } from '../ca/der';
import { generateKeyAndCsr, generateRootCa, Issuer, poolSlots, type KeyType } from '../ca/issuer';
import type { JoinTokenVerifier } from '../ca/join-tokens';
import { CaServer } from '../ca/server';
import { limitsFor } from '../ca/rate-limit';
import { formatTable } from '../cli/output';
import { WeftError } from '../lib/errors';
import { silentLogger } from '../lib/log';
import { parse, parseOptions } from '../lib/options';
import { ambientNamespace, workloadRecord } from '../registry/fixtures';
import { MeshState } from '../registry/state';
import { median, percentile } from './stats';
import { measureHandshakes, type TlsIdentity } from './tls-handshakes';

const TD = 'cluster.local';
const WORKLOADS = 1000;
const TOKEN = 'weft-join.bench';

const specs = {
  rounds: { flag: 'rounds', default: 3, description: 'interleaved rounds (medians are printed)', parse: parse.int({ min: 1, max: 20 }) },
  count: { flag: 'count', default: 1000, description: 'certificates per round for the sign and issue phases', parse: parse.int({ min: 1 }) },
  e2eCount: { flag: 'e2e-count', default: 500, description: 'ECDSA certificates per round for the keygen and end-to-end phases', parse: parse.int({ min: 1 }) },
  rsaCount: { flag: 'rsa-count', default: 30, description: 'RSA certificates per round for the keygen and end-to-end phases (3-12/s, key generation dominates)', parse: parse.int({ min: 1 }) },
  handshakes: { flag: 'handshakes', default: 300, description: 'TLS handshakes per round and certificate kind', parse: parse.int({ min: 1 }) },
  concurrency: { flag: 'concurrency', default: 16, description: 'requests in flight', parse: parse.int({ min: 1, max: 1024 }) },
  cryptoCount: { flag: 'crypto-count', default: 1000, description: 'operations per round for the single-operation crypto phase', parse: parse.int({ min: 1 }) },
  csrs: { flag: 'csrs', default: 64, description: 'distinct CSRs prepared up front per key type (reused round-robin)', parse: parse.int({ min: 1 }) },
  baseline: { flag: 'baseline', default: '', description: 'a built checkout whose CA (dist/bench/ca.js, RSA root) is measured beside this one', parse: parse.string() },
  json: { flag: 'json', boolean: true, default: false, description: 'print one JSON object', parse: parse.bool() },
  serve: { flag: 'serve', default: 'no', description: '(internal) run as the CA child process with a root of this key type', parse: parse.oneOf(['no', 'rsa', 'ec'] as const) },
};

interface Ready { port: number; rootPem: string }
interface Cpu { user: number; system: number }

function identity(i: number): string {
  return `spiffe://${TD}/ns/bench/sa/sa-${i % WORKLOADS}`;
}

/** Child: the CA with a registry of WORKLOADS workloads on node-1 and a fixed join token; answers 'cpu' with its CPU time. */
async function serveCa(rootKey: KeyType): Promise<void> {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD, keyType: rootKey }), { trustDomain: TD });
  const state = new MeshState({ trustDomain: TD });
  state.replaceAll({
    node: [], namespace: [ambientNamespace('bench')], service: [], policy: [], peerauth: [],
    workload: Array.from({ length: WORKLOADS }, (_, i) => workloadRecord({ namespace: 'bench', name: `w-${i}`, node: 'node-1', serviceAccount: `sa-${i}` })),
  }, 1);
  // The bench measures issuing; join tokens (Redis) are exercised by the tests.
  const joinTokens: JoinTokenVerifier = {
    verify: async (_node, token) => { if (token !== TOKEN) throw new WeftError('WEFT_CA_JOIN_TOKEN_INVALID', 'bench token mismatch'); },
  };
  // The bench is one node sending as fast as it can: the CA's rate limits would measure themselves.
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: state, joinTokens, logger: silentLogger(), metrics: new Registry(), csrLimits: limitsFor(1_000_000),
  });
  const port = await server.start({ host: '127.0.0.1', port: 0 });
  process.on('message', (m) => { if (m === 'cpu') process.send!(process.cpuUsage() satisfies Cpu); });
  process.send!({ port, rootPem: issuer.rootPem } satisfies Ready);
  process.on('disconnect', () => { void server.stop(100).then(() => process.exit(0)); });
}

/** caCpuUs: the CA's CPU per op too, for the end-to-end phases (node and CA each on a core). */
interface Sample { perSecond: number; p50Ms: number; p99Ms: number; cpuUs: number; caCpuUs?: number }

/** Runs `op` `count` times with `concurrency` in flight; `cpu` reads the CPU time (µs) charged to the work. */
async function run(count: number, concurrency: number, cpu: () => Promise<number>, op: (i: number) => Promise<void>): Promise<Sample> {
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = await cpu();
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      await op(i);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpuUs = (await cpu()) - cpu0;
  latencies.sort((a, b) => a - b);
  return { perSecond: count / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), cpuUs: cpuUs / count };
}

const selfCpu = async (): Promise<number> => { const c = process.cpuUsage(); return c.user + c.system; };

interface CaChild { child: ChildProcess; client: CaClient; cpu: () => Promise<number> }

/** `script`: this bench, or a baseline build's copy of it (same --serve protocol). */
async function startCa(rootKey: KeyType, warmCsr: string, script = __filename): Promise<CaChild> {
  const child = fork(script, ['--serve', rootKey], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Ready));
    child.once('exit', (code) => reject(new Error(`CA child exited with ${code}`)));
  });
  const client = new CaClient({ address: `127.0.0.1:${ready.port}`, rootPem: ready.rootPem, trustDomain: TD, serverName: 'localhost' });
  const cpu = () => new Promise<number>((resolve) => {
    child.once('message', (m) => { const c = m as Cpu; resolve(c.user + c.system); });
    child.send('cpu');
  });
  const ca = { child, client, cpu };
  try {
    await client.join('node-1', TOKEN);
    if (!client.nodeCredentials) throw new Error('join failed');
    // Warm the connection so the handshake is not in the figures.
    await client.createCertificate(warmCsr, 0, identity(0));
  } catch (err) {
    stopCa(ca);
    throw err;
  }
  return ca;
}

/** The child stops its server and exits when the IPC channel closes; an open channel would also keep this process alive. */
function stopCa(ca: CaChild): void {
  ca.client.close();
  if (ca.child.connected) ca.child.disconnect();
}

/** Medians per phase name over the rounds, in first-seen order. */
class Results {
  private readonly samples = new Map<string, { unit: string; cpuWho: string; list: Sample[] }>();
  add(name: string, unit: string, cpuWho: string, s: Sample): void {
    const e = this.samples.get(name) ?? { unit, cpuWho, list: [] };
    e.list.push(s);
    this.samples.set(name, e);
  }
  medians(): Array<{ name: string; unit: string; cpuWho: string; rounds: number } & Required<Sample>> {
    return [...this.samples].map(([name, e]) => ({
      name, unit: e.unit, cpuWho: e.cpuWho, rounds: e.list.length,
      perSecond: median(e.list.map((s) => s.perSecond)), p50Ms: median(e.list.map((s) => s.p50Ms)),
      p99Ms: median(e.list.map((s) => s.p99Ms)), cpuUs: median(e.list.map((s) => s.cpuUs)),
      caCpuUs: median(e.list.map((s) => s.caCpuUs ?? NaN)),
    }));
  }
}

/**
 * One OpenSSL operation at a time, CPU of this process per operation: what a
 * certificate costs the CA (its root's signature, the CSR's check, the CSR key's
 * import) and a handshake (each side signs once and verifies the peer's chain).
 */
async function cryptoPhase(results: Results, count: number): Promise<void> {
  const tbs = Buffer.alloc(600, 7); // about a leaf's TBSCertificate
  const keys: Array<[string, KeyObject, KeyObject]> = [];
  for (const [name, type, opts] of [['RSA-2048', 'rsa', { modulusLength: 2048 }], ['ECDSA P-256', 'ec', { namedCurve: 'prime256v1' }]] as const) {
    const pair = generateKeyPairSync(type as 'rsa', opts as { modulusLength: number });
    keys.push([name, pair.privateKey, pair.publicKey]);
  }
  const op = async (name: string, fn: () => unknown, inFlight = 1) => {
    results.add(`crypto: ${name}`, 'ops/s', 'this process', await run(count, inFlight, selfCpu, async () => { await fn(); }));
  };
  for (const [name, privateKey, publicKey] of keys) {
    const signature = cryptoSign('sha256', tbs, privateKey);
    await op(`${name} sign, event loop`, () => cryptoSign('sha256', tbs, privateKey));
    await op(`${name} sign, threadpool (${poolSlots()} in flight)`, () => signInPool(tbs, privateKey), poolSlots());
    await op(`${name} verify, event loop`, () => cryptoVerify('sha256', tbs, publicKey, signature));
  }
  const p256 = keys.find(([name]) => name === 'ECDSA P-256')![2];
  const der = p256.export({ type: 'spki', format: 'der' });
  const jwk = p256.export({ format: 'jwk' });
  await op('P-256 public key import, SPKI DER (OpenSSL 3 decoder)', () => createPublicKey({ key: der, format: 'der', type: 'spki' }));
  await op('P-256 public key import, JWK coordinates', () => createPublicKey({ key: jwk, format: 'jwk' }));
  // What a node's CSR needs of its new key: its SubjectPublicKeyInfo (der.ts spkiAsn1 builds it from the JWK).
  await op('P-256 public key export, SPKI DER (OpenSSL 3 encoder)', () => p256.export({ type: 'spki', format: 'der' }));
  await op('P-256 public key export, JWK coordinates', () => p256.export({ format: 'jwk' }));
}

async function leaf(issuer: Issuer, keyType: KeyType, who: string): Promise<TlsIdentity> {
  const { keyPem, csrPem } = await generateKeyAndCsr({ keyType });
  return { keyPem, chain: issuer.signCsr(csrPem, { identity: `spiffe://${TD}/ns/bench/sa/${who}`, ttlMs: 3_600_000 }).slice(0, 1) };
}

async function main(argv: string[]): Promise<void> {
  const { values: o } = parseOptions(specs, argv);
  if (o.serve !== 'no') return serveCa(o.serve as KeyType);

  const types: KeyType[] = ['rsa', 'ec'];
  const label = { rsa: 'RSA-2048', ec: 'ECDSA P-256' } as const;
  const csrs = { rsa: [] as string[], ec: [] as string[] };
  for (const t of types) {
    csrs[t] = (await Promise.all(Array.from({ length: o.csrs }, () => generateKeyAndCsr({ keyType: t })))).map((k) => k.csrPem);
  }
  const roots = {
    rsa: new Issuer(await generateRootCa({ trustDomain: TD, keyType: 'rsa' }), { trustDomain: TD }),
    ec: new Issuer(await generateRootCa({ trustDomain: TD, keyType: 'ec' }), { trustDomain: TD }),
  };
  const certs = {
    rsaRsa: { server: await leaf(roots.rsa, 'rsa', 's'), client: await leaf(roots.rsa, 'rsa', 'c') },
    ecRsa: { server: await leaf(roots.rsa, 'ec', 's'), client: await leaf(roots.rsa, 'ec', 'c') },
    ecEc: { server: await leaf(roots.ec, 'ec', 's'), client: await leaf(roots.ec, 'ec', 'c') },
  };
  const baselineScript = o.baseline ? join(o.baseline, 'dist', 'bench', 'ca.js') : '';
  if (baselineScript && !existsSync(baselineScript)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `--baseline ${o.baseline}: no ${baselineScript}; give a checkout built with npm run build`);
  }
  const started: CaChild[] = [];
  const begin = async (rootKey: KeyType, script?: string) => {
    try {
      const ca = await startCa(rootKey, csrs.ec[0]!, script);
      started.push(ca);
      return ca;
    } catch (err) {
      for (const ca of started) stopCa(ca);
      throw err;
    }
  };
  const cas = { rsa: await begin('rsa'), ec: await begin('ec'), base: baselineScript ? await begin('rsa', baselineScript) : undefined };
  /** Issue and e2e runs: [root, key, CA, label suffix]; the baseline's beside this build's RSA-root ECDSA run, order alternating per round. */
  const grpcRuns = (round: number): Array<readonly [KeyType, KeyType, CaChild, string]> => {
    const runs: Array<readonly [KeyType, KeyType, CaChild, string]> = [['rsa', 'rsa', cas.rsa, ''], ['rsa', 'ec', cas.rsa, ''], ['ec', 'ec', cas.ec, '']];
    if (cas.base) runs.splice(round % 2 ? 1 : 2, 0, ['rsa', 'ec', cas.base, ' (baseline)']);
    return runs;
  };
  const results = new Results();
  const loadavg: number[][] = [];
  try {
    for (let round = 0; round < o.rounds; round++) {
      loadavg.push(osLoadavg());
      for (const t of types) {
        const n = t === 'rsa' ? o.rsaCount : o.e2eCount;
        results.add(`keygen + CSR, ${label[t]} key`, 'certs/s', 'node', await run(n, o.concurrency, selfCpu, async () => { await generateKeyAndCsr({ keyType: t }); }));
      }
      for (const [root, key] of [['rsa', 'rsa'], ['rsa', 'ec'], ['ec', 'ec']] as const) {
        results.add(`sign in-process, ${label[key]} CSR, ${label[root]} root`, 'certs/s', 'CA', await run(o.count, 1, selfCpu, async (i) => {
          roots[root].signCsr(csrs[key][i % o.csrs]!, { identity: identity(i), ttlMs: 86_400_000 });
        }));
      }
      for (const [root, key, ca, suffix] of grpcRuns(round)) {
        results.add(`issue gRPC/mTLS, ${label[key]} CSR prepared, ${label[root]} root${suffix}`, 'certs/s', 'CA', await run(o.count, o.concurrency, ca.cpu, async (i) => {
          await ca.client.createCertificate(csrs[key][i % o.csrs]!, 0, identity(i));
        }));
      }
      for (const [root, key, ca, suffix] of grpcRuns(round)) {
        const caCpu0 = await ca.cpu();
        const sample = await run(key === 'rsa' ? o.rsaCount : o.e2eCount, o.concurrency, selfCpu, async (i) => {
          const { csrPem } = await generateKeyAndCsr({ keyType: key });
          await ca.client.createCertificate(csrPem, 0, identity(i));
        });
        const n = key === 'rsa' ? o.rsaCount : o.e2eCount;
        sample.caCpuUs = ((await ca.cpu()) - caCpu0) / n;
        results.add(`e2e keygen + CSR + gRPC/mTLS, ${label[key]} key, ${label[root]} root${suffix}`, 'certs/s', 'node', sample);
      }
      const pairs: Array<[string, TlsIdentity, TlsIdentity, string[]]> = [
        ['RSA-2048 leaves, RSA-2048 root', certs.rsaRsa.server, certs.rsaRsa.client, [roots.rsa.rootPem]],
        ['ECDSA P-256 leaves, RSA-2048 root', certs.ecRsa.server, certs.ecRsa.client, [roots.rsa.rootPem]],
        ['ECDSA P-256 leaves, ECDSA P-256 root', certs.ecEc.server, certs.ecEc.client, [roots.ec.rootPem]],
        ['ECDSA P-256 server, RSA-2048 client, RSA root', certs.ecRsa.server, certs.rsaRsa.client, [roots.rsa.rootPem]],
      ];
      for (const [name, server, client, trusted] of pairs) {
        const h = await measureHandshakes({ server, client, roots: trusted, count: o.handshakes, concurrency: o.concurrency });
        results.add(`mTLS handshake, ${name}`, 'handshakes/s', 'both ends', { perSecond: h.perSecond, p50Ms: NaN, p99Ms: NaN, cpuUs: h.cpuUsPerHandshake });
      }
      await cryptoPhase(results, o.cryptoCount);
    }
  } finally {
    for (const ca of started) stopCa(ca);
  }

  const rows = results.medians();
  const by = (name: string) => rows.find((r) => r.name === name)!;
  /** CPU: of the process named, plus the CA's for the end-to-end phases. */
  const ratio = (what: string, num: string, den: string) => {
    const a = by(num); const b = by(den);
    const cpu = (r: typeof a) => r.cpuUs + (Number.isFinite(r.caCpuUs) ? r.caCpuUs : 0);
    return { what, rate: a.perSecond / b.perSecond, cpu: cpu(b) / cpu(a) };
  };
  const ratios = [
    ratio('e2e certificate, ECDSA key / RSA key (RSA root)', 'e2e keygen + CSR + gRPC/mTLS, ECDSA P-256 key, RSA-2048 root', 'e2e keygen + CSR + gRPC/mTLS, RSA-2048 key, RSA-2048 root'),
    ratio('keygen + CSR, ECDSA / RSA', 'keygen + CSR, ECDSA P-256 key', 'keygen + CSR, RSA-2048 key'),
    ratio('CA signing, ECDSA root / RSA root (ECDSA CSRs)', 'sign in-process, ECDSA P-256 CSR, ECDSA P-256 root', 'sign in-process, ECDSA P-256 CSR, RSA-2048 root'),
    ratio('CA issue over gRPC, ECDSA root / RSA root', 'issue gRPC/mTLS, ECDSA P-256 CSR prepared, ECDSA P-256 root', 'issue gRPC/mTLS, ECDSA P-256 CSR prepared, RSA-2048 root'),
    ratio('handshake, ECDSA leaves / RSA leaves (RSA root)', 'mTLS handshake, ECDSA P-256 leaves, RSA-2048 root', 'mTLS handshake, RSA-2048 leaves, RSA-2048 root'),
    ratio('handshake, ECDSA root / RSA root (ECDSA leaves)', 'mTLS handshake, ECDSA P-256 leaves, ECDSA P-256 root', 'mTLS handshake, ECDSA P-256 leaves, RSA-2048 root'),
    ...(cas.base ? [
      ratio('CA issue over gRPC, this build / baseline (RSA root)', 'issue gRPC/mTLS, ECDSA P-256 CSR prepared, RSA-2048 root', 'issue gRPC/mTLS, ECDSA P-256 CSR prepared, RSA-2048 root (baseline)'),
      ratio('e2e certificate, this build / baseline (RSA root)', 'e2e keygen + CSR + gRPC/mTLS, ECDSA P-256 key, RSA-2048 root', 'e2e keygen + CSR + gRPC/mTLS, ECDSA P-256 key, RSA-2048 root (baseline)'),
    ] : []),
  ];
  if (o.json) {
    process.stdout.write(JSON.stringify({ node: process.version, concurrency: o.concurrency, rounds: o.rounds, loadavg, results: rows, ratios }) + '\n');
    return;
  }
  const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  process.stdout.write(`CA benchmark (${process.version}, concurrency ${o.concurrency}, ${WORKLOADS}-workload registry, median of ${o.rounds} interleaved rounds; load average at each round ${loadavg.map((l) => l.map((x) => x.toFixed(2)).join('/')).join(', ')})\n`);
  process.stdout.write(formatTable({
    // Cores busy: CPU per op times the rate, node and CA together for e2e (how much of the machine a phase used).
    headers: ['phase', 'rate', 'unit', 'p50 ms', 'p99 ms', 'CPU µs/op', 'CPU of', 'CA CPU µs/op', 'cores busy'],
    rows: rows.map((r) => [r.name, fmt(r.perSecond), r.unit, fmt(r.p50Ms, 2), fmt(r.p99Ms, 2), fmt(r.cpuUs), r.cpuWho, fmt(r.caCpuUs),
      fmt(((r.cpuUs + (Number.isFinite(r.caCpuUs) ? r.caCpuUs : 0)) * r.perSecond) / 1e6, 2)]),
  }));
  process.stdout.write('\n' + formatTable({
    headers: ['ratio (same run)', 'rate', 'CPU per op (old / new; e2e: node + CA)'],
    rows: ratios.map((r) => [r.what, `${r.rate.toFixed(2)}×`, `${r.cpu.toFixed(2)}×`]),
  }));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench/ca: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
