/**
 * CA throughput: `npx tsc -p . && node dist/bench/ca.js [--count N] [--concurrency C] [--e2e-count N] [--json]`.
 *
 * The CA runs in a child process (its own core and event loop, as in a real mesh)
 * with a 1,000-workload registry; this process is the node. Three figures:
 *   sign:  Issuer.signCsr in-process, no network (the CA's CPU ceiling per core);
 *   issue: CreateCertificate over gRPC/mutual TLS with CSRs made up front (the CA);
 *   e2e:   key generation + CSR + CreateCertificate per certificate (what a node sees).
 */
import { fork } from 'node:child_process';
import { Registry } from 'prom-client';
import { nodeIdentity } from '../ca/authorize';
import { CaClient } from '../ca/client';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../ca/issuer';
import type { JoinTokenVerifier } from '../ca/join-tokens';
import { CaServer } from '../ca/server';
import { limitsFor } from '../ca/rate-limit';
import { WeftError } from '../lib/errors';
import { silentLogger } from '../lib/log';
import { parse, parseOptions } from '../lib/options';
import { ambientNamespace, workloadRecord } from '../registry/fixtures';
import { MeshState } from '../registry/state';
import { percentile } from './stats';

const TD = 'cluster.local';
const WORKLOADS = 1000;
const TOKEN = 'weft-join.bench';

const specs = {
  count: { flag: 'count', default: 2000, description: 'certificates for the issue phase', parse: parse.int({ min: 1 }) },
  e2eCount: { flag: 'e2e-count', default: 300, description: 'certificates for the end-to-end phase', parse: parse.int({ min: 1 }) },
  concurrency: { flag: 'concurrency', default: 16, description: 'requests in flight', parse: parse.int({ min: 1, max: 1024 }) },
  csrs: { flag: 'csrs', default: 64, description: 'distinct CSRs prepared up front (reused round-robin)', parse: parse.int({ min: 1 }) },
  json: { flag: 'json', boolean: true, default: false, description: 'print one JSON object', parse: parse.bool() },
  serve: { flag: 'serve', boolean: true, default: false, description: '(internal) run as the CA child process', parse: parse.bool() },
};

interface Ready { port: number; rootPem: string }

function identity(i: number): string {
  return `spiffe://${TD}/ns/bench/sa/sa-${i % WORKLOADS}`;
}

/** Child: the CA with a registry of WORKLOADS workloads on node-1 and a fixed join token. */
async function serveCa(): Promise<void> {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
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
  process.send!({ port, rootPem: issuer.rootPem } satisfies Ready);
  process.on('disconnect', () => { void server.stop(100).then(() => process.exit(0)); });
}

interface Phase { name: string; count: number; seconds: number; perSecond: number; p50Ms: number; p99Ms: number }

/** Runs `op` `count` times with `concurrency` in flight; latencies per op. */
async function phase(name: string, count: number, concurrency: number, op: (i: number) => Promise<void>): Promise<Phase> {
  const latencies: number[] = [];
  let next = 0;
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
  latencies.sort((a, b) => a - b);
  return { name, count, seconds, perSecond: count / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

async function main(argv: string[]): Promise<void> {
  const { values: o } = parseOptions(specs, argv);
  if (o.serve) return serveCa();

  const csrs = await Promise.all(Array.from({ length: o.csrs }, () => generateKeyAndCsr()));
  const results: Phase[] = [];

  // In-process signing ceiling (one core, no TLS, no gRPC).
  const local = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  results.push(await phase('sign (in-process, no network)', o.count, 1, async (i) => {
    local.signCsr(csrs[i % csrs.length]!.csrPem, { identity: identity(i), ttlMs: 86_400_000 });
  }));

  const child = fork(__filename, ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const ready = await new Promise<Ready>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Ready));
      child.once('exit', (code) => reject(new Error(`CA child exited with ${code}`)));
    });
    const client = new CaClient({ address: `127.0.0.1:${ready.port}`, rootPem: ready.rootPem, trustDomain: TD, serverName: 'localhost' });
    await client.join('node-1', TOKEN);
    if (!client.nodeCredentials) throw new Error('join failed');
    // Warm the connection so the handshake is not in the figures.
    await client.createCertificate(csrs[0]!.csrPem, 0, identity(0));

    results.push(await phase('issue (gRPC/mTLS, CSRs prepared)', o.count, o.concurrency, async (i) => {
      await client.createCertificate(csrs[i % csrs.length]!.csrPem, 0, identity(i));
    }));
    results.push(await phase('e2e (keygen + CSR + gRPC/mTLS)', o.e2eCount, o.concurrency, async (i) => {
      const { csrPem } = await generateKeyAndCsr();
      await client.createCertificate(csrPem, 0, identity(i));
    }));
    results.push(await phase('keygen + CSR only (client side)', o.e2eCount, o.concurrency, async () => {
      await generateKeyAndCsr();
    }));
    client.close();
  } finally {
    child.disconnect();
  }

  if (o.json) {
    process.stdout.write(JSON.stringify({ node: process.version, nodeIdentity: nodeIdentity(TD), concurrency: o.concurrency, results }) + '\n');
    return;
  }
  const rows = results.map((r) => [r.name, String(r.count), r.perSecond.toFixed(0), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2)]);
  const head = ['phase', 'certs', 'certs/s', 'p50 ms', 'p99 ms'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  ');
  process.stdout.write(`CA benchmark (${process.version}, concurrency ${o.concurrency}, RSA-2048, ${WORKLOADS}-workload registry)\n`);
  process.stdout.write(line(head) + '\n' + rows.map(line).join('\n') + '\n');
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench/ca: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
