// Spans of the real waypoint L7 path (WaypointL7 over real sockets, real HTTP upstreams):
// a server span per request and a client span per attempt with the right parents, the
// attempt's id in the upstream traceparent, B3 accepted, a malformed traceparent
// replaced, and no span at all for an unsampled request.
import t from 'tap';
import type * as http from 'node:http';
import * as http2 from 'node:http2';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ProxyTelemetry } from '../src/telemetry/proxy-telemetry';
import { parseTraceparent } from '../src/telemetry/trace-context';
import type { SpanRecord } from '../src/telemetry/types';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function telemetry(sampling: number): ProxyTelemetry {
  return new ProxyTelemetry({
    proxy: 'waypoint demo/waypoint', registry: new Registry(), logger: pino({ level: 'silent' }),
    config: { traceSampling: sampling, traceBufferSpans: 64, otlpEndpoint: '', accessLogSampling: 1, accessLogLevels: {} },
  });
}

/** An upstream answering from a list of statuses (then 200), keeping each request's trace headers. */
async function scripted(t: Parameters<typeof httpUpstream>[0], statuses: number[]) {
  const seen: http.IncomingHttpHeaders[] = [];
  const up = await httpUpstream(t, (req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(statuses.shift() ?? 200);
      res.end();
    });
  });
  return { port: up.port, seen };
}

const byKind = (spans: SpanRecord[], kind: string) => spans.filter((s) => s.kind === kind);

t.test('a retried request: one server span (child of the caller), two attempt spans (children of it), each attempt upstream as its span', async (t) => {
  const tel = telemetry(0);
  const up = await scripted(t, [503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 2, backoffMs: 0 } }), { telemetry: tel });
  const r = await request(h.port, { path: '/hello?token=secret', headers: { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=1' } });
  t.equal(r.status, 200);
  const spans = tel.ring.query({ traceId: TRACE });
  const [server] = byKind(spans, 'server');
  const attempts = byKind(spans, 'client');
  t.ok(server, 'a server span');
  t.equal(attempts.length, 2, 'a client span per attempt');
  t.match(server, {
    traceId: TRACE, parentSpanId: PARENT, name: 'GET echo.demo', proxy: 'waypoint demo/waypoint',
    attributes: {
      'http.request.method': 'GET', 'url.path': '/hello', 'http.response.status_code': 200, 'server.address': 'echo.demo', 'weft.route': 'demo/echo',
      'weft.response_flags': '-', 'weft.destination_service': 'demo/echo', 'weft.attempts': 2, 'weft.source_principal': 'spiffe://cluster.local/ns/demo/sa/client',
      'weft.destination_principal': 'spiffe://cluster.local/ns/demo/sa/echo',
    },
  });
  t.notOk(JSON.stringify(server).includes('secret'), 'no query string in a span');
  t.equal(server!.error, undefined);
  t.match(attempts[0], { parentSpanId: server!.spanId, attributes: { 'weft.attempt': 1, 'http.response.status_code': 503 }, error: 'http 503' });
  t.match(attempts[1], { parentSpanId: server!.spanId, attributes: { 'weft.attempt': 2, 'http.response.status_code': 200 } });
  t.equal(attempts[1]!.error, undefined);
  t.ok(attempts[0]!.startMs >= server!.startMs && attempts[1]!.endMs <= server!.endMs, 'attempts inside the server span');
  t.same(up.seen.map((hd) => hd.traceparent), attempts.map((s) => `00-${TRACE}-${s.spanId}-01`), 'each attempt went upstream as its own span, sampled');
  t.same(up.seen.map((hd) => hd.tracestate), ['vendor=1', 'vendor=1'], 'tracestate passed on');
  t.match(h.records[0], { traceId: TRACE, sampled: true, spanId: server!.spanId });
  t.same(tel.ring.query({ service: 'demo/echo' }).length, 3, 'found by the destination Service');
  t.comment(`spans: ${spans.map((s) => `${s.kind} ${s.name} ${(s.endMs - s.startMs).toFixed(2)} ms`).join('; ')}`);
});

t.test('a failed attempt (connection refused) is a span with its flag, then the retry', async (t) => {
  const tel = telemetry(1);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [], attempts: 1, backoffMs: 0 } }), { telemetry: tel });
  h.dialer.failNext.set(up.port, 1);
  t.equal((await request(h.port)).status, 200);
  const attempts = byKind(tel.ring.query({}), 'client');
  t.same(attempts.map((s) => s.error), ['UF', undefined]);
});

t.test('B3 input is accepted (single and multi): the trace continues and goes upstream as W3C', async (t) => {
  const tel = telemetry(0);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
  await request(h.port, { headers: { b3: `a3ce929d0e0e4736-${PARENT}-1` } });
  const trace = `${'0'.repeat(16)}a3ce929d0e0e4736`;
  const [server] = byKind(tel.ring.query({ traceId: trace }), 'server');
  t.equal(server?.parentSpanId, PARENT, 'the B3 span is the parent');
  t.equal(parseTraceparent(up.seen[0]!.traceparent)?.traceId, trace);
  await request(h.port, { headers: { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' } });
  t.equal(byKind(tel.ring.query({ traceId: TRACE }), 'server')[0]?.parentSpanId, PARENT, 'multi-header B3 too');
});

t.test('a malformed traceparent is ignored and replaced (its tracestate dropped); the new trace is a root', async (t) => {
  const tel = telemetry(1);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
  await request(h.port, { headers: { traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01`, tracestate: 'vendor=1' } });
  const got = parseTraceparent(up.seen[0]!.traceparent);
  t.ok(got, 'the upstream got a valid traceparent');
  t.not(got!.traceId, TRACE.toLowerCase());
  t.equal(up.seen[0]!.tracestate, undefined);
  const [server] = byKind(tel.ring.query({ traceId: got!.traceId }), 'server');
  t.ok(server, 'sampled at the ratio (1)');
  t.notOk('parentSpanId' in server!, 'a root span');
});

t.test('not sampled: no spans; a caller\'s traceparent passes unchanged, a missing one is made (unsampled)', async (t) => {
  const tel = telemetry(0);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
  await request(h.port, { headers: { traceparent: `00-${TRACE}-${PARENT}-00`, tracestate: 'vendor=1' } });
  await request(h.port);
  t.same(tel.ring.query({}), [], 'no span');
  t.equal(up.seen[0]!.traceparent, `00-${TRACE}-${PARENT}-00`);
  t.equal(up.seen[0]!.tracestate, 'vendor=1');
  t.equal(parseTraceparent(up.seen[1]!.traceparent)?.sampled, false);
  t.equal(h.records[1]!.sampled, undefined);
  const tel1 = telemetry(1);
  const h1 = await startWaypoint(t, () => plan(up.port), { telemetry: tel1 });
  await request(h1.port, { headers: { traceparent: `00-${TRACE}-${PARENT}-00` } });
  t.same(tel1.ring.query({}), [], 'the caller\'s "not sampled" wins over the ratio');
});

t.test('a direct response (404 from the router) still has its server span', async (t) => {
  const tel = telemetry(1);
  const h = await startWaypoint(t, () => ({ kind: 'respond', status: 404, body: 'no route\n' }), { telemetry: tel });
  t.equal((await request(h.port)).status, 404);
  t.match(tel.ring.query({}), [{ kind: 'server', error: 'NR', attributes: { 'http.response.status_code': 404, 'weft.response_flags': 'NR' } }]);
});

t.test('span names carry no client free text: an unknown h2 method is HTTP, a request without a Service names no host', async (t) => {
  const tel = telemetry(1);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel, destination: { service: undefined } });
  await request(h.port, { headers: { host: 'client-minted-1.example' } });
  const session = http2.connect(`http://127.0.0.1:${h.port}`);
  t.teardown(() => session.close());
  await new Promise<void>((resolve, reject) => {
    const s = session.request({ ':method': 'BREW-42', ':path': '/pot', ':authority': 'client-minted-2.example' }, { endStream: true });
    s.on('response', () => s.resume());
    s.on('end', resolve);
    s.on('error', reject);
  });
  const servers = byKind(tel.ring.query({}), 'server');
  t.same(servers.map((s) => s.name), ['GET', 'HTTP']);
  t.notOk(JSON.stringify(servers.map((s) => s.name)).includes('client-minted'), 'no Host in a span name');
  t.match(servers[1]!.attributes, { 'http.request.method': '_OTHER', 'http.request.method_original': 'BREW-42' });
});
