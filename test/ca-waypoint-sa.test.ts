/**
 * Waypoints on a cluster: a real gRPC CA over TLS with --kube-token-review asks the API
 * server stand-in (TokenReview + pod GET) about the projected ServiceAccount token a
 * waypoint sends as its bearer credential, with no client certificate. It issues only
 * spiffe://<td>/ns/<pod namespace>/sa/<token's ServiceAccount>, and only to a live,
 * pod-bound waypoint pod of that ServiceAccount.
 */
import t, { type Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { redisFixture } from './helpers/redis';
import { TestApiServer } from './helpers/apiserver';
import { TestTokenReview } from './helpers/token-review';
import { ManualClock } from './helpers/clock';
import { waitFor } from './helpers/wait';
import { identityRefusals as refusals, newCaClient, refusal } from './helpers/ca-client';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import { CaClient } from '../src/ca/client';
import { identityCertSource } from '../src/ca/identity-certs';
import { createIdentityToken } from '../src/ca/identity-tokens';
import { TokenReviewJoin, type SaJoinPolicy } from '../src/ca/sa-token-join';
import { GATEWAY_NAME_LABEL, TokenReviewWaypoints, type WaypointLookup } from '../src/ca/waypoint-sa';
import { limitsFor } from '../src/ca/rate-limit';
import { KubeClient } from '../src/k8s/client';
import { startCaApp } from '../src/ca/app';
import { RegistryStore } from '../src/registry/store';
import { MeshState } from '../src/registry/state';
import { silentLogger } from '../src/lib/log';
import { isWeftError } from '../src/lib/errors';

const TD = 'cluster.local';
const WAYPOINT = `spiffe://${TD}/ns/demo/sa/waypoint`;
const POLICY: SaJoinPolicy = { audience: 'weft-ca', namespace: 'weft-system', serviceAccount: 'weft-ztunnel' };
const API_TOKEN = 'ca-api-token';

const fx = redisFixture(t);
const clock = new ManualClock(1_000_000);
let issuer: Issuer;
let api: TestApiServer;
let reviews: TestTokenReview;
let dir: string;

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  api = await TestApiServer.start({ token: API_TOKEN });
  reviews = new TestTokenReview(api);
  dir = mkdtempSync(join(tmpdir(), 'weft-ca-waypoint-'));
  waypointPod('waypoint-1');
  api.put('pods', { metadata: { name: 'weft-ztunnel-n1', namespace: 'weft-system' }, spec: { nodeName: 'node-1', serviceAccountName: 'weft-ztunnel' } });
  api.put('pods', { metadata: { name: 'app-a', namespace: 'demo' }, spec: { nodeName: 'node-1', serviceAccountName: 'sa-a' } });
});
t.teardown(async () => {
  await api?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function waypointPod(name: string, extra: { deletionTimestamp?: string; gateway?: string; serviceAccountName?: string } = {}) {
  return api.put('pods', {
    metadata: {
      name, namespace: 'demo', labels: { [GATEWAY_NAME_LABEL]: extra.gateway ?? 'waypoint', 'weft.io/dataplane-mode': 'none' },
      ...(extra.deletionTimestamp ? { deletionTimestamp: extra.deletionTimestamp } : {}),
    },
    spec: { nodeName: 'node-1', serviceAccountName: extra.serviceAccountName ?? 'waypoint' },
  });
}

async function startCa(t: Test, opts: { waypoints?: WaypointLookup } = {}): Promise<{ address: string; metrics: Registry }> {
  const kube = new KubeClient({ server: api.url, token: API_TOKEN });
  t.teardown(() => kube.close());
  const metrics = new Registry();
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: new MeshState({ trustDomain: TD }), logger: silentLogger(), metrics,
    joinLimits: limitsFor(1000), csrLimits: limitsFor(1000),
    saJoin: new TokenReviewJoin({ kube, policy: POLICY, clock }),
    waypointTokens: new TokenReviewWaypoints({
      kube, audience: POLICY.audience, nodeServiceAccount: { namespace: POLICY.namespace, serviceAccount: POLICY.serviceAccount },
      clock, ...(opts.waypoints ? { waypoints: opts.waypoints } : {}),
    }),
  });
  const port = await server.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => server.stop(100));
  return { address: `127.0.0.1:${port}`, metrics };
}

function newClient(t: Test, address: string): CaClient {
  return newCaClient(t, address, issuer.rootPem, TD);
}

t.test('a waypoint pod gets its own identity with its projected token, re-read from the file', async (t) => {
  const { address } = await startCa(t);
  const tokenFile = join(dir, 'token');
  const token = reviews.issueForPod('demo', 'waypoint-1');
  writeFileSync(tokenFile, token + '\n');
  const client = newClient(t, address);
  const certs = identityCertSource({ client, identity: WAYPOINT, tokenFile, logger: silentLogger(), metrics: new Registry() });
  t.teardown(() => certs.stop());
  const cert = await certs.get(WAYPOINT);
  t.equal(new X509Certificate(cert.certChainPem[0]!).subjectAltName, `URI:${WAYPOINT}`, 'exactly its identity');
  t.notOk(client.nodeCredentials, 'no node credential');
  const review = reviews.reviews.find((r) => r.token === token);
  t.same(review?.audiences, ['weft-ca'], 'reviewed for the CA\'s audience');
  t.equal(review?.authorization, `Bearer ${API_TOKEN}`, 'with the CA\'s own API credential');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === '/api/v1/namespaces/demo/pods/waypoint-1'), 'and read the pod the token is bound to');

  // A second CSR within the cache window: no second review.
  const before = reviews.reviews.length;
  const { csrPem } = await generateKeyAndCsr({ uri: WAYPOINT });
  t.ok(await client.createOwnCertificate(csrPem, 0, token), 'issued again');
  t.equal(reviews.reviews.length, before, 'from the short cache: no TokenReview per CSR');
});

t.test('refusals: wrong ServiceAccount, not pod-bound, a node\'s token, not a waypoint, deleted or re-created pods', async (t) => {
  const { address, metrics } = await startCa(t);
  const client = newClient(t, address);
  waypointPod('waypoint-gone');
  waypointPod('waypoint-recreated');
  waypointPod('waypoint-dying', { deletionTimestamp: '2026-01-01T00:00:00Z' });
  const gone = reviews.issueForPod('demo', 'waypoint-gone');
  api.remove('pods', 'demo', 'waypoint-gone');
  const uid = String(api.get('pods', 'demo', 'waypoint-1')!.metadata.uid);
  const mine = (await generateKeyAndCsr({ uri: WAYPOINT })).csrPem;
  const identityToken = (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 60_000 })).token;

  type Case = [name: string, token: () => string, code: string, grpcCode: grpc.status, reason: string, says: RegExp, opts?: { binding?: boolean; csr?: string }];
  const cases: Case[] = [
    ['the token of another ServiceAccount bound to the pod', () => reviews.issue({ namespace: 'demo', serviceAccount: 'other', pod: { name: 'waypoint-1', uid }, audiences: ['weft-ca'] }),
      'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'pod_service_account', /runs as ServiceAccount waypoint, not other/],
    ['a CSR for another ServiceAccount', () => reviews.issueForPod('demo', 'waypoint-1'),
      'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'identity', /credential is for spiffe:\/\/cluster\.local\/ns\/demo\/sa\/waypoint only/,
      { csr: 'other' }],
    ['not bound to a pod', () => reviews.issue({ namespace: 'demo', serviceAccount: 'waypoint', audiences: ['weft-ca'] }),
      'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'not_pod_bound', /not bound to a pod.*projected serviceAccountToken/],
    ['wrong audience', () => reviews.issueForPod('demo', 'waypoint-1', { audiences: ['https://kubernetes.default.svc'] }),
      'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'audience', /audience: weft-ca/],
    ['a node proxy\'s token', () => reviews.issueForPod('weft-system', 'weft-ztunnel-n1'),
      'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'node_credential', /node proxies' \(weft-system\/weft-ztunnel\).*never a waypoint's/],
    ['a workload pod\'s token', () => reviews.issueForPod('demo', 'app-a'),
      'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'not_waypoint', /no gateway\.networking\.k8s\.io\/gateway-name label/, { csr: 'app' }],
    ['deleted pod, real binding check', () => gone, 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'unauthenticated', /not found/],
    ['deleted pod, the CA\'s own lookup', () => gone, 'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'pod_missing', /does not exist/, { binding: false }],
    ['re-created pod', () => reviews.issue({ namespace: 'demo', serviceAccount: 'waypoint', pod: { name: 'waypoint-recreated', uid: 'uid-before' }, audiences: ['weft-ca'] }),
      'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'pod_uid', /re-created/, { binding: false }],
    ['terminating pod', () => reviews.issueForPod('demo', 'waypoint-dying'),
      'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'pod_deleted', /being deleted/],
    ['a lab identity token', () => identityToken,
      'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'disabled', /accepts no identity tokens.*projected ServiceAccount token/],
  ];
  const csrs: Record<string, string> = {
    other: (await generateKeyAndCsr({ uri: `spiffe://${TD}/ns/demo/sa/sa-a` })).csrPem,
    app: (await generateKeyAndCsr({ uri: `spiffe://${TD}/ns/demo/sa/sa-a` })).csrPem,
  };
  for (const [name, token, code, grpcCode, reason, says, opts] of cases) {
    reviews.validateBinding = opts?.binding ?? true;
    const before = await refusals(metrics, reason);
    const err = await refusal(client.createOwnCertificate(opts?.csr ? csrs[opts.csr]! : mine, 0, token()));
    t.equal(err.code, code, `${name}: ${code}`);
    t.equal(err.details?.grpcCode, grpcCode, `${name}: ${grpc.status[grpcCode]}`);
    t.match(err.message, says, `${name}: says what was wrong`);
    t.equal(await refusals(metrics, reason), before + 1, `${name}: counted as ${reason}`);
  }
  reviews.validateBinding = true;
});

t.test('a waypoint pod deleted after issuance gets no new certificate once the cached answer is stale', async (t) => {
  const { address } = await startCa(t);
  const client = newClient(t, address);
  waypointPod('waypoint-short');
  const token = reviews.issueForPod('demo', 'waypoint-short');
  const { csrPem } = await generateKeyAndCsr({ uri: WAYPOINT });
  t.ok(await client.createOwnCertificate(csrPem, 0, token), 'issued while the pod lives');
  api.remove('pods', 'demo', 'waypoint-short');
  t.ok(await client.createOwnCertificate(csrPem, 0, token), 'within the cache window the answer stands (bounded staleness)');
  clock.advance(31_000);
  const err = await refusal(client.createOwnCertificate(csrPem, 0, token));
  t.equal(err.code, 'WEFT_CA_IDENTITY_TOKEN_INVALID', 'then refused');
  t.match(err.message, /not found/);
});

t.test('with the mesh\'s waypoints known, the pod\'s label must name a waypoint of that ServiceAccount', async (t) => {
  const known = new Map<string, string>([['demo/waypoint', 'waypoint'], ['demo/other-gw', 'someone-else']]);
  const { address, metrics } = await startCa(t, { waypoints: { waypoint: (ns, name) => {
    const sa = known.get(`${ns}/${name}`);
    return sa === undefined ? undefined : { serviceAccount: sa };
  } } });
  const client = newClient(t, address);
  const { csrPem } = await generateKeyAndCsr({ uri: WAYPOINT });
  t.ok(await client.createOwnCertificate(csrPem, 0, reviews.issueForPod('demo', 'waypoint-1')), 'a pod of a known waypoint: issued');
  waypointPod('stray', { gateway: 'nobody' });
  waypointPod('borrowed', { gateway: 'other-gw' });
  let err = await refusal(client.createOwnCertificate(csrPem, 0, reviews.issueForPod('demo', 'stray')));
  t.equal(err.code, 'WEFT_CA_IDENTITY_DENIED');
  t.match(err.message, /labelled for waypoint demo\/nobody, which the mesh does not know/);
  t.equal(await refusals(metrics, 'waypoint_missing'), 1);
  err = await refusal(client.createOwnCertificate(csrPem, 0, reviews.issueForPod('demo', 'borrowed')));
  t.equal(err.code, 'WEFT_CA_IDENTITY_DENIED');
  t.match(err.message, /waypoint demo\/other-gw runs as ServiceAccount someone-else, not waypoint/);
  // The Gateway goes while its pod lives on: refused at once, even within the cache window.
  const token = reviews.issueForPod('demo', 'waypoint-1');
  t.ok(await client.createOwnCertificate(csrPem, 0, token));
  known.delete('demo/waypoint');
  err = await refusal(client.createOwnCertificate(csrPem, 0, token));
  t.match(err.message, /which the mesh does not know/, 'the registry is asked on every request');
});

t.test('weft ca wiring: the registry\'s waypoint records decide which Gateway a pod may belong to', async (t) => {
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'clusters: [{name: test, cluster: {server: "' + api.url + '"}}]',
    'users: [{name: ca, user: {token: ' + API_TOKEN + '}}]',
    'contexts: [{name: test, context: {cluster: test, user: ca}}]',
  ].join('\n'));
  const store = RegistryStore.connect(fx.redis.url);
  t.teardown(() => store.close());
  const podUid = String(api.get('pods', 'demo', 'waypoint-1')!.metadata.uid);
  const podRecord = {
    uid: podUid, name: 'waypoint-1', namespace: 'demo', node: 'node-1', addresses: ['10.1.0.50'], serviceAccount: 'waypoint',
    labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'weft.io/dataplane-mode': 'none' }, status: 'Unhealthy' as const,
  };
  await store.apply([
    { op: 'put', kind: 'waypoint', record: { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' } },
    // The controller mirrors the pod (not ready yet: it has no certificate); the CA reads it there.
    { op: 'put', kind: 'workload', record: podRecord },
  ]);
  const podGets = () => api.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/api/v1/namespaces/demo/pods')).length;
  const getsBefore = podGets();
  const app = await startCaApp({
    redis: fx.redis.url, trustDomain: TD, listen: { host: '127.0.0.1', port: 0 }, root: { kind: 'dir', dir: join(dir, 'root') }, generateRoot: true,
    dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], certTtlMs: 3600e3, maxCertTtlMs: 24 * 3600e3, nodeCertTtlMs: 3600e3,
    tokenReview: { kubeconfig, policy: POLICY },
  }, silentLogger());
  t.teardown(() => app.stop());
  const client = new CaClient({ address: `127.0.0.1:${app.port}`, rootPem: app.rootPem, trustDomain: TD, serverName: 'localhost' });
  t.teardown(() => client.close());
  const { csrPem } = await generateKeyAndCsr({ uri: WAYPOINT });
  // Until the CA has loaded the registry the answer is "retry" (UNAVAILABLE), then issued.
  let chain: string[] | undefined;
  await waitFor('the CA to load the registry and issue', async () => {
    try {
      chain = await client.createOwnCertificate(csrPem, 0, reviews.issueForPod('demo', 'waypoint-1'));
      return true;
    } catch (err) {
      if (isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE')) return false;
      throw err;
    }
  });
  t.equal(new X509Certificate(chain![0]!).subjectAltName, `URI:${WAYPOINT}`, 'a pod of a registered waypoint: issued');
  t.equal(podGets(), getsBefore, 'the pod was read from the registry: no pod GET to the API server (the CA needs no pod rights outside weft-system)');

  // A token whose pod the registry does not have (not mirrored yet, or re-created under another uid): refused.
  await store.apply([{ op: 'delete', kind: 'workload', key: podUid }, { op: 'put', kind: 'workload', record: { ...podRecord, uid: 'another-uid' } }]);
  await waitFor('the CA to see the pod record change', async () => {
    try {
      await client.createOwnCertificate(csrPem, 60, reviews.issueForPod('demo', 'waypoint-1'));
      return false;
    } catch (err) {
      if (isWeftError(err, 'WEFT_CA_IDENTITY_DENIED') && /does not exist/.test(err.message)) return true;
      throw err;
    }
  }, { intervalMs: 200 });
  t.pass('a token whose pod is not in the registry (uid) is refused');
  await store.apply([{ op: 'delete', kind: 'workload', key: 'another-uid' }, { op: 'put', kind: 'workload', record: podRecord }]);

  await store.apply([{ op: 'delete', kind: 'waypoint', key: 'demo/waypoint' }]);
  await waitFor('the CA to see the waypoint go', async () => {
    try {
      await client.createOwnCertificate(csrPem, 0, reviews.issueForPod('demo', 'waypoint-1'));
      return false; // the follower has not applied the delete yet
    } catch (err) {
      if (isWeftError(err, 'WEFT_CA_IDENTITY_DENIED') && /does not know/.test(err.message)) return true;
      throw err;
    }
  });
  t.pass('the Gateway removed from the registry: its pods get no new certificate');
  const err = await refusal(client.createOwnCertificate(csrPem, 0, (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 60_000 })).token));
  t.equal(err.code, 'WEFT_CA_IDENTITY_TOKEN_INVALID', 'and the TokenReview CA takes no identity tokens');
});
