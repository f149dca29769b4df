import t from 'tap';
import { extractContext, formatTraceparent, newSpanId, newTraceId, parseB3Multi, parseB3Single, parseTraceparent } from '../src/telemetry/trace-context';
import { traceRequest, Tracer } from '../src/telemetry/tracer';
import { SpanRing } from '../src/telemetry/span-ring';
import type { SpanRecord } from '../src/telemetry/types';
import { traceQuery } from '../src/telemetry/proxy-telemetry';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

t.test('parseTraceparent: W3C version 00 exactly, future versions by their first fields, the invalid ones refused', async (t) => {
  t.same(parseTraceparent(`00-${TRACE}-${PARENT}-01`), { traceId: TRACE, parentId: PARENT, sampled: true });
  t.same(parseTraceparent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, parentId: PARENT, sampled: false });
  t.equal(parseTraceparent(`00-${TRACE}-${PARENT}-03`)?.sampled, true, 'other flag bits do not hide the sampled bit');
  t.same(parseTraceparent(`cc-${TRACE}-${PARENT}-01-what-comes-next`), { traceId: TRACE, parentId: PARENT, sampled: true }, 'a higher version: first four fields');
  for (const bad of [
    `ff-${TRACE}-${PARENT}-01`, `00-${'0'.repeat(32)}-${PARENT}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`, `00-${TRACE.toUpperCase()}-${PARENT}-01`,
    `00-${TRACE}-${PARENT}-01-extra`, `00-${TRACE}-${PARENT}-0x`, `00-${TRACE}-${PARENT}`, 'garbage', '', `cc-${TRACE}-${PARENT}-01x`,
  ]) t.equal(parseTraceparent(bad), undefined, bad);
  t.equal(parseTraceparent([`00-${TRACE}-${PARENT}-01`, 'x']), undefined, 'two traceparents: neither is trusted');
  t.equal(formatTraceparent(TRACE, PARENT, true), `00-${TRACE}-${PARENT}-01`);
  t.equal(formatTraceparent(TRACE, PARENT, false), `00-${TRACE}-${PARENT}-00`);
  t.match(newTraceId(), /^[0-9a-f]{32}$/);
  t.match(newSpanId(), /^[0-9a-f]{16}$/);
});

t.test('B3: single header (with 64-bit ids widened, a lone decision) and the x-b3-* headers', async (t) => {
  t.same(parseB3Single(`${TRACE}-${PARENT}-1`), { traceId: TRACE, parentId: PARENT, sampled: true });
  t.same(parseB3Single(`a3ce929d0e0e4736-${PARENT}-0-05e3ac9a4f6e3b90`), { traceId: `${'0'.repeat(16)}a3ce929d0e0e4736`, parentId: PARENT, sampled: false });
  t.same(parseB3Single(`${TRACE}-${PARENT}`), { traceId: TRACE, parentId: PARENT, sampled: undefined }, 'no sampling state: deferred');
  t.same(parseB3Single(`${TRACE}-${PARENT}-d`), { traceId: TRACE, parentId: PARENT, sampled: true }, 'debug samples');
  t.same(parseB3Single('0'), { sampled: false });
  for (const bad of ['x', `${TRACE}-nothex`, `${TRACE}-${PARENT}-7`, `${TRACE}-${PARENT}-1-${PARENT}-more`]) t.equal(parseB3Single(bad), undefined, bad);
  t.same(parseB3Multi({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' }), { traceId: TRACE, parentId: PARENT, sampled: true });
  t.same(parseB3Multi({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-flags': '1', 'x-b3-sampled': '0' })?.sampled, true, 'debug flag samples');
  t.equal(parseB3Multi({ 'x-b3-traceid': TRACE }), undefined);
  t.same(extractContext({ traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: ['a=1', 'b=2'], b3: '0' }).context?.tracestate, 'a=1,b=2', 'traceparent wins, tracestates joined');
  t.equal(extractContext({ traceparent: 'bad', b3: `${TRACE}-${PARENT}-1` }).context?.parentId, PARENT, 'a bad traceparent falls back to B3');
});

function tracer(sampling: number, random = () => 0.5, sinks: SpanRecord[] = []) {
  let now = 1000;
  return new Tracer({ proxy: 'waypoint demo/waypoint', sampling, sinks: [{ onSpan: (s) => sinks.push(s) }], random, now: () => (now += 1) });
}

t.test('parent-based ratio sampling: the caller is followed; no caller, or one that deferred, goes by the ratio', async (t) => {
  let draws = 0;
  const r = (x: number) => () => { draws++; return x; };
  t.equal(tracer(0.01, r(0.99)).decide(true), true, 'sampled parent: sampled whatever the ratio');
  t.equal(tracer(1, r(0)).decide(false), false, 'unsampled parent: not sampled whatever the ratio');
  t.equal(tracer(0.25, r(0.2)).decide(undefined), true);
  t.equal(tracer(0.25, r(0.3)).decide(undefined), false);
  draws = 0;
  t.equal(tracer(0, r(0)).decide(undefined), false);
  t.equal(tracer(1, r(0.999)).decide(undefined), true);
  t.equal(draws, 0, '0 and 1 draw no random number');
});

t.test('traceRequest: valid W3C kept with its tracestate; malformed replaced (tracestate dropped); B3 continued; new traces at the ratio', async (t) => {
  const h1: Record<string, string | string[] | undefined> = { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'v=1' };
  t.same(traceRequest(h1, tracer(0)), { traceId: TRACE, parentId: PARENT, sampled: true });
  t.same(h1, { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'v=1' }, 'passed on unchanged');

  const h2: Record<string, string | string[] | undefined> = { traceparent: '00-nonsense', tracestate: 'v=1' };
  const r2 = traceRequest(h2, tracer(1));
  t.equal(r2.sampled, true);
  t.equal(r2.parentId, undefined, 'a malformed parent is no parent');
  t.equal(parseTraceparent(h2.traceparent)?.traceId, r2.traceId, 'replaced by a valid one');
  t.equal(h2.tracestate, undefined, 'its tracestate went with it');

  const h3: Record<string, string | string[] | undefined> = { b3: `a3ce929d0e0e4736-${PARENT}-1` };
  const r3 = traceRequest(h3, tracer(0));
  t.same(r3, { traceId: `${'0'.repeat(16)}a3ce929d0e0e4736`, parentId: PARENT, sampled: true }, 'B3 accepted, its decision followed');
  t.equal(h3.traceparent, `00-${r3.traceId}-${PARENT}-01`, 'and sent on as W3C');

  const h4: Record<string, string | string[] | undefined> = {};
  const r4 = traceRequest(h4, undefined);
  t.equal(r4.sampled, false, 'no tracer: nothing sampled');
  t.equal(parseTraceparent(h4.traceparent)?.sampled, false, 'but a traceparent is made');
  t.equal(traceRequest({ b3: '1' }, tracer(0)).sampled, true, 'a lone B3 decision is followed');
});

t.test('Tracer: spans carry their ids, parent, proxy and times; end hands them to every sink; a throwing sink breaks nothing', async (t) => {
  const got: SpanRecord[] = [];
  const tr = new Tracer({ proxy: 'ztunnel node-1', sampling: 1, sinks: [{ onSpan: () => { throw new Error('x'); } }, { onSpan: (s) => got.push(s) }], now: () => 5 });
  const s = tr.start(TRACE, PARENT, 'GET echo', 'server', { 'url.path': '/' });
  t.match(s.spanId, /^[0-9a-f]{16}$/);
  tr.end(s, 'UF');
  t.same(got, [{ traceId: TRACE, spanId: s.spanId, parentSpanId: PARENT, name: 'GET echo', kind: 'server', startMs: 5, endMs: 5, proxy: 'ztunnel node-1', attributes: { 'url.path': '/' }, error: 'UF' }]);
  t.notOk('parentSpanId' in tr.start(TRACE, undefined, 'root', 'server'), 'a root span has no parent field');
});

function span(i: number, traceId: string, service?: string): SpanRecord {
  return { traceId, spanId: i.toString(16).padStart(16, '0'), name: `s${i}`, kind: 'server', startMs: i, endMs: i, proxy: 'p', attributes: service ? { 'weft.destination_service': service } : {} };
}

t.test('SpanRing: bounded (oldest dropped), queried by trace, time, Service (whole traces) and limit (newest)', async (t) => {
  const ring = new SpanRing(4);
  const A = 'a'.repeat(32);
  const B = 'b'.repeat(32);
  for (let i = 1; i <= 6; i++) ring.onSpan(span(i, i % 2 ? A : B, i === 4 ? 'demo/echo' : undefined));
  t.same(ring.query({}).map((s) => s.name), ['s3', 's4', 's5', 's6'], 'the 4 newest, oldest first');
  t.same(ring.query({ traceId: A }).map((s) => s.name), ['s3', 's5']);
  t.same(ring.query({ sinceMs: 5 }).map((s) => s.name), ['s5', 's6']);
  t.same(ring.query({ service: 'demo/echo' }).map((s) => s.name), ['s4', 's6'], 'every span of the traces that touched the Service');
  t.same(ring.query({ service: 'demo/other' }), []);
  t.same(ring.query({ limit: 2 }).map((s) => s.name), ['s5', 's6']);
  t.equal(ring.added, 6);
  const none = new SpanRing(0);
  none.onSpan(span(1, A));
  t.same(none.query({}), [], 'capacity 0 keeps nothing');
  const ring2 = new SpanRing(3);
  ring2.onSpan(span(1, A));
  t.same(ring2.query({}).map((s) => s.name), ['s1'], 'not yet full');
});

t.test('GET /debug/traces query: since as epoch ms or as a duration back from now; bad values ignored', async (t) => {
  const now = 1_764_550_000_000;
  const q = (s: string) => traceQuery(new URL(`http://p/debug/traces?${s}`), now);
  t.same(q('since=5m'), { sinceMs: now - 300_000 }, 'a duration, as the docs say');
  t.same(q('since=1764549000000&limit=10&service=demo/echo'), { sinceMs: 1_764_549_000_000, limit: 10, service: 'demo/echo' });
  t.same(q('since=soon&limit=-1&trace=XYZ'), {});
});
