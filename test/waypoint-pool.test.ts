// Bulkheads and connection limits in the waypoint's data path (TrafficPolicy
// connectionPool): a plan's request slots admit, queue, or refuse with 503 `UO` at once;
// one Service's full bulkhead does not hold another's requests; the HTTP/1.1 upstream
// keeps to maxConnections per endpoint and replaces a connection after
// maxRequestsPerConnection.
import t from 'tap';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Bulkhead } from '../src/resilience/pool';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';

/** An upstream that holds every request until release() (counting concurrent connections). */
async function heldUpstream(t: Parameters<typeof httpUpstream>[0]) {
  const held: http.ServerResponse[] = [];
  let arrived = 0;
  const waiters: (() => void)[] = [];
  const up = await httpUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      arrived++;
      held.push(res);
      waiters.splice(0).forEach((w) => w());
    });
  });
  return {
    port: up.port,
    server: up.server,
    get arrived() { return arrived; },
    /** Resolves once `n` requests have arrived in all. */
    until(n: number): Promise<void> {
      return new Promise((resolve) => {
        const check = () => (arrived >= n ? resolve() : waiters.push(check));
        check();
      });
    },
    release(): void {
      for (const res of held.splice(0)) res.end('ok');
    },
  };
}

t.test('bulkhead: two in flight, one waits, the rest get 503 UO at once; the waiter goes when a slot frees', async (t) => {
  const up = await heldUpstream(t);
  const bulkhead = new Bulkhead({ maxConcurrentRequests: 2, maxPendingRequests: 1 });
  const h = await startWaypoint(t, () => plan(up.port, { bulkhead }));
  const replies = [0, 1, 2, 3, 4].map(() => request(h.port));
  await up.until(2);
  // The two beyond the queue are answered while the upstream still holds the first two.
  const early = await Promise.race([Promise.all([replies[3], replies[4]]), new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
  t.notOk(early === 'timeout', 'overflow answered without waiting for the upstream');
  t.same((early as { status: number }[]).map((r) => r.status), [503, 503]);
  t.match((early as { body: string }[])[0]!.body, /overflow: demo\/echo-v1:8080 has every request slot/);
  t.equal(up.arrived, 2, 'only two reached the upstream');
  t.same(bulkhead.load, { active: 2, pending: 1 });
  up.release();
  await up.until(3);
  up.release();
  const all = await Promise.all(replies);
  t.same(all.map((r) => r.status), [200, 200, 200, 503, 503]);
  t.same(h.records.map((r) => r.responseFlag).sort(), ['-', '-', '-', 'UO', 'UO']);
  t.same(bulkhead.load, { active: 0, pending: 0 }, 'every slot given back');
});

t.test('one Service with its bulkhead full does not hold another Service\'s requests', async (t) => {
  const slow = await heldUpstream(t);
  const fast = await httpUpstream(t, (req, res) => { req.resume(); req.on('end', () => res.end('fast')); });
  const slowSlots = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 2 });
  const fastSlots = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 0 });
  const h = await startWaypoint(t, (f) => (f.path === '/slow' ? plan(slow.port, { bulkhead: slowSlots }) : plan(fast.port, { bulkhead: fastSlots })));
  const slowReplies = [0, 1, 2, 3].map(() => request(h.port, { path: '/slow' }));
  await slow.until(1);
  const fastReplies: number[] = [];
  for (let i = 0; i < 5; i++) fastReplies.push((await request(h.port, { path: '/fast' })).status);
  t.same(fastReplies, [200, 200, 200, 200, 200], 'the other Service is served while the first is saturated');
  t.same(slowSlots.load, { active: 1, pending: 2 });
  slow.release();
  await slow.until(2);
  slow.release();
  await slow.until(3);
  slow.release();
  t.same((await Promise.all(slowReplies)).map((r) => r.status).sort(), [200, 200, 200, 503]);
});

t.test('a client that leaves while queued gives its place up', async (t) => {
  const up = await heldUpstream(t);
  const bulkhead = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 5 });
  const h = await startWaypoint(t, () => plan(up.port, { bulkhead }));
  const first = request(h.port);
  await up.until(1);
  const gone = http.request({ host: '127.0.0.1', port: h.port, path: '/', headers: { host: 'echo.demo' }, agent: false });
  gone.on('error', () => {});
  gone.end();
  while (bulkhead.load.pending < 1) await new Promise((r) => setTimeout(r, 5));
  gone.destroy();
  while (bulkhead.load.pending > 0) await new Promise((r) => setTimeout(r, 5));
  t.pass('the waiter left the queue');
  up.release();
  t.equal((await first).status, 200);
  t.same(bulkhead.load, { active: 0, pending: 0 });
});

t.test('the route\'s request timeout covers the wait for a slot: a request still queued when it passes gets 504 UT and leaves the queue', async (t) => {
  const up = await heldUpstream(t);
  const bulkhead = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 5 });
  // The first request has no timeout and holds the only slot; the second has 200 ms.
  const h = await startWaypoint(t, (f) => plan(up.port, f.path === '/hold' ? { bulkhead } : { bulkhead, timeoutMs: 200 }));
  const first = request(h.port, { path: '/hold' });
  await up.until(1);
  // Bounded: without the timeout the request would wait in the queue for ever.
  const queued = await Promise.race([request(h.port), new Promise<{ status: number; body: string }>((r) => setTimeout(() => r({ status: 0, body: 'no answer in 10 s' }), 10_000))]);
  t.equal(queued.status, 504, 'answered while the first still holds the only slot');
  t.match(queued.body, /upstream request timeout/);
  t.same(bulkhead.load, { active: 1, pending: 0 }, 'it left the queue');
  t.equal(up.arrived, 1, 'it never reached the upstream');
  up.release();
  t.equal((await first).status, 200);
  t.same(h.records.map((r) => r.responseFlag).sort(), ['-', 'UT']);
  t.same(bulkhead.load, { active: 0, pending: 0 });
});

t.test('maxConnections: requests past it wait for a free connection to the endpoint, none is refused', async (t) => {
  let open = 0;
  let most = 0;
  const up = await httpUpstream(t, (req, res) => { req.resume(); req.on('end', () => setTimeout(() => res.end('ok'), 20)); });
  up.server.on('connection', (s) => {
    open++;
    most = Math.max(most, open);
    s.on('close', () => open--);
  });
  const h = await startWaypoint(t, () => plan(up.port, { pool: { maxConnections: 2 } }));
  const replies = await Promise.all([0, 1, 2, 3, 4, 5].map(() => request(h.port)));
  t.same(replies.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
  t.equal(h.dialer.count(up.port), 2, 'two connections dialed for six concurrent requests');
  t.equal(most, 2, 'never more than two open at the upstream');
});

t.test('maxRequestsPerConnection: a connection is replaced after carrying that many', async (t) => {
  const up = await httpUpstream(t, (req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
  const h = await startWaypoint(t, () => plan(up.port, { pool: { maxRequestsPerConnection: 2 } }));
  for (let i = 0; i < 6; i++) t.equal((await request(h.port)).status, 200);
  t.equal(h.dialer.count(up.port), 3, 'six requests, two per connection: three dials');
  const h2 = await startWaypoint(t, () => plan(up.port));
  for (let i = 0; i < 6; i++) await request(h2.port);
  t.equal(h2.dialer.count(up.port), 1, 'without the limit: one kept-alive connection');
});

t.test('maxRequestsPerConnection on HTTP/2: a session that carried that many streams is replaced, its streams finish', async (t) => {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', (s) => { s.respond({ ':status': 200 }); s.end('ok'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { sessions.forEach((s) => s.destroy()); server.close(); });
  const port = (server.address() as AddressInfo).port;
  const h = await startWaypoint(t, () => plan(port, { pool: { maxRequestsPerConnection: 2 } }));
  const c = http2.connect(`http://127.0.0.1:${h.port}`);
  c.on('error', () => {});
  t.teardown(() => c.destroy());
  const get = () => new Promise<number>((resolve, reject) => {
    const req = c.request({ ':path': '/', ':authority': 'echo.demo' });
    req.on('response', (hd) => { req.resume(); req.on('end', () => resolve(Number(hd[':status']))); });
    req.on('error', reject);
  });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push(await get());
  t.same(statuses, [200, 200, 200, 200, 200, 200]);
  t.equal(h.dialer.count(port), 3, 'six requests, two streams per session: three sessions dialed');
});

t.test('a request whose head cannot be written (a header value the route set) gives its connection back: none is orphaned under maxConnections', async (t) => {
  const up = await httpUpstream(t, (req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
  up.server.keepAliveTimeout = 0; // the upstream never closes an idle connection itself
  let n = 0;
  const bad = { set: [{ name: 'x-bad', value: 'a\u0001b' }], add: [], remove: [] };
  const h = await startWaypoint(t, () => plan(up.port, { pool: { maxConnections: 1 }, ...(n++ === 0 ? { requestHeaders: bad } : {}) }));
  const first = await request(h.port);
  t.equal(first.status, 503, 'the unwritable request fails');
  const second = await Promise.race([request(h.port), new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000).unref())]);
  t.equal(second?.status, 200, 'the next request gets the one connection (it does not wait for one that is held by nobody)');
  t.equal(h.dialer.count(up.port), 1, 'the connection dialed for the first request served the second');
});
