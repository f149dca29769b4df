import t from 'tap';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { redisFixture } from './helpers/redis';
import { generateRootCa, generateKeyAndCsr, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import type { CaServerOptions } from '../src/ca/server-options';
import { CaClient } from '../src/ca/client';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { nodeIdentity } from '../src/ca/authorize';
import { services, impersonationMetadata, type CertificateResponse } from '../src/ca/proto';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { createLogger, silentLogger } from '../src/lib/log';
import type { Clock } from '../src/lib/clock';
import { LogLines } from './helpers/log-lines';
import { ManualClock } from './helpers/clock';
import { limitsFor } from '../src/ca/rate-limit';
import { isWeftError, type WeftError } from '../src/lib/errors';
import { opensslCsr } from './helpers/openssl-csr';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`; // runs on node-1
const ID_B = `spiffe://${TD}/ns/demo/sa/sa-b`; // runs on node-2 only
const NODE_ID = nodeIdentity(TD);

const fx = redisFixture(t);
let issuer: Issuer;
let server: CaServer;
let metrics: Registry;
let address: string;
let ready = true;
let node1: CaClient;

async function startServer(extra: Partial<CaServerOptions> = {}): Promise<{ server: CaServer; address: string }> {
  const s = new CaServer({
    issuer, trustDomain: TD, authorizer: state, joinTokens: new RedisJoinTokens(fx.client),
    logger: silentLogger(), metrics: new Registry(), minCertTtlMs: 1000, ...extra,
  });
  const port = await s.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => s.stop(100));
  return { server: s, address: `127.0.0.1:${port}` };
}

const state = new MeshState({ trustDomain: TD });
state.replaceAll({
  node: [nodeRecord('node-1', '198.51.100.11'), nodeRecord('node-2', '198.51.100.12')],
  namespace: [ambientNamespace('demo')],
  workload: [
    workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a' }),
    workloadRecord({ namespace: 'demo', name: 'b', node: 'node-2', serviceAccount: 'sa-b' }),
  ],
  service: [], policy: [], peerauth: [],
}, 1);

function newClient(extra: Partial<ConstructorParameters<typeof CaClient>[0]> = {}): CaClient {
  const c = new CaClient({ address, rootPem: issuer.rootPem, trustDomain: TD, serverName: 'localhost', ...extra });
  t.teardown(() => c.close());
  return c;
}

async function refusal(p: Promise<unknown>): Promise<WeftError> {
  try {
    await p;
  } catch (err) {
    if (isWeftError(err)) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  metrics = new Registry();
  const started = await startServer({ metrics, isReady: () => ready });
  server = started.server;
  address = started.address;
  node1 = newClient();
  const { token } = await createJoinToken(fx.client, 'node-1', 3600e3);
  await node1.join('node-1', token);
});

t.test('join issues a short-lived node certificate: node identity SAN, node name CN, clientAuth only', async (t) => {
  const creds = node1.nodeCredentials!;
  t.equal(creds.certChainPem.length, 2);
  const leaf = new X509Certificate(creds.certChainPem[0]!);
  t.ok(leaf.verify(new X509Certificate(issuer.rootPem).publicKey));
  t.equal(leaf.subjectAltName, `URI:${NODE_ID}`);
  t.equal(leaf.subject, 'CN=node-1');
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  const ttl = Date.parse(leaf.validTo) - Date.now();
  t.ok(ttl > 3500e3 && ttl <= 3600e3, 'default node TTL is one hour');
});

t.test('join tokens are reusable for their node until they expire', async (t) => {
  const { token } = await createJoinToken(fx.client, 'node-2', 3600e3);
  const c = newClient();
  await c.join('node-2', token);
  await c.join('node-2', token);
  t.equal(new X509Certificate(c.nodeCredentials!.certChainPem[0]!).subject, 'CN=node-2');
});

t.test('bad, other-node, replaced and expired join tokens are refused', async (t) => {
  const c = newClient();
  const { token: t3 } = await createJoinToken(fx.client, 'node-3', 3600e3);
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['garbage token', () => c.join('node-3', 'nope')],
    ['well-formed but unknown', () => c.join('node-3', 'weft-join.' + 'A'.repeat(43))],
    ['token of another node', () => c.join('node-4', t3)],
    ['invalid node name', () => c.join('Node_3!', t3)],
  ];
  for (const [name, call] of cases) {
    const err = await refusal(call());
    t.equal(err.code, 'WEFT_CA_JOIN_TOKEN_INVALID', name);
    t.equal(err.details?.grpcCode, grpc.status.UNAUTHENTICATED, `${name}: UNAUTHENTICATED`);
    t.match(err.message, /weft ca token --node|send the node/, `${name}: says what to do`);
  }
  await createJoinToken(fx.client, 'node-3', 3600e3);
  t.equal((await refusal(c.join('node-3', t3))).code, 'WEFT_CA_JOIN_TOKEN_INVALID', 'replaced by a newer token');
  const { token: short } = await createJoinToken(fx.client, 'node-5', 30);
  await new Promise((r) => setTimeout(r, 80));
  t.equal((await refusal(c.join('node-5', short))).code, 'WEFT_CA_JOIN_TOKEN_INVALID', 'expired');
  t.notOk(c.nodeCredentials, 'nothing installed');
  // Expiry is also checked against the stored deadline, not only Redis' key TTL.
  const { token: t6 } = await createJoinToken(fx.client, 'node-6', 3600e3);
  await t.rejects(new RedisJoinTokens(fx.client, () => Date.now() + 7200e3).verify('node-6', t6),
    { code: 'WEFT_CA_JOIN_TOKEN_INVALID', message: /expired/ });
  t.ok((await fx.client.get('weft:ca:join:node-6'))?.includes('sha256'), 'Redis holds a hash');
  t.notOk((await fx.client.get('weft:ca:join:node-6'))?.includes(t6), 'never the token');
});

t.test('a node gets the identity of a workload on it (Istio-compatible request)', async (t) => {
  const { keyPem, csrPem } = await generateKeyAndCsr();
  const chain = await node1.createCertificate(csrPem, 0, ID_A);
  t.equal(chain.length, 2);
  t.equal(chain[1], issuer.rootPem, 'root last');
  const leaf = new X509Certificate(chain[0]!);
  t.ok(leaf.verify(new X509Certificate(issuer.rootPem).publicKey), 'chains to the root');
  t.equal(leaf.subjectAltName, `URI:${ID_A}`);
  t.notOk(leaf.subject, 'no CN on workload certs');
  t.same(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  t.ok(leaf.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem)));
  const ttl = Date.parse(leaf.validTo) - Date.now();
  t.ok(ttl > 23.9 * 3600e3 && ttl <= 24 * 3600e3, 'default TTL 24 h');
  const hour = new X509Certificate((await node1.createCertificate(csrPem, 3600, ID_A))[0]!);
  const ttl2 = Date.parse(hour.validTo) - Date.now();
  t.ok(ttl2 > 3590e3 && ttl2 <= 3600e3, 'validity_duration honoured');
});

t.test('impersonating a workload of another node is refused', async (t) => {
  const { csrPem } = await generateKeyAndCsr();
  const err = await refusal(node1.createCertificate(csrPem, 0, ID_B));
  t.equal(err.code, 'WEFT_CA_PERMISSION_DENIED');
  t.equal(err.details?.grpcCode, grpc.status.PERMISSION_DENIED);
  t.match(err.message, /node-1.*sa-b.*check the workload/);
  for (const id of [NODE_ID, `spiffe://other.td/ns/demo/sa/sa-a`, 'spiffe://cluster.local/nope', `spiffe://${TD}/ns/weft-system/sa/weft-ca`]) {
    const e = await refusal(node1.createCertificate(csrPem, 0, id));
    t.equal(e.code, 'WEFT_CA_PERMISSION_DENIED', id);
  }
});

t.test('without ImpersonatedIdentity a node renews its own node certificate, capped at the node TTL', async (t) => {
  const { csrPem } = await generateKeyAndCsr();
  const leaf = new X509Certificate((await node1.createCertificate(csrPem, 10 * 86400))[0]!);
  t.equal(leaf.subjectAltName, `URI:${NODE_ID}`);
  t.equal(leaf.subject, 'CN=node-1');
  t.ok(Date.parse(leaf.validTo) - Date.now() <= 3600e3, 'capped at the node TTL');
});

t.test('unknown callers are refused: no client cert, cert from another CA, a workload cert', async (t) => {
  const { csrPem } = await generateKeyAndCsr();
  const Svc = services().certificateService;
  const verify = { checkServerIdentity: () => undefined };
  const call = (creds: grpc.ChannelCredentials) => new Promise<grpc.ServiceError>((resolve, reject) => {
    const c = new Svc(address, creds) as unknown as grpc.Client & { CreateCertificate: Function };
    c.CreateCertificate({ csr: csrPem, validityDuration: 0, metadata: impersonationMetadata(ID_A) },
      (err: grpc.ServiceError | null, _res: CertificateResponse) => {
        c.close();
        if (err) resolve(err); else reject(new Error('accepted'));
      });
  });
  const root = Buffer.from(issuer.rootPem);
  const none = await call(grpc.credentials.createSsl(root, null, null, verify));
  t.equal(none.code, grpc.status.UNAUTHENTICATED, 'no client certificate');
  t.match(none.details, /^WEFT_CA_UNAUTHENTICATED: .*join/);

  const other = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const k = await generateKeyAndCsr();
  const foreign = other.signCsr(k.csrPem, { identity: NODE_ID, ttlMs: 3600e3, commonName: 'node-1' });
  const e2 = await call(grpc.credentials.createSsl(root, Buffer.from(k.keyPem), Buffer.from(foreign[0]!), verify));
  t.equal(e2.code, grpc.status.UNAUTHENTICATED, 'node cert of another CA');

  const w = await generateKeyAndCsr();
  const workloadChain = await node1.createCertificate(w.csrPem, 0, ID_A);
  const e3 = await call(grpc.credentials.createSsl(root, Buffer.from(w.keyPem), Buffer.from(workloadChain[0]!), verify));
  t.equal(e3.code, grpc.status.UNAUTHENTICATED, 'a workload certificate is not a node');
  t.match(e3.details, /not the node proxy identity/);

  const noCn = issuer.signCsr(k.csrPem, { identity: NODE_ID, ttlMs: 3600e3 });
  const e4 = await call(grpc.credentials.createSsl(root, Buffer.from(k.keyPem), Buffer.from(noCn[0]!), verify));
  t.equal(e4.code, grpc.status.UNAUTHENTICATED, 'node identity without a node name');

  t.rejects(newClient().createCertificate(csrPem, 0, ID_A), { code: 'WEFT_CA_UNAUTHENTICATED' }, 'client refuses before joining');
});

t.test('malformed CSRs and out-of-bounds TTLs are INVALID_ARGUMENT', async (t) => {
  const bad = await refusal(node1.createCertificate('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', 0, ID_A));
  t.equal(bad.code, 'WEFT_CA_CSR_INVALID');
  t.equal(bad.details?.grpcCode, grpc.status.INVALID_ARGUMENT);
  const { csrPem } = await generateKeyAndCsr();
  for (const ttl of [91 * 86400, -5]) {
    const e = await refusal(node1.createCertificate(csrPem, ttl, ID_A));
    t.equal(e.code, 'WEFT_CA_TTL_INVALID', `${ttl}s`);
    t.equal(e.details?.grpcCode, grpc.status.INVALID_ARGUMENT);
  }
  // Production bounds: at least a minute.
  const prod = await startServer({ minCertTtlMs: undefined as unknown as number });
  const c = newClient({ address: prod.address });
  const { token } = await createJoinToken(fx.client, 'node-1', 3600e3);
  await c.join('node-1', token);
  t.equal((await refusal(c.createCertificate(csrPem, 30, ID_A))).code, 'WEFT_CA_TTL_INVALID', '30 s is below 1 minute');
  t.ok(await c.createCertificate(csrPem, 60, ID_A), '1 minute is fine');
});

t.test('weak CSR keys are INVALID_ARGUMENT WEFT_CA_CSR_KEY_WEAK over gRPC; an ECDSA P-256 CSR is issued', async (t) => {
  for (const [name, args, says] of [
    ['RSA-1024', ['-newkey', 'rsa:1024'], /1024 bits/],
    ['RSA-2048, e=3', ['-newkey', 'rsa:2048', '-pkeyopt', 'rsa_keygen_pubexp:3'], /public exponent 3/],
    ['ECDSA P-384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], /curve secp384r1/],
    ['Ed25519', ['-newkey', 'ed25519'], /type ed25519/],
  ] as const) {
    const e = await refusal(node1.createCertificate(opensslCsr(args), 0, ID_A));
    t.equal(e.code, 'WEFT_CA_CSR_KEY_WEAK', name);
    t.equal(e.details?.grpcCode, grpc.status.INVALID_ARGUMENT, `${name}: INVALID_ARGUMENT`);
    t.match(e.message, says, `${name}: says what the CSR had`);
    t.match(e.message, /RSA key of at least 2048 bits with public exponent 65537, or an ECDSA P-256 key/, `${name}: says what is required`);
  }
  const chain = await node1.createCertificate(opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']), 0, ID_A);
  const leaf = new X509Certificate(chain[0]!);
  t.equal(leaf.publicKey.asymmetricKeyType, 'ec', 'ECDSA P-256: issued');
  t.equal(leaf.subjectAltName, `URI:${ID_A}`);
});

t.test('rate limits: RESOURCE_EXHAUSTED per caller and overall, for Join and CreateCertificate', async (t) => {
  let now = 0;
  const limits = { perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 1, burst: 3 } };
  const clock: Clock = { now: () => now, setTimeout: (fn, ms) => setTimeout(fn, ms).unref(), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
  const limited = await startServer({ joinLimits: limits, csrLimits: limits, clock });
  const { token } = await createJoinToken(fx.client, 'node-1', 3600e3);
  const c1 = newClient({ address: limited.address });
  await c1.join('node-1', token);
  await c1.join('node-1', token);
  const j = await refusal(c1.join('node-1', token));
  t.equal(j.code, 'WEFT_CA_RATE_LIMITED', 'third Join from one address within the burst');
  t.equal(j.details?.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
  t.match(j.message, /Join from address 127\.0\.0\.1 exceeds 1\/s per caller.*--join-rate/);

  const { csrPem } = await generateKeyAndCsr();
  const { token: t2 } = await createJoinToken(fx.client, 'node-2', 3600e3);
  const c2 = newClient({ address: limited.address });
  now += 1000; // one Join token back for this address
  await c2.join('node-2', t2);
  t.ok(await c1.createCertificate(csrPem, 0, ID_A));
  t.ok(await c1.createCertificate(csrPem, 0, ID_A));
  const perNode = await refusal(c1.createCertificate(csrPem, 0, ID_A));
  t.equal(perNode.code, 'WEFT_CA_RATE_LIMITED', 'node-1 over its own limit');
  t.equal(perNode.details?.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
  t.match(perNode.message, /CreateCertificate from node node-1 exceeds .*; retry in 1 s/);
  t.ok(await c2.createCertificate(csrPem, 0, ID_B), 'node-2 is not held back by node-1');
  const overall = await refusal(c2.createCertificate(csrPem, 0, ID_B));
  t.equal(overall.code, 'WEFT_CA_RATE_LIMITED', 'all nodes together over the overall limit');
  t.match(overall.message, /from all callers together/);
  now += 60_000;
  t.ok(await c1.createCertificate(csrPem, 0, ID_A), 'after a quiet minute, served again');
});

t.test('refusals are logged at a bounded rate per method and code, with the count of those dropped', async (t) => {
  const clock = new ManualClock();
  const sink = new LogLines();
  const lax = limitsFor(1000);
  const s = await startServer({ logger: createLogger({ level: 'info', component: 'ca', destination: sink }), clock, joinLimits: lax, csrLimits: lax });
  const c = newClient({ address: s.address });
  const refused = () => sink.lines.filter((l) => l.msg === 'CA request refused');
  for (let i = 0; i < 20; i++) t.equal((await refusal(c.join('node-3', 'nope'))).code, 'WEFT_CA_JOIN_TOKEN_INVALID');
  t.equal(refused().length, 5, '20 refusals, 5 lines (the burst)');
  t.match(refused()[0], { method: 'Join', code: 'WEFT_CA_JOIN_TOKEN_INVALID', node: 'node-3' });
  // Another code of the same method has its own budget.
  const sa = await refusal(c.join('node-3', { kind: 'serviceAccountToken', token: 'x' }));
  t.equal(sa.code, 'WEFT_CA_SA_JOIN_DISABLED');
  t.equal(refused().length, 6, 'a refusal of another kind is still logged');
  t.match(refused()[5], { method: 'Join', code: 'WEFT_CA_SA_JOIN_DISABLED' });
  clock.advance(2000);
  await refusal(c.join('node-3', 'nope'));
  const last = refused().at(-1)!;
  t.equal(refused().length, 7, 'one line back after a fifth of 10 s');
  t.equal(last.suppressed, 15, 'and it says how many were dropped');
  t.equal(last.msg, 'CA request refused', 'same message for log queries');
});

t.test('impersonation waits for the registry: UNAVAILABLE until loaded', async (t) => {
  ready = false;
  t.teardown(() => { ready = true; });
  const { csrPem } = await generateKeyAndCsr();
  const e = await refusal(node1.createCertificate(csrPem, 0, ID_A));
  t.equal(e.code, 'WEFT_REGISTRY_UNREACHABLE');
  t.equal(e.details?.grpcCode, grpc.status.UNAVAILABLE);
  t.ok(await node1.createCertificate(csrPem, 0), 'node renewal does not need the registry');
});

t.test('the client verifies the CA: wrong name or other root is WEFT_CA_UNREACHABLE', async (t) => {
  const { token } = await createJoinToken(fx.client, 'node-1', 3600e3);
  const wrongName = await refusal(newClient({ serverName: 'ca.example.com' }).join('node-1', token));
  t.equal(wrongName.code, 'WEFT_CA_UNREACHABLE');
  const otherRoot = (await generateRootCa({ trustDomain: TD })).certPem;
  t.equal((await refusal(newClient({ rootPem: otherRoot }).join('node-1', token))).code, 'WEFT_CA_UNREACHABLE');
  await newClient({ serverName: '127.0.0.1' }).join('node-1', token);
  t.pass('IP SAN accepted');
  t.throws(() => new CaClient({ address: 'nope', rootPem: issuer.rootPem, trustDomain: TD }), { code: 'WEFT_CONFIG_INVALID' });
});

t.test('requests are counted by method and result, issue latency observed', async (t) => {
  const text = await metrics.metrics();
  t.match(text, /weft_ca_requests_total\{method="Join",result="ok"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="Join",result="unauthenticated"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="CreateCertificate",result="ok"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="CreateCertificate",result="permission_denied"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="CreateCertificate",result="invalid_argument"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="CreateCertificate",result="unauthenticated"\} \d+/);
  t.match(text, /weft_ca_requests_total\{method="CreateCertificate",result="unavailable"\} \d+/);
  t.match(text, /weft_ca_issue_duration_seconds_count\{method="CreateCertificate"\} \d+/);
});

t.test('config bounds are checked at construction', async (t) => {
  const base = {
    issuer, trustDomain: TD, authorizer: state, joinTokens: new RedisJoinTokens(fx.client),
    logger: silentLogger(), metrics: new Registry(),
  };
  t.throws(() => new CaServer({ ...base, certTtlMs: 100 * 86400e3 }), { code: 'WEFT_CONFIG_INVALID', message: /--cert-ttl/ });
  t.throws(() => new CaServer({ ...base, nodeCertTtlMs: 1000 }), { code: 'WEFT_CONFIG_INVALID', message: /--node-cert-ttl/ });
  t.throws(() => new CaServer({ ...base, maxCertTtlMs: 1000 }), { code: 'WEFT_CONFIG_INVALID', message: /--max-cert-ttl/ });
  t.ok(server.port > 0);
});
