/**
 * The live tap (src/telemetry/tap-hub.ts) over real HTTP: the stream's first line,
 * filters, the subscriber bound (503), a reader that stops reading dropped and counted
 * (never buffered without bound), keepalives on a manual clock, and filter semantics.
 */
import t, { type Test } from 'tap';
import * as http from 'node:http';
import { Registry } from 'prom-client';
import { parseTapFilter, TapFilterError, TapHub, tapMatches, type TapHubOptions } from '../src/telemetry/tap-hub';
import { TAP_PATH, type TapEvent } from '../src/telemetry/types';
import { ManualClock } from './helpers/clock';
import { serveTap, subscribeTap } from './helpers/tap-stream';

function event(over: Partial<TapEvent> = {}): TapEvent {
  return {
    time: '2026-12-01T00:00:00.000Z', proxy: 'waypoint demo/waypoint', kind: 'request', verdict: 'routed',
    source: { address: '10.0.1.2', workload: 'client', namespace: 'demo' },
    destination: { address: '10.0.2.3', workload: 'echo', namespace: 'demo', service: 'demo/echo' },
    method: 'GET', authority: 'echo.demo', path: '/api/items', status: 200, responseFlag: '-', durationMs: 1.5, attempts: 1,
    traceId: '0af7651916cd43dd8448eb211c80319c', mtls: true, ...over,
  };
}

async function startHub(t: Test, opts: TapHubOptions = {}) {
  const registry = new Registry();
  const hub = new TapHub({ proxy: 'waypoint demo/waypoint', registry, ...opts });
  const port = await serveTap(t, hub);
  return { hub, registry, port };
}

const subscribe = subscribeTap;

async function body(port: number, query: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `${TAP_PATH}${query}` }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    }).on('error', reject);
  });
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values as Array<{ value: number }> | undefined)?.reduce((a, v) => a + v.value, 0) ?? 0;
}

t.test('streams matching events as JSON lines after a first "connected" line', async (t) => {
  const { hub, port, registry } = await startHub(t);
  t.equal(hub.active, false, 'inactive without subscribers');
  const all = await subscribe(port);
  const errors = await subscribe(port, '?status=5xx&namespace=demo');
  t.same(JSON.parse(await all.next()), { connected: { proxy: 'waypoint demo/waypoint', filter: {} } });
  t.same(JSON.parse(await errors.next()), { connected: { proxy: 'waypoint demo/waypoint', filter: { namespace: 'demo', status: '5xx' } } });
  t.equal(all.res.headers['content-type'], 'application/x-ndjson');
  t.equal(all.res.headers['transfer-encoding'], 'chunked');
  t.equal(hub.active, true);
  t.equal(await metric(registry, 'weft_tap_subscribers'), 2);
  hub.publish(event());
  hub.publish(event({ status: 503, verdict: 'failed', responseFlag: 'UF' }));
  t.same(JSON.parse(await all.next()), event());
  t.same(JSON.parse(await all.next()), event({ status: 503, verdict: 'failed', responseFlag: 'UF' }));
  t.equal(JSON.parse(await errors.next()).status, 503, 'the 5xx subscriber gets only the 503');
  all.req.destroy();
  errors.req.destroy();
  await new Promise<void>((r) => { const w = () => (hub.active ? setImmediate(w) : r()); w(); });
  t.equal(hub.subscriberCount, 0, 'a client that leaves is forgotten');
  t.equal(await metric(registry, 'weft_tap_subscribers'), 0);
});

t.test('refuses subscribers past the bound with 503 and what to do, and bad filters with 400', async (t) => {
  const { port, registry } = await startHub(t, { maxSubscribers: 2 });
  const a = await subscribe(port);
  const b = await subscribe(port);
  await a.next();
  await b.next();
  const third = await body(port, '');
  t.equal(third.status, 503);
  t.match(third.text, /2 subscribers already stream this proxy.*stop one/);
  t.equal(await metric(registry, 'weft_tap_refused_total'), 1);
  const bad = await body(port, '?status=teapot');
  t.equal(bad.status, 400);
  t.match(bad.text, /status must be a class such as 5xx/);
  a.req.destroy();
  b.req.destroy();
});

t.test('a subscriber that stops reading is dropped and counted; the others keep streaming', async (t) => {
  const maxBufferedBytes = 64 * 1024;
  const { hub, port, registry } = await startHub(t, { maxBufferedBytes });
  const slow = await subscribe(port);
  const fast = await subscribe(port);
  await slow.next();
  await fast.next();
  slow.res.pause();
  // Pausing stops reading: the kernel's socket buffers fill, then the response's own.
  let closed = false;
  slow.res.socket.once('close', () => { closed = true; });
  const big = event({ path: `/${'x'.repeat(1000)}` });
  let published = 0;
  let fastSeen = 0;
  fast.res.on('data', (c: string) => { fastSeen += c.length; });
  // Small bursts with a turn of the event loop between them, as requests finish: the
  // fast reader's writes complete between bursts, the slow one's pile up.
  while (hub.subscriberCount === 2 && published < 200_000) {
    for (let i = 0; i < 10; i++) hub.publish(big);
    published += 10;
    await new Promise((r) => setImmediate(r));
  }
  t.equal(hub.subscriberCount, 1, 'the slow subscriber was dropped');
  t.equal(await metric(registry, 'weft_tap_dropped_total'), 1, 'and counted');
  t.comment(`dropped after ${published} events (${Math.round((published * JSON.stringify(big).length) / 1024)} KiB published; limit ${maxBufferedBytes / 1024} KiB unsent)`);
  // The client notices the close once it reads again.
  slow.res.resume();
  await new Promise<void>((r) => { const w = () => (closed ? r() : setImmediate(w)); w(); });
  t.ok(closed, 'its connection was closed');
  const seen = fastSeen;
  hub.publish(event());
  await new Promise<void>((r) => { const w = () => (fastSeen > seen ? r() : setImmediate(w)); w(); });
  t.ok(fastSeen > seen, 'the fast one kept receiving');
  fast.req.destroy();
});

t.test('keepalive: an empty line every interval while someone listens, no timer otherwise', async (t) => {
  const clock = new ManualClock(0);
  const { hub, port } = await startHub(t, { clock, keepaliveMs: 15_000 });
  t.equal(clock.pending, 0);
  const s = await subscribe(port);
  await s.next();
  t.equal(clock.pending, 1);
  clock.advance(15_000);
  t.equal(await s.next(), '', 'an empty line');
  clock.advance(15_000);
  t.equal(await s.next(), '');
  t.equal(clock.pending, 1, 'one timer, re-armed');
  s.req.destroy();
  await new Promise<void>((r) => { const w = () => (hub.active ? setImmediate(w) : r()); w(); });
  t.equal(clock.pending, 0, 'no timer once nobody listens');
});

t.test('filter semantics', async (t) => {
  const f = (q: string) => parseTapFilter(new URLSearchParams(q));
  t.ok(tapMatches({}, event()), 'an empty filter matches everything');
  t.ok(tapMatches(f('namespace=demo'), event()));
  t.ok(tapMatches(f('namespace=legacy'), event({ source: { namespace: 'legacy' } })), 'by the source namespace');
  t.ok(tapMatches(f('namespace=demo'), event({ source: {}, destination: { service: 'demo/echo' } })), 'by the Service namespace');
  t.notOk(tapMatches(f('namespace=legacy'), event()));
  t.ok(tapMatches(f('service=demo/echo'), event()));
  t.ok(tapMatches(f('service=echo'), event()), 'by name');
  t.notOk(tapMatches(f('service=demo/frontend'), event()));
  t.notOk(tapMatches(f('service=echo'), event({ destination: { address: '10.0.2.3' } })), 'no Service: no match');
  t.ok(tapMatches(f('path=/api'), event()), 'a path prefix');
  t.notOk(tapMatches(f('path=/admin'), event()));
  t.notOk(tapMatches(f('path=/'), event({ kind: 'connection', path: undefined })), 'connections have no path');
  t.ok(tapMatches(f('status=5xx'), event({ status: 503 })));
  t.ok(tapMatches(f('status=5XX'), event({ status: 500 })), 'case-insensitive class');
  t.notOk(tapMatches(f('status=5xx'), event({ status: 404 })));
  t.ok(tapMatches(f('status=404'), event({ status: 404 })));
  t.notOk(tapMatches(f('status=404'), event({ status: 403 })));
  t.notOk(tapMatches(f('status=5xx'), event({ status: 0 })), 'no status sent: no status match');
  t.notOk(tapMatches(f('status=5xx'), event({ kind: 'connection', status: undefined })));
  t.ok(tapMatches(f('namespace=demo&service=echo&path=/api&status=2xx'), event()), 'every field must match');
  t.notOk(tapMatches(f('namespace=demo&service=echo&path=/api&status=5xx'), event()));
  t.same(f('namespace=&service=&path=&status='), {}, 'empty values are absent');
  for (const bad of ['status=5x', 'status=600', 'status=abc', 'path=api']) {
    let thrown: unknown;
    try { f(bad); } catch (err) { thrown = err; }
    t.ok(thrown instanceof TapFilterError, `${bad} refused`);
  }
});

t.test('publishing without subscribers does nothing; non-GET refused', async (t) => {
  const { hub, port } = await startHub(t);
  hub.publish(event());
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: TAP_PATH, method: 'POST' }, resolve);
    req.on('error', reject);
    req.end();
  });
  res.resume();
  t.equal(res.statusCode, 405);
  t.equal(hub.active, false);
});
