/**
 * Node join with a projected ServiceAccount token, end to end: a real gRPC CA over TLS
 * asks the API server stand-in (TokenReview + pod GET, over HTTP with a bearer token)
 * about the token a ztunnel read from its token file; real Redis behind the join-token
 * path that must keep working beside it.
 */
import t from 'tap';
import type { Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { redisFixture } from './helpers/redis';
import { TestApiServer } from './helpers/apiserver';
import { TestTokenReview } from './helpers/token-review';
import { waitFor } from './helpers/wait';
import { newCaClient, refusal } from './helpers/ca-client';
import { ManualClock } from './helpers/clock';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import { CaClient } from '../src/ca/client';
import { CertificateManager, CertState } from '../src/ca/cert-manager';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { TokenReviewJoin, type SaJoinPolicy } from '../src/ca/sa-token-join';
import { limitsFor } from '../src/ca/rate-limit';
import { nodeIdentity } from '../src/ca/authorize';
import { services } from '../src/ca/proto';
import { startCaApp } from '../src/ca/app';
import { KubeClient } from '../src/k8s/client';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';

const TD = 'cluster.local';
const NODE_ID = nodeIdentity(TD);
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`;
const NS = 'weft-system';
const POLICY: SaJoinPolicy = { audience: 'weft-ca', namespace: NS, serviceAccount: 'weft-ztunnel' };
const API_TOKEN = 'ca-api-token';

const fx = redisFixture(t);
let issuer: Issuer;
let api: TestApiServer;
let reviews: TestTokenReview;
let metrics: Registry;
let address: string;
let dir: string;

const state = new MeshState({ trustDomain: TD });
state.replaceAll({
  node: [nodeRecord('node-1', '198.51.100.11'), nodeRecord('node-2', '198.51.100.12')],
  namespace: [ambientNamespace('demo')],
  workload: [workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a' })],
  service: [], policy: [], peerauth: [],
}, 1);

function ztunnelPod(name: string, node: string, extra: { serviceAccountName?: string; deletionTimestamp?: string } = {}) {
  return api.put('pods', {
    metadata: { name, namespace: NS, labels: { 'app.kubernetes.io/name': 'weft-ztunnel' }, ...(extra.deletionTimestamp ? { deletionTimestamp: extra.deletionTimestamp } : {}) },
    spec: { nodeName: node, serviceAccountName: extra.serviceAccountName ?? 'weft-ztunnel' },
  });
}

/** A settable clock for the TokenReview cache. */
const clock = new ManualClock(1_000_000);

async function startCa(opts: { saJoin?: boolean; kube?: KubeClient; registry?: Registry; cacheMs?: number } = {}): Promise<string> {
  let kube = opts.kube;
  if (!kube && opts.saJoin !== false) {
    kube = new KubeClient({ server: api.url, token: API_TOKEN });
    t.teardown(() => kube!.close());
  }
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: state,
    logger: silentLogger(), metrics: opts.registry ?? new Registry(),
    // Many joins from 127.0.0.1 in a row: the rate limits are tested elsewhere.
    joinLimits: limitsFor(1000), csrLimits: limitsFor(1000),
    ...(opts.saJoin !== false
      ? { saJoin: new TokenReviewJoin({ kube: kube!, policy: POLICY, clock, ...(opts.cacheMs !== undefined ? { cacheMs: opts.cacheMs } : {}) }) }
      : { joinTokens: new RedisJoinTokens(fx.client) }),
  });
  const port = await server.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => server.stop(100));
  return `127.0.0.1:${port}`;
}

function newClient(at = address): CaClient {
  return newCaClient(t, at, issuer.rootPem, TD);
}

async function refusalCount(reason: string): Promise<number> {
  const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === 'weft_ca_sa_join_refusals_total');
  return Number(m?.values.find((v) => v.labels.reason === reason)?.value ?? NaN);
}

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  api = await TestApiServer.start({ token: API_TOKEN });
  reviews = new TestTokenReview(api);
  metrics = new Registry();
  address = await startCa({ registry: metrics });
  dir = mkdtempSync(join(tmpdir(), 'weft-sa-join-'));
  ztunnelPod('weft-ztunnel-n1', 'node-1');
  ztunnelPod('weft-ztunnel-n2', 'node-2');
  for (const name of ['node-1', 'node-2']) api.put('nodes', { metadata: { name } });
});

t.teardown(async () => {
  await api?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

t.test('a ztunnel joins with its token file, then gets workload certificates', async (t) => {
  const tokenFile = join(dir, 'join-ok');
  const token = reviews.issueForPod(NS, 'weft-ztunnel-n1');
  writeFileSync(tokenFile, token + '\n');
  const client = newClient();
  const m = new CertificateManager({ client, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), joinSaTokenFile: tokenFile });
  t.teardown(() => m.stop());
  const node = await m.get(NODE_ID);
  const leaf = new X509Certificate(node.certChainPem[0]!);
  t.equal(leaf.subject, 'CN=node-1', 'node certificate for the pod\'s node');
  t.equal(leaf.subjectAltName, `URI:${NODE_ID}`);
  const review = reviews.reviews.find((r) => r.token === token);
  t.ok(review, 'the CA reviewed exactly the file\'s content (trimmed)');
  t.same(review?.audiences, ['weft-ca'], 'for audience weft-ca');
  t.equal(review?.authorization, `Bearer ${API_TOKEN}`, 'with the CA\'s own API credential');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === `/api/v1/namespaces/${NS}/pods/weft-ztunnel-n1`), 'and read the pod');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === '/api/v1/nodes/node-1'), 'and the node');

  // The kubelet rotates the file: the next CSR carries the new content.
  const rotated = reviews.issueForPod(NS, 'weft-ztunnel-n1');
  writeFileSync(tokenFile, rotated + '\n');
  m.setWanted([ID_A]);
  const cert = await m.get(ID_A);
  t.equal(new X509Certificate(cert.certChainPem[0]!).subjectAltName, `URI:${ID_A}`, 'workload certificate over mutual TLS with the node certificate');
  t.ok(reviews.reviews.some((r) => r.token === rotated), 'the workload CSR carried the token file\'s current content, and the CA reviewed it');
});

t.test('refusals say what was wrong, map to gRPC codes, and are counted by reason', async (t) => {
  ztunnelPod('weft-ztunnel-gone', 'node-1');
  ztunnelPod('weft-ztunnel-recreated', 'node-1');
  ztunnelPod('weft-ztunnel-dying', 'node-1', { deletionTimestamp: '2026-01-01T00:00:00Z' });
  ztunnelPod('default-sa-pod', 'node-1', { serviceAccountName: 'default' });
  const gone = reviews.issueForPod(NS, 'weft-ztunnel-gone');
  api.remove('pods', NS, 'weft-ztunnel-gone');
  const oldUid = reviews.issue({ namespace: NS, serviceAccount: 'weft-ztunnel', pod: { name: 'weft-ztunnel-recreated', uid: 'uid-before-recreation' }, audiences: ['weft-ca'] });

  type Case = [name: string, token: () => string, code: string, grpcCode: grpc.status, reason: string, says: RegExp, opts?: { binding?: boolean; ignoreAudiences?: boolean }];
  const cases: Case[] = [
    ['wrong audience', () => reviews.issueForPod(NS, 'weft-ztunnel-n1', { audiences: ['https://kubernetes.default.svc'] }),
      'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'audience', /audience: weft-ca/],
    ['authenticator ignoring audiences', () => reviews.issueForPod(NS, 'weft-ztunnel-n1', { audiences: ['other'] }),
      'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'audience', /did not confirm audience weft-ca/, { ignoreAudiences: true }],
    ['unauthenticated', () => 'not-a-token', 'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'unauthenticated', /did not authenticate.*--join-sa-token-file/],
    ['deleted pod, real binding check', () => gone, 'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'unauthenticated', /not found/],
    ['not bound to a pod', () => reviews.issue({ namespace: NS, serviceAccount: 'weft-ztunnel', audiences: ['weft-ca'] }),
      'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'not_pod_bound', /projected serviceAccountToken/],
    ['wrong ServiceAccount', () => reviews.issueForPod(NS, 'default-sa-pod'),
      'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'service_account', /system:serviceaccount:weft-system:default.*--join-sa/],
    ['pod on another node', () => reviews.issueForPod(NS, 'weft-ztunnel-n2'),
      'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'pod_node', /scheduled on node node-2, not on node-1/],
    ['node-name claim of another node', () => reviews.issueForPod(NS, 'weft-ztunnel-n1', { node: 'node-2' }),
      'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'node_claim', /on node node-2, not on node-1/],
    ['pod uid mismatch', () => oldUid, 'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'pod_uid', /re-created/, { binding: false }],
    ['pod missing', () => gone, 'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'pod_missing', /does not exist/, { binding: false }],
    ['pod being deleted', () => reviews.issueForPod(NS, 'weft-ztunnel-dying'),
      'WEFT_CA_SA_TOKEN_DENIED', grpc.status.PERMISSION_DENIED, 'pod_deleted', /being deleted/],
    ['no token at all', () => '', 'WEFT_CA_SA_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'missing', /no ServiceAccount token was sent.*--join-sa-token-file/],
  ];
  const client = newClient();
  for (const [name, token, code, grpcCode, reason, says, opts] of cases) {
    reviews.validateBinding = opts?.binding ?? true;
    reviews.ignoreAudiences = opts?.ignoreAudiences ?? false;
    const before = await refusalCount(reason);
    const err = await refusal(client.join('node-1', { kind: 'serviceAccountToken', token: token() }));
    t.equal(err.code, code, `${name}: ${code}`);
    t.equal(err.details?.grpcCode, grpcCode, `${name}: ${grpc.status[grpcCode]}`);
    t.match(err.message, says, `${name}: says what was wrong`);
    t.match(err.message, /node "node-1" refused/, `${name}: names the node`);
    t.equal(await refusalCount(reason), before + 1, `${name}: counted as ${reason}`);
  }
  reviews.validateBinding = true;
  reviews.ignoreAudiences = false;
  t.notOk(client.nodeCredentials, 'no refusal installed a node certificate');
  const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === 'weft_ca_requests_total');
  t.ok(m?.values.some((v) => v.labels.method === 'Join' && v.labels.result === 'permission_denied' && Number(v.value) >= 6),
    'weft_ca_requests_total counts them like other join refusals');
});

t.test('a Join with both a join token and a ServiceAccount token is refused', async (t) => {
  const raw = new (services().nodeBootstrap)(address, grpc.credentials.createSsl(Buffer.from(issuer.rootPem)), {
    'grpc.ssl_target_name_override': 'localhost',
  }) as unknown as grpc.Client & { Join: (req: unknown, cb: (err: grpc.ServiceError | null) => void) => void };
  t.teardown(() => raw.close());
  const { token } = await createJoinToken(fx.client, 'node-1', 60_000);
  const err = await new Promise<grpc.ServiceError | null>((resolve) => raw.Join({
    nodeName: 'node-1', token, serviceAccountToken: reviews.issueForPod(NS, 'weft-ztunnel-n1'), csr: '',
  }, resolve));
  t.equal(err?.code, grpc.status.UNAUTHENTICATED);
  t.match(err?.details, /^WEFT_CA_JOIN_TOKEN_INVALID: .*send exactly one/);
});

t.test('a CA with TokenReview accepts no join tokens from Redis, whatever Redis holds', async (t) => {
  const { token } = await createJoinToken(fx.client, 'node-2', 60_000);
  const c = newClient();
  const err = await refusal(c.join('node-2', token));
  t.equal(err.code, 'WEFT_CA_JOIN_TOKEN_DISABLED');
  t.equal(err.details?.grpcCode, grpc.status.UNAUTHENTICATED);
  t.match(err.message, /ServiceAccount token only.*--join-sa-token-file/);
  t.notOk(c.nodeCredentials, 'no node certificate');
  t.throws(() => new CaServer({
    issuer, trustDomain: TD, authorizer: state, logger: silentLogger(), metrics: new Registry(),
    joinTokens: new RedisJoinTokens(fx.client), saJoin: new TokenReviewJoin({ kube: new KubeClient({ server: api.url, token: API_TOKEN }), policy: POLICY }),
  }), { code: 'WEFT_CONFIG_INVALID', message: /join tokens cannot be accepted together with --kube-token-review/ }, 'and cannot be configured to');
});

t.test('every node CSR carries a fresh ServiceAccount token: a deleted pod or node stops getting certificates', async (t) => {
  const reg = new Registry();
  const at = await startCa({ registry: reg, cacheMs: 30_000 });
  const { csrPem } = await generateKeyAndCsr();
  const csr = (c: CaClient, token: string | undefined, identity?: string) => c.createCertificate(csrPem, 0, identity, token ? { saToken: token } : {});

  // node-1: its ztunnel pod's token, with which it joined.
  const pod = ztunnelPod('weft-ztunnel-recheck', 'node-1');
  const token = reviews.issueForPod(NS, 'weft-ztunnel-recheck');
  const c1 = newClient(at);
  await c1.join('node-1', { kind: 'serviceAccountToken', token });
  t.ok(await csr(c1, token, ID_A), 'workload CSR with the pod\'s token: issued');
  t.ok(await csr(c1, token), 'node renewal with the pod\'s token: issued');
  const reviewsBefore = reviews.reviews.length;
  t.ok(await csr(c1, token, ID_A), 'again within the cache window');
  t.equal(reviews.reviews.length, reviewsBefore, 'answered from the short cache: no TokenReview per CSR');

  let err = await refusal(csr(c1, undefined, ID_A));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_INVALID', 'a node certificate alone is not enough');
  t.equal(err.details?.grpcCode, grpc.status.UNAUTHENTICATED);
  t.match(err.message, /CreateCertificate as node "node-1" refused: no ServiceAccount token was sent/);
  err = await refusal(csr(c1, reviews.issueForPod(NS, 'weft-ztunnel-n2'), ID_A));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_DENIED', 'the token of another node\'s pod is refused');

  // The pod is deleted: once the cached answer is older than the cache window, the
  // next CSR is refused (the API server no longer authenticates the bound token).
  api.remove('pods', NS, pod.metadata.name);
  clock.advance(31_000);
  err = await refusal(csr(c1, token, ID_A));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_INVALID', 'deleted pod: refused');
  t.equal(err.details?.grpcCode, grpc.status.UNAUTHENTICATED);
  t.match(err.message, /not found/);
  err = await refusal(csr(c1, token));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_INVALID', 'its node renewal too');
  // Without the API server's binding check, the CA's own pod lookup refuses it.
  reviews.validateBinding = false;
  t.teardown(() => { reviews.validateBinding = true; });
  clock.advance(31_000);
  err = await refusal(csr(c1, token, ID_A));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_DENIED');
  t.equal(err.details?.grpcCode, grpc.status.PERMISSION_DENIED);
  t.match(err.message, /does not exist/);
  reviews.validateBinding = true;

  // node-3 with a live pod; then the node is deleted.
  api.put('nodes', { metadata: { name: 'node-3' } });
  ztunnelPod('weft-ztunnel-n3', 'node-3');
  t.teardown(() => { if (api.get('pods', NS, 'weft-ztunnel-n3')) api.remove('pods', NS, 'weft-ztunnel-n3'); });
  const token3 = reviews.issueForPod(NS, 'weft-ztunnel-n3');
  const c3 = newClient(at);
  await c3.join('node-3', { kind: 'serviceAccountToken', token: token3 });
  t.ok(await csr(c3, token3), 'node-3 renews while it exists');
  api.remove('nodes', '', 'node-3');
  clock.advance(31_000);
  err = await refusal(csr(c3, token3));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_DENIED', 'deleted node: refused');
  t.equal(err.details?.grpcCode, grpc.status.PERMISSION_DENIED);
  t.match(err.message, /node node-3 does not exist/);
  err = await refusal(c3.join('node-3', { kind: 'serviceAccountToken', token: token3 }));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_DENIED', 'and cannot join again');

  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === 'weft_ca_sa_join_refusals_total');
  for (const reason of ['missing', 'unauthenticated', 'pod_missing', 'node_missing']) {
    t.ok(Number(m?.values.find((v) => v.labels.reason === reason)?.value) >= 1, `counted: ${reason}`);
  }
});

t.test('a CA without --kube-token-review refuses ServiceAccount tokens, saying how to enable them', async (t) => {
  const reg = new Registry();
  const at = await startCa({ saJoin: false, registry: reg });
  const before = reviews.reviews.length;
  const err = await refusal(newClient(at).join('node-1', { kind: 'serviceAccountToken', token: reviews.issueForPod(NS, 'weft-ztunnel-n1') }));
  t.equal(err.code, 'WEFT_CA_SA_JOIN_DISABLED');
  t.equal(err.details?.grpcCode, grpc.status.UNAUTHENTICATED);
  t.match(err.message, /start the CA with --kube-token-review/);
  t.equal(reviews.reviews.length, before, 'no API call');
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === 'weft_ca_sa_join_refusals_total');
  t.equal(m?.values.find((v) => v.labels.reason === 'disabled')?.value, 1);
});

t.test('an unreachable or refusing API server is UNAVAILABLE (the node retries) with a clear error', async (t) => {
  const down = await TestApiServer.start();
  const downUrl = down.url;
  await down.stop();
  const unreachable = new KubeClient({ server: downUrl, token: API_TOKEN });
  t.teardown(() => unreachable.close());
  const token = reviews.issueForPod(NS, 'weft-ztunnel-n1');
  let err = await refusal(newClient(await startCa({ kube: unreachable })).join('node-1', { kind: 'serviceAccountToken', token }));
  t.equal(err.code, 'WEFT_K8S_UNREACHABLE');
  t.equal(err.details?.grpcCode, grpc.status.UNAVAILABLE);
  t.match(err.message, /the CA could not create a TokenReview to admit node "node-1" \(POST .*tokenreviews failed: .*ECONNREFUSED/);
  t.match(err.message, /--kubeconfig or the in-cluster service account/);

  const wrongCredential = new KubeClient({ server: api.url, token: 'not-the-ca-token' });
  t.teardown(() => wrongCredential.close());
  err = await refusal(newClient(await startCa({ kube: wrongCredential })).join('node-1', { kind: 'serviceAccountToken', token }));
  t.equal(err.code, 'WEFT_K8S_FORBIDDEN');
  t.equal(err.details?.grpcCode, grpc.status.UNAVAILABLE);
  t.match(err.message, /401.*ClusterRole weft-ca/);
});

/** A node's CertificateManager joining with the SA token in `tokenFile`, quick to retry. */
function tokenFileManager(t: Test, tokenFile: string) {
  const m = new CertificateManager({
    client: newClient(), nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(),
    joinSaTokenFile: tokenFile, backoff: { initialMs: 50, maxMs: 200 },
  });
  t.teardown(() => m.stop());
  return { m, nodeStatus: () => m.list().find((s) => s.type === 'node')! };
}

t.test('the token file is read at every join: a rotated token is used on the next attempt', async (t) => {
  const tokenFile = join(dir, 'join-rotating');
  writeFileSync(tokenFile, 'stale-token-from-before\n');
  const { m, nodeStatus } = tokenFileManager(t, tokenFile);
  await waitFor('the stale token refused', () => nodeStatus().state === CertState.Failed);
  t.match(nodeStatus().lastError, /did not authenticate/);
  t.ok(reviews.reviews.some((r) => r.token === 'stale-token-from-before'));
  const fresh = reviews.issueForPod(NS, 'weft-ztunnel-n1');
  writeFileSync(tokenFile, fresh);
  const node = await m.get(NODE_ID, { timeoutMs: 15_000 });
  t.equal(new X509Certificate(node.certChainPem[0]!).subject, 'CN=node-1');
  t.ok(reviews.reviews.some((r) => r.token === fresh), 'the rotated content was sent');
});

t.test('a missing token file is a retried configuration error naming the flag', async (t) => {
  const tokenFile = join(dir, 'not-yet-written');
  const { m, nodeStatus } = tokenFileManager(t, tokenFile);
  await waitFor('the missing file reported', () => nodeStatus().state === CertState.Failed);
  t.match(nodeStatus().lastError, /--join-sa-token-file=.*not-yet-written: cannot read it/);
  writeFileSync(tokenFile, reviews.issueForPod(NS, 'weft-ztunnel-n1'));
  await m.get(NODE_ID, { timeoutMs: 15_000 });
  t.pass('joined once the kubelet wrote the file');
});

t.test('weft ca wiring: tokenReview config with a kubeconfig file admits the pod\'s node', async (t) => {
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'clusters: [{name: test, cluster: {server: "' + api.url + '"}}]',
    'users: [{name: ca, user: {token: ' + API_TOKEN + '}}]',
    'contexts: [{name: test, context: {cluster: test, user: ca}}]',
  ].join('\n'));
  const app = await startCaApp({
    redis: fx.redis.url, trustDomain: TD, listen: { host: '127.0.0.1', port: 0 }, root: { kind: 'dir', dir: join(dir, 'root') }, generateRoot: true,
    dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], certTtlMs: 3600e3, maxCertTtlMs: 24 * 3600e3, nodeCertTtlMs: 3600e3,
    tokenReview: { kubeconfig, policy: POLICY },
  }, silentLogger());
  t.teardown(() => app.stop());
  const c = new CaClient({ address: `127.0.0.1:${app.port}`, rootPem: app.rootPem, trustDomain: TD, serverName: 'localhost' });
  t.teardown(() => c.close());
  await c.join('node-2', { kind: 'serviceAccountToken', token: reviews.issueForPod(NS, 'weft-ztunnel-n2') });
  t.equal(new X509Certificate(c.nodeCredentials!.certChainPem[0]!).subject, 'CN=node-2');
  const err = await refusal(c.join('node-1', { kind: 'serviceAccountToken', token: reviews.issueForPod(NS, 'weft-ztunnel-n2') }));
  t.equal(err.code, 'WEFT_CA_SA_TOKEN_DENIED', 'node-2\'s pod cannot join as node-1');
});
