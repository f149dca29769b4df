// `weft traces` (src/cli/commands/traces.ts, src/cli/trace-view.ts): spans from several
// proxies merged by trace id and joined parent to child across proxies, drawn as a
// waterfall; -o json is OTLP's shape. The frame is built against real HTTP servers on
// loopback standing in for a ztunnel's and a waypoint pod's metrics ports; one proxy not
// answering is a warning.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, waypointPod, waypointRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { collectSpans, selectTraces, tracesFrame } from '../src/cli/commands/traces';
import { formatSpanDuration, mergeSpans, renderWaterfall, spanBar, stitchTraces, traceTouches } from '../src/cli/trace-view';
import { renderFrame } from '../src/cli/output';
import type { SpanRecord } from '../src/telemetry/types';

const T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
const T2 = '0af7651916cd43dd8448eb211c80319c';
const AT = Date.parse('2026-12-01T01:00:00.000Z');

function s(traceId: string, spanId: string, parentSpanId: string | undefined, proxy: string, name: string, start: number, end: number, extra: Partial<SpanRecord> = {}): SpanRecord {
  return {
    traceId, spanId, ...(parentSpanId ? { parentSpanId } : {}), name, kind: 'client', startMs: AT + start, endMs: AT + end, proxy,
    attributes: {}, ...extra,
  };
}

/** demo/client → frontend.demo through the waypoint, frontend → echo.demo (its second attempt succeeds), as four proxies record it. */
const ZT1 = [
  s(T1, 'a000000000000001', 'c11e000000000001', 'ztunnel node-1', 'tunnel outbound demo/client → frontend.demo', 0, 40, { attributes: { 'weft.destination_service': 'demo/frontend' } }),
  s(T1, 'a000000000000005', 'b000000000000002', 'ztunnel node-1', 'tunnel inbound demo/frontend', 3, 37, { kind: 'server' }),
];
const WP = [
  s(T1, 'b000000000000001', 'a000000000000001', 'waypoint demo/waypoint', 'GET frontend.demo.svc.cluster.local/', 1, 39, { kind: 'server', attributes: { 'weft.destination_service': 'demo/frontend' } }),
  s(T1, 'b000000000000002', 'b000000000000001', 'waypoint demo/waypoint', 'attempt 1 198.19.1.5:8080', 2, 38),
  s(T1, 'b000000000000003', 'a000000000000006', 'waypoint demo/waypoint', 'GET echo.demo.svc.cluster.local/', 6, 34, { kind: 'server', attributes: { 'weft.destination_service': 'demo/echo' } }),
  s(T1, 'b000000000000004', 'b000000000000003', 'waypoint demo/waypoint', 'attempt 1 198.19.2.3:8080', 7, 12, { error: 'UF' }),
  s(T1, 'b000000000000005', 'b000000000000003', 'waypoint demo/waypoint', 'attempt 2 198.19.1.3:8080', 14, 33),
];
const ZT1b = [
  s(T1, 'a000000000000006', 'c11e000000000002', 'ztunnel node-1', 'tunnel outbound demo/frontend → echo.demo', 5, 35),
];
const OTHER = [s(T2, 'd000000000000001', undefined, 'waypoint demo/waypoint', 'GET echo.demo.svc.cluster.local/health', 100, 101.5, { kind: 'server', attributes: { 'weft.destination_service': 'demo/echo' } })];

t.test('spans of one request, from three proxy answers, make one tree joined across proxies', async (t) => {
  const merged = mergeSpans([ZT1, WP, [...ZT1b, ZT1[0]!], OTHER]);
  t.equal(merged.length, ZT1.length + WP.length + ZT1b.length + OTHER.length, 'a span two answers carry is kept once');
  const traces = stitchTraces(merged);
  t.same(traces.map((tr) => tr.traceId), [T1, T2], 'oldest first');
  const tr = traces[0]!;
  t.same(tr.roots.map((r) => r.span.spanId), ['a000000000000001', 'a000000000000006'], 'the two client-side ztunnel spans are roots (their parents are the apps\')');
  t.equal(tr.orphans, 2);
  t.same(tr.roots[0]!.children.map((c) => c.span.spanId), ['b000000000000001']);
  t.same(tr.roots[0]!.children[0]!.children[0]!.children.map((c) => c.span.proxy), ['ztunnel node-1'], 'the attempt\'s child is the inbound tunnel at the destination\'s ztunnel');
  t.same(tr.spans.map((x) => x.spanId), [
    'a000000000000001', 'b000000000000001', 'b000000000000002', 'a000000000000005',
    'a000000000000006', 'b000000000000003', 'b000000000000004', 'b000000000000005',
  ], 'depth first, children by start');
  t.equal(tr.errors, 1);
  t.same(tr.proxies, ['waypoint demo/waypoint', 'ztunnel node-1']);
  t.equal(tr.endMs - tr.startMs, 40);
  t.ok(traceTouches(tr, 'demo/echo'));
  t.notOk(traceTouches(tr, 'legacy/echo'));
});

t.test('a span id loop (a broken peer) still ends, each span drawn once', async (t) => {
  const loop = [s(T1, '1111111111111111', '2222222222222222', 'ztunnel node-1', 'a', 0, 2), s(T1, '2222222222222222', '1111111111111111', 'ztunnel node-1', 'b', 1, 2),
    s(T1, '3333333333333333', '3333333333333333', 'ztunnel node-1', 'self', 0, 1)];
  const [tr] = stitchTraces(loop);
  t.equal(tr!.spans.length, 3);
});

t.test('bars and durations', async (t) => {
  t.equal(spanBar({ startMs: 0, endMs: 10 }, 0, 10, 10), '██████████');
  t.equal(spanBar({ startMs: 5, endMs: 10 }, 0, 10, 10), '     █████');
  t.equal(spanBar({ startMs: 2, endMs: 2 }, 0, 10, 10), '  █       ', 'an instant is one column');
  t.equal(spanBar({ startMs: 3, endMs: 3 }, 3, 3, 4), '████', 'a trace of no length is one full bar');
  t.equal(formatSpanDuration(0.421), '0.42 ms');
  t.equal(formatSpanDuration(12.34), '12.3 ms');
  t.equal(formatSpanDuration(250), '250 ms');
  t.equal(formatSpanDuration(1250), '1.25 s');
});

t.test('the waterfall: a heading per trace, the tree, proxies, durations, bars on the trace\'s span, errors marked', async (t) => {
  const [tr] = stitchTraces(mergeSpans([ZT1, WP, ZT1b]));
  const text = renderWaterfall(tr!, { barWidth: 20 });
  t.comment(`\n${text}`);
  const lines = text.trimEnd().split('\n');
  t.match(lines[0], new RegExp(`^trace ${T1}   2026-12-01T01:00:00.000Z · 40.0 ms · 8 spans · 2 proxies · 1 error · 2 spans with a parent`));
  t.equal(lines.length, 9);
  t.match(lines[1], /^  tunnel outbound demo\/client → frontend.demo\s+ztunnel node-1\s+40.0 ms   │████████████████████│$/);
  t.match(lines[2], /^  └─ GET frontend.demo.svc.cluster.local\/\s+waypoint demo\/waypoint\s+38.0 ms   │████████████████████│$/, 'a span is never drawn shorter than it is');
  t.match(lines[3], /^     └─ attempt 1 198.19.1.5:8080 /);
  t.match(lines[4], /^        └─ tunnel inbound demo\/frontend /);
  t.match(lines[6], /^  └─ GET echo.demo.svc.cluster.local\//);
  t.match(lines[7], /^     ├─ attempt 1 198.19.2.3:8080 .* 5.0 ms   │   ███              │ ✗ UF$/);
  t.match(lines[8], /^     └─ attempt 2 198.19.1.3:8080 .*│       ██████████   │$/);
  const widths = new Set(lines.slice(1).map((l) => l.indexOf('│')));
  t.equal(widths.size, 1, 'the bars line up');
});

t.test('selection: by Service, the newest N', async (t) => {
  const spans = mergeSpans([ZT1, WP, ZT1b, OTHER]);
  t.same(selectTraces(spans, { service: 'demo/frontend', limit: 10 }).map((x) => x.traceId), [T1]);
  t.same(selectTraces(spans, { service: 'demo/echo', limit: 10 }).map((x) => x.traceId), [T1, T2]);
  t.same(selectTraces(spans, { service: '', limit: 1 }).map((x) => x.traceId), [T2], 'the newest');
});

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

async function proxyServer(host: string, port: number, spans: SpanRecord[], seen: string[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    seen.push(`${host} ${req.url}`);
    const url = new URL(req.url!, 'http://x');
    if (url.pathname !== '/debug/traces') { res.writeHead(404); return void res.end(); }
    const since = Number(url.searchParams.get('since'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify([...spans.filter((x) => x.endMs >= since), { junk: true }]));
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return server;
}

t.test('the frame asks every ztunnel and ready waypoint pod; a silent proxy is a warning; -o json is OTLP', async (t) => {
  const seen: string[] = [];
  const zt = await proxyServer('127.0.0.1', 0, [...ZT1, ...ZT1b], seen);
  t.teardown(() => zt.close());
  const port = (zt.address() as AddressInfo).port;
  const wpServer = await proxyServer('127.0.0.2', port, [...WP, ...OTHER], seen);
  t.teardown(() => wpServer.close());
  const wp = waypointRecord({ namespace: 'demo', name: 'waypoint' });
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges([
    put('namespace', ambientNamespace('demo')),
    put('waypoint', wp),
    put('workload', waypointPod(wp, { name: 'waypoint', node: 'node-2', addresses: ['127.0.0.2'] })),
  ], 1);
  const ctx = { nodes: [{ name: 'node-1', address: '127.0.0.1' }, { name: 'node-2', address: '127.0.0.3' }] };
  const now = AT + 60_000;
  const frame = await tracesFrame(ctx, state, { service: 'demo/frontend', sinceMs: 300_000, traceId: '', limit: 10 }, now, port);
  t.same(seen.sort(), [`127.0.0.1 /debug/traces?since=${now - 300_000}`, `127.0.0.2 /debug/traces?since=${now - 300_000}`]);
  t.match(frame.warnings, [
    /ztunnel node-1 \(http:\/\/127\.0\.0\.1:\d+\): 1 of 4 spans in another shape were skipped/,
    /ztunnel node-2 \(http:\/\/127\.0\.0\.3:\d+\): not answering/,
    /waypoint demo\/waypoint pod waypoint \(http:\/\/127\.0\.0\.2:\d+\): 1 of 7 spans/,
  ].sort((a, b) => (a.source < b.source ? -1 : 1)));
  t.equal(frame.exitCode, 0);
  const out = renderFrame(frame, 'table');
  t.comment(`\n${out.stdout}`);
  t.match(out.stdout, new RegExp(`^trace ${T1} `));
  t.notMatch(out.stdout, T2, 'the other trace never reached demo/frontend');
  t.match(out.stderr, /warning: ztunnel node-2 .* not answering/);

  const json = JSON.parse(renderFrame(frame, 'json').stdout) as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { traceId: string; parentSpanId: string }[] }[] }[] };
  t.equal(json.resourceSpans.length, 2, 'one resource per proxy');
  const names = json.resourceSpans.map((rs) => rs.resource.attributes.find((a) => a.key === 'service.name')!.value.stringValue).sort();
  t.same(names, ['weft-waypoint', 'weft-ztunnel']);
  t.equal(json.resourceSpans.flatMap((rs) => rs.scopeSpans[0]!.spans).length, 8);

  const none = await tracesFrame(ctx, state, { service: 'legacy/echo', sinceMs: 300_000, traceId: '', limit: 10 }, now, port);
  t.match(renderFrame(none, 'table').stdout, /No sampled traces to legacy\/echo in the last 5m \(of 2\/3 proxies answering\)/);
});

t.test('collectSpans passes the trace id; nothing to ask is no warning', async (t) => {
  const seen: string[] = [];
  const zt = await proxyServer('127.0.0.1', 0, ZT1, seen);
  t.teardown(() => zt.close());
  const base = `http://127.0.0.1:${(zt.address() as AddressInfo).port}`;
  const got = await collectSpans([{ kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: base }], { traceId: T1 });
  t.same(seen, [`127.0.0.1 /debug/traces?trace=${T1}`]);
  t.equal(got.spans.length, 2);
  t.same(await collectSpans([], {}), { spans: [], warnings: [], asked: 0, answered: 0 });
});
