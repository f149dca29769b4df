// Issue 9, item 13: the admin views off loopback authenticate callers (TokenReview +
// SubjectAccessReview for get pods/proxy, as kube-rbac-proxy does), rate-limit them,
// serve renders from a short-lived snapshot, and /logging changes only on POST on the
// loopback API. Real HTTP servers, the API server stand-in, an injected clock.
import t, { type Test } from 'tap';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { KubeClient } from '../src/k8s/client';
import { createLogger } from '../src/lib/log';
import { ManualClock } from './helpers/clock';
import { adminGet } from '../src/cli/admin-client';
import { adminServer, type AdminSource } from '../src/ztunnel/admin';
import { closeServer, listenTcp } from '../src/lib/http-endpoints';
import { AdminAuthenticator } from '../src/ztunnel/admin-auth';
import { RateLimiter, type RateLimiterOptions } from '../src/lib/token-bucket';
import { adminViewServer } from '../src/ztunnel/admin-view';
import type { ConfigDump } from '../src/ztunnel/admin-types';
import { TestAccessReview } from './helpers/access-review';
import { TestApiServer, podObj } from './helpers/apiserver';

const REVIEWER = 'ztunnel-sa-token';
const OPERATOR = 'operator-token';
const VIEWER = 'viewer-token';

interface Rig {
  url: string;
  api: TestApiServer;
  reviews: TestAccessReview;
  renders: { configDump: number };
  clock: ManualClock;
  metrics: Registry;
}

async function rig(t: Test, limits?: RateLimiterOptions): Promise<Rig> {
  const api = await TestApiServer.start({ token: REVIEWER });
  t.teardown(() => api.stop());
  const reviews = new TestAccessReview(api)
    .addUser(OPERATOR, 'alice').addUser(VIEWER, 'bob')
    .allow({ user: 'alice', namespace: 'weft-system', verb: 'get', resource: 'pods', subresource: 'proxy' })
    // bob may read pods but not proxy to them, nor anything in another namespace.
    .allow({ user: 'bob', namespace: 'weft-system', verb: 'get', resource: 'pods' })
    .allow({ user: 'bob', namespace: 'default', verb: 'get', resource: 'pods', subresource: 'proxy' });
  const client = new KubeClient({ server: api.url, token: REVIEWER });
  t.teardown(() => client.close());
  const clock = new ManualClock(1_000_000);
  const renders = { configDump: 0 };
  const metrics = new Registry();
  const src: AdminSource = {
    status: () => ({ node: 'n1', version: '0.1.0', ready: true, registryRevision: 1, registryStalenessSeconds: 0, startedAt: '' }),
    tunnels: () => ({ node: 'n1', tunnels: [] }),
    connections: () => ({ node: 'n1', connections: [] }),
    certificates: () => ({ node: 'n1', certificates: [] }),
    configDump: () => { renders.configDump++; return { node: 'n1', renders: renders.configDump } as unknown as ConfigDump; },
    registry: () => ({ node: 'n1', trustDomain: 'cluster.local', revision: 1, records: {} }),
    logger: createLogger({ level: 'silent', component: 'test' }),
    metrics,
  };
  const auth = new AdminAuthenticator({ client: () => client, namespace: 'weft-system', clock });
  const server = adminViewServer(src, { auth, clock, ...(limits ? { limits } : {}) });
  await listenTcp(server, '127.0.0.1', 0);
  t.teardown(() => closeServer(server));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, api, reviews, renders, clock, metrics };
}

const bearer = (token: string, header = 'authorization') => ({ headers: { [header]: `Bearer ${token}` } });

t.test('unauthenticated 401, not authorized 403, authorized 200', async (t) => {
  const r = await rig(t);
  const none = await fetch(`${r.url}/tunnels`);
  t.equal(none.status, 401, 'no token');
  t.equal(none.headers.get('www-authenticate'), 'Bearer');
  t.match(await none.json(), { reason: 'AdminViewRefused', message: /bearer token is required/ });
  t.equal((await fetch(`${r.url}/tunnels`, bearer('forged'))).status, 401, 'a token the API server does not know');
  const bob = await fetch(`${r.url}/tunnels`, bearer(VIEWER));
  t.equal(bob.status, 403, 'authenticated, but no get pods/proxy in weft-system');
  t.match(await bob.json(), { message: /bob may not get pods\/proxy in namespace weft-system; bind the weft-operator Role/ });
  const alice = await fetch(`${r.url}/tunnels`, bearer(OPERATOR));
  t.equal(alice.status, 200);
  t.same(await alice.json(), { node: 'n1', tunnels: [] });
  t.equal((await fetch(`${r.url}/status`, bearer(OPERATOR, 'x-weft-authorization'))).status, 200, 'the header weft sends through the pod proxy');
  t.equal((await fetch(`${r.url}/status`, { method: 'POST', ...bearer(OPERATOR) })).status, 405, 'still read-only');
  t.equal((await fetch(`${r.url}/logging?level=debug`, bearer(OPERATOR))).status, 404, 'no /logging off loopback');
  const sar = r.reviews.reviews.find((x) => x.kind === 'SubjectAccessReview' && x.subject === 'alice');
  t.same(sar?.attributes, { namespace: 'weft-system', verb: 'get', resource: 'pods', subresource: 'proxy' });
  const text = await r.metrics.metrics();
  t.match(text, /weft_ztunnel_admin_view_requests_total\{result="unauthenticated"\} 2/);
  t.match(text, /weft_ztunnel_admin_view_requests_total\{result="forbidden"\} 1/);
});

t.test('reviews are cached per token for a short time, and an API failure refuses (503) without being cached', async (t) => {
  const r = await rig(t);
  for (let i = 0; i < 5; i++) t.equal((await fetch(`${r.url}/status`, bearer(OPERATOR))).status, 200);
  t.equal(r.reviews.reviews.filter((x) => x.kind === 'TokenReview').length, 1, 'one review pair for five requests');
  r.clock.advance(31_000);
  r.reviews.failWith = 403;
  const down = await fetch(`${r.url}/status`, bearer(OPERATOR));
  t.equal(down.status, 503, 'the cached answer expired and the ztunnel may not review: fail closed');
  t.match(await down.json(), { message: /refused the ztunnel's own request to create tokenreviews \(HTTP 403\).*weft-ztunnel-admin-auth/ });
  r.reviews.failWith = undefined;
  t.equal((await fetch(`${r.url}/status`, bearer(OPERATOR))).status, 200, 'and recovers at once');
});

t.test('rate limits: per caller and overall, 429 with Retry-After, before any review', async (t) => {
  const r = await rig(t, { perCaller: { perSecond: 1, burst: 3 }, overall: { perSecond: 100, burst: 100 } });
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${r.url}/status`)).status, 401);
  const limited = await fetch(`${r.url}/status`, bearer(OPERATOR));
  t.equal(limited.status, 429, 'the address used its burst on unauthenticated requests');
  t.equal(limited.headers.get('retry-after'), '1');
  t.equal(r.reviews.reviews.length, 0, 'no request reached the API server');
  r.clock.advance(1000);
  t.equal((await fetch(`${r.url}/status`, bearer(OPERATOR))).status, 200, 'a token back after a second');
  const text = await r.metrics.metrics();
  t.match(text, /weft_ztunnel_admin_view_requests_total\{result="rate_limited"\} 1/);
});

t.test('RateLimiter: the overall bucket caps many callers together', async (t) => {
  const clock = new ManualClock(0);
  const l = new RateLimiter({ perCaller: { perSecond: 10, burst: 10 }, overall: { perSecond: 2, burst: 4 }, maxCallers: 2 }, clock);
  for (let i = 0; i < 4; i++) t.ok(l.take(`c${i}`).ok);
  t.same(l.take('c9'), { ok: false, scope: 'overall', retryAfterSeconds: 1 });
  t.equal(l.trackedCallers, 2, 'callers tracked are bounded');
  clock.advance(500);
  t.ok(l.take('c9').ok, 'refilled at 2/s');
});

t.test('renders are snapshots: a burst of requests renders once per TTL', async (t) => {
  const r = await rig(t);
  const bodies = [];
  for (let i = 0; i < 5; i++) bodies.push(await (await fetch(`${r.url}/config_dump`, bearer(OPERATOR))).json());
  t.equal(r.renders.configDump, 1, 'five requests, one render');
  t.same(bodies[4], bodies[0]);
  r.clock.advance(150);
  await fetch(`${r.url}/config_dump`, bearer(OPERATOR));
  t.equal(r.renders.configDump, 2, 'rendered again once the snapshot is older than its TTL');
});

t.test('weft through the pod proxy: the token travels in X-Weft-Authorization; refusals are told apart', async (t) => {
  const r = await rig(t);
  const port = Number(new URL(r.url).port);
  r.api.put('pods', podObj('weft-system', 'weft-ztunnel-n1', { node: 'n1', ip: '127.0.0.1', labels: { 'app.kubernetes.io/name': 'weft-ztunnel' } }));
  const node = { name: 'n1', admin: { podProxy: { namespace: 'weft-system', pod: 'weft-ztunnel-n1', port } } };
  // The stand-in requires the reviewer token from everyone: alice's kubeconfig token here is REVIEWER, known as alice.
  r.reviews.addUser(REVIEWER, 'alice');
  const kube = new KubeClient({ server: r.api.url, token: REVIEWER });
  t.teardown(() => kube.close());
  t.same(await adminGet(node, '/tunnels', { kube }), { node: 'n1', tunnels: [] });
  t.ok(r.reviews.reviews.some((x) => x.kind === 'TokenReview' && x.subject === REVIEWER), 'the relayed token was reviewed (Authorization itself is stripped by the proxy)');
  r.reviews.users.set(REVIEWER, { username: 'bob', groups: [] });
  r.clock.advance(31_000);
  const err = await adminGet(node, '/certs', { kube }).then(() => undefined, (e: Error) => e);
  t.match(err?.message, /the ztunnel of pod weft-system\/weft-ztunnel-n1 .* refused \(HTTP 403\): bob may not get pods\/proxy/);
});

t.test('loopback admin API: GET /logging never changes the level; POST does', async (t) => {
  const logger = createLogger({ level: 'info', component: 'test', destination: { write() {} } as never });
  const server = adminServer({ logger, metrics: new Registry() } as unknown as AdminSource);
  await listenTcp(server, '127.0.0.1', 0);
  t.teardown(() => closeServer(server));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/logging`;
  const get = await fetch(`${url}?level=debug`);
  t.equal(get.status, 405);
  t.equal(get.headers.get('allow'), 'POST');
  t.equal(logger.level, 'info', 'unchanged by a GET');
  t.same(await (await fetch(url)).json(), { level: 'info' }, 'GET reads it');
  const post = await fetch(`${url}?level=debug`, { method: 'POST' });
  t.equal(post.status, 200);
  t.equal(logger.level, 'debug');
  t.equal((await fetch(`${url}?level=loud`, { method: 'POST' })).status, 400);
});
