// Weft's spans in OTLP's JSON shape (src/telemetry/otlp-shape.ts), which `weft traces -o
// json` prints and the OTLP/gRPC exporter sends: ids, times to the nanosecond, kinds,
// attribute types, error status, one resource per proxy.
import t from 'tap';
import { msToUnixNanos, otlpTraces, proxyParts, proxyResource } from '../src/telemetry/otlp-shape';
import type { SpanRecord } from '../src/telemetry/types';

const base: SpanRecord = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', name: 'tunnel outbound', kind: 'client',
  startMs: 1_764_550_000_000.5, endMs: 1_764_550_000_010.125, proxy: 'ztunnel node-1', attributes: { 'network.peer.address': '198.19.1.3', 'weft.bytes': 1.5 },
};

t.test('epoch milliseconds become nanosecond strings at microsecond resolution', async (t) => {
  t.equal(msToUnixNanos(1_764_550_000_000), '1764550000000000000');
  t.equal(msToUnixNanos(1_764_550_000_000.5), '1764550000000500000');
  // Doubles of epoch ms step by 2^-12 ms (~0.24 µs) today: exact fractions here.
  t.equal(msToUnixNanos(1_764_550_000_010.125), '1764550000010125000');
  t.equal(msToUnixNanos(1_764_550_000_010 + 1 - 2 ** -12), '1764550000010999000', 'never rounds up into the next millisecond');
  t.equal(msToUnixNanos(0), '0');
  t.equal(msToUnixNanos(Number.NaN), '0');
});

t.test('the proxy name splits into kind and name', async (t) => {
  t.same(proxyParts('waypoint demo/waypoint'), { kind: 'waypoint', name: 'demo/waypoint' });
  t.same(proxyParts('ztunnel node-1'), { kind: 'ztunnel', name: 'node-1' });
  t.same(proxyParts('something else'), { kind: 'proxy', name: 'something else' });
  const zt = Object.fromEntries(proxyResource('ztunnel node-1').map((kv) => [kv.key, kv.value]));
  t.same(zt['service.name'], { stringValue: 'weft-ztunnel' });
  t.same(zt['k8s.node.name'], { stringValue: 'node-1' });
});

t.test('spans are grouped by proxy, one resource each, in OTLP/JSON encoding', async (t) => {
  const spans: SpanRecord[] = [
    base,
    { ...base, spanId: '1111111111111111', parentSpanId: '00f067aa0ba902b7', kind: 'server', name: 'GET echo.demo.svc.cluster.local/', proxy: 'waypoint demo/waypoint', attributes: { 'http.response.status_code': 503 }, error: 'UF' },
    { ...base, spanId: '2222222222222222', kind: 'internal' },
  ];
  const out = otlpTraces(spans);
  t.equal(out.resourceSpans.length, 2);
  const [zt, wp] = out.resourceSpans;
  t.equal(zt!.scopeSpans[0]!.spans.length, 2);
  t.equal(zt!.scopeSpans[0]!.scope.name, 'weft');
  t.same(zt!.scopeSpans[0]!.spans[0], {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', parentSpanId: '', name: 'tunnel outbound', kind: 3,
    startTimeUnixNano: '1764550000000500000', endTimeUnixNano: '1764550000010125000',
    attributes: [{ key: 'network.peer.address', value: { stringValue: '198.19.1.3' } }, { key: 'weft.bytes', value: { doubleValue: 1.5 } }],
    status: { code: 0 },
  });
  t.equal(zt!.scopeSpans[0]!.spans[1]!.kind, 1, 'SPAN_KIND_INTERNAL');
  const w = wp!.scopeSpans[0]!.spans[0]!;
  t.equal(w.kind, 2);
  t.equal(w.parentSpanId, '00f067aa0ba902b7');
  t.same(w.attributes, [{ key: 'http.response.status_code', value: { intValue: '503' } }]);
  t.same(w.status, { code: 2, message: 'UF' });
  t.same(JSON.parse(JSON.stringify(out)), out, 'plain JSON');
});
