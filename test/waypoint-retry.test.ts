// Plan execution: retries on codes and on connection errors, timeouts → 504, the
// bounded body buffer for replays, backoff on the injected clock, and mirrors.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import type * as http from 'node:http';
import { ManualClock } from './helpers/clock';
import type { AttemptTargets } from '../src/waypoint/types';
import { echoHandler, httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';

/** An upstream answering from a list of statuses, one per request (then 200), recording bodies. */
async function scripted(t: Test, statuses: number[]) {
  const bodies: number[] = [];
  const up = await httpUpstream(t, (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => {
      bodies.push(n);
      const status = statuses.shift() ?? 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`status ${status}`);
    });
  });
  return { port: up.port, bodies };
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

t.test('a listed 503 is retried and the 200 returned; the body replays', async (t) => {
  const up = await scripted(t, [503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 2, backoffMs: 0 } }));
  const r = await request(h.port, { method: 'POST', body: 'x'.repeat(1000) });
  t.equal(r.status, 200);
  t.same(up.bodies, [1000, 1000], 'both attempts got the whole body');
  t.match(h.records[0], { status: 200, attempts: 2, responseFlag: '-' });
});

t.test('without a retry block a 503 passes through once', async (t) => {
  const up = await scripted(t, [503]);
  const h = await startWaypoint(t, () => plan(up.port));
  t.equal((await request(h.port)).status, 503);
  t.equal(up.bodies.length, 1);
});

t.test('attempts = retries after the first try; exhausted → the last answer, URX', async (t) => {
  const up = await scripted(t, [500, 500, 500, 500, 500]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [500], attempts: 2, backoffMs: 0 } }));
  const r = await request(h.port);
  t.equal(r.status, 500);
  t.equal(up.bodies.length, 3, 'attempts 2 → 3 tries');
  t.match(h.records[0], { status: 500, attempts: 3, responseFlag: 'URX' });
});

t.test('a code not listed is not retried', async (t) => {
  const up = await scripted(t, [502]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 3, backoffMs: 0 } }));
  t.equal((await request(h.port)).status, 502);
  t.equal(up.bodies.length, 1);
});

t.test('connection errors: 503 UF without a retry block; retried with one', async (t) => {
  const dead = await closedPort();
  const h = await startWaypoint(t, (f) => (f.path === '/dead' ? plan(dead) : plan(up.port, { retry: { codes: [], attempts: 1, backoffMs: 0 } })));
  const up = await scripted(t, []);
  const r = await request(h.port, { path: '/dead' });
  t.equal(r.status, 503);
  t.match(h.records[0], { status: 503, attempts: 1, responseFlag: 'UF' });
  h.dialer.failNext.set(up.port, 1);
  const ok = await request(h.port, { path: '/live', method: 'POST', body: 'hello' });
  t.equal(ok.status, 200, 'the refused connection was retried');
  t.same(up.bodies, [5]);
  t.match(h.records[1], { status: 200, attempts: 2 });
});

t.test('a per-attempt timeout answers 504 UT; an overall timeout too', async (t) => {
  const held: http.ServerResponse[] = [];
  const up = await httpUpstream(t, (_req, res) => { held.push(res); });
  t.teardown(() => held.forEach((r) => r.destroy()));
  const h = await startWaypoint(t, (f) => plan(up.port, f.path === '/attempt' ? { attemptTimeoutMs: 50 } : { timeoutMs: 50 }));
  const a = await request(h.port, { path: '/attempt' });
  t.equal(a.status, 504);
  t.match(h.records[0], { status: 504, responseFlag: 'UT' });
  const b = await request(h.port, { path: '/overall' });
  t.equal(b.status, 504);
});

t.test('a timed-out attempt is retried whenever a retry block exists, 504 listed or not (GEP-1731)', async (t) => {
  let n = 0;
  const held: http.ServerResponse[] = [];
  const up = await httpUpstream(t, (_req, res) => {
    if (n++ === 0) held.push(res);
    else res.end('second try');
  });
  t.teardown(() => held.forEach((r) => r.destroy()));
  const h = await startWaypoint(t, () => plan(up.port, { attemptTimeoutMs: 100, retry: { codes: [500], attempts: 1, backoffMs: 0 } }));
  const r = await request(h.port);
  t.equal(r.status, 200);
  t.equal(r.body, 'second try');
  t.match(h.records[0], { attempts: 2 });
});

t.test('the retry buffer is bounded: a body over the cap streams once and is not retried', async (t) => {
  const up = await scripted(t, [503, 503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 2, backoffMs: 0 } }), { config: { retryBufferBytes: 1024 } });
  const big = await request(h.port, { method: 'POST', body: Buffer.alloc(4096, 'b') });
  t.equal(big.status, 503, 'not retried: the body no longer fits the buffer');
  t.same(up.bodies, [4096], 'the upstream got the whole body, once');
  t.match(h.records[0], { attempts: 1, requestBytes: 4096 });
  const small = await request(h.port, { method: 'POST', body: Buffer.alloc(1000, 's') });
  t.equal(small.status, 200, 'a body within the cap is retried');
  t.same(up.bodies, [4096, 1000, 1000]);
});

t.test('backoff: the wait between tries is armed on the injected clock', async (t) => {
  const clock = new ManualClock(Date.now());
  const up = await scripted(t, [503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 1, backoffMs: 250 } }), { clock });
  const pending = request(h.port);
  while (!clock.armed.includes(250)) await new Promise((r) => setTimeout(r, 5));
  t.equal(up.bodies.length, 1, 'the second try waits for the backoff');
  clock.advance(250);
  t.equal((await pending).status, 200);
  t.equal(up.bodies.length, 2);
});

t.test('mirrors: a copy with the body goes to the mirror, its answer is dropped', async (t) => {
  const mirrored: Array<{ url?: string; body: string }> = [];
  const mirror = await httpUpstream(t, (req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { mirrored.push({ url: req.url, body }); res.writeHead(500).end('mirror says no'); });
  });
  const up = await httpUpstream(t, echoHandler('primary'));
  const h = await startWaypoint(t, () => plan(up.port, { mirrors: [{ upstream: { host: '127.0.0.1', port: mirror.port, transport: 'tcp' } }] }));
  const r = await request(h.port, { method: 'POST', path: '/m', body: 'copy me' });
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).backend, 'primary');
  while (mirrored.length === 0) await new Promise((res) => setTimeout(res, 5));
  t.same(mirrored, [{ url: '/m', body: 'copy me' }]);
});

t.test('mirrors: bounded concurrency; beyond it copies are dropped, the primary unaffected', async (t) => {
  const held: http.ServerResponse[] = [];
  const mirror = await httpUpstream(t, (req, res) => { req.resume(); held.push(res); });
  t.teardown(() => held.forEach((r) => r.destroy()));
  const up = await httpUpstream(t, echoHandler('primary'));
  const h = await startWaypoint(t, () => plan(up.port, { mirrors: [{ upstream: { host: '127.0.0.1', port: mirror.port, transport: 'tcp' } }] }), { config: { maxMirrorsInFlight: 1 } });
  t.equal((await request(h.port)).status, 200);
  while (held.length === 0) await new Promise((res) => setTimeout(res, 5));
  t.equal((await request(h.port)).status, 200);
  t.equal(h.l7.mirrorsDropped, 1);
  t.equal(held.length, 1);
});

/** An upstream that answers the first request of each connection and drops the connection at the second, as a keep-alive race does. */
async function dropsSecond(t: Test) {
  let connections = 0;
  const server = net.createServer((sock) => {
    connections++;
    let n = 0;
    sock.on('data', (d: Buffer) => {
      if (!d.toString('latin1').includes('\r\n\r\n')) return;
      if (++n === 1) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
      else sock.destroy();
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, connections: () => connections };
}

t.test('with a retry policy a reset on a kept-alive connection counts as an attempt: no free try beyond `attempts`', async (t) => {
  // Every request after the first is read and then answered with a reset, as
  // HTTPRouteRetryConnectionError's backend does; the first leaves a pooled connection.
  let requests = 0;
  const server = net.createServer((sock) => {
    sock.on('data', (d: Buffer) => {
      if (!d.toString('latin1').includes('\r\n\r\n')) return;
      if (++requests === 1) sock.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
      else sock.resetAndDestroy();
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const h = await startWaypoint(t, () => plan((server.address() as net.AddressInfo).port, { retry: { codes: [], attempts: 2, backoffMs: 0 } }));
  t.equal((await request(h.port)).status, 200);
  const failed = await request(h.port);
  t.equal(failed.status, 503);
  t.equal(requests - 1, 3, 'the first try (on the pooled connection) and 2 retries, not one more');
  t.match(h.records[1], { attempts: 3, responseFlag: 'URX' });
});

t.test('a kept-alive connection that turns out closed: an idempotent request is resent once, a POST is not', async (t) => {
  const up = await dropsSecond(t);
  const h = await startWaypoint(t, () => plan(up.port));
  t.equal((await request(h.port)).status, 200);
  const again = await request(h.port);
  t.equal(again.status, 200, 'the GET went out again on a fresh connection');
  t.equal(up.connections(), 2);
  t.match(h.records[1], { attempts: 1, responseFlag: '-' });
  const post = await request(h.port, { method: 'POST', body: 'once' });
  t.equal(post.status, 503, 'a POST is never resent without a retry policy');
  t.match(h.records[2], { responseFlag: 'UC' });
});

t.test('a kept-alive connection that turns out closed says nothing of the endpoint: its resend is reported, not the stale try', async (t) => {
  const up = await dropsSecond(t);
  const calls: string[] = [];
  const targets: AttemptTargets = {
    next: () => undefined,
    started: (to) => calls.push(`started ${to.port}`),
    cancelled: (to) => calls.push(`cancelled ${to.port}`),
    report: (to, o) => calls.push(`report ${to.port} ${o.status ?? o.failure}`),
  };
  const h = await startWaypoint(t, () => plan(up.port, { targets }));
  t.equal((await request(h.port)).status, 200);
  calls.length = 0;
  t.equal((await request(h.port)).status, 200, 'the GET went out again on a fresh connection');
  t.same(calls, [`started ${up.port}`, `cancelled ${up.port}`, `started ${up.port}`, `report ${up.port} 200`],
    'the stale connection\'s reset is ended without a report (outlier detection and the balancer\'s latency never see it)');
});

t.test('the client going away cancels the upstream attempt (DC)', async (t) => {
  let upstreamClosed = false;
  const up = await httpUpstream(t, (req) => { req.on('close', () => { upstreamClosed = true; }); });
  const h = await startWaypoint(t, () => plan(up.port));
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => {});
  s.write('GET /slow HTTP/1.1\r\nHost: echo.demo\r\n\r\n');
  while (h.dialer.count(up.port) === 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  s.destroy();
  while (h.records.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.match(h.records[0], { responseFlag: 'DC', status: 0 });
  while (!upstreamClosed) await new Promise((r) => setTimeout(r, 5));
  t.ok(upstreamClosed, 'the upstream request was cancelled');
});
