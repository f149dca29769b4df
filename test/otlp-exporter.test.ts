// The OTLP/gRPC span exporter against a real grpc-js collector (test/helpers/otlp-collector.ts,
// the same vendored opentelemetry-proto files): spans arrive in OTLP's shape with the
// proxy's resource; batches leave full or on the interval; and a collector that is
// unreachable or never answers costs dropped spans (counted), a bounded queue, one
// export in flight, and one log line a minute, never time on onSpan. Timers and the log
// rate run on a ManualClock; only the gRPC calls take real time.
import t, { type Test } from 'tap';
import { Registry } from 'prom-client';
import pino from 'pino';
import { OtlpExporter, grpcTarget } from '../src/telemetry/otlp-exporter';
import type { SpanRecord } from '../src/telemetry/types';
import { ManualClock } from './helpers/clock';
import { LogLines } from './helpers/log-lines';
import { OtlpTestCollector, closedPort } from './helpers/otlp-collector';
import { waitFor } from './helpers/wait';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

function span(i: number, over: Partial<SpanRecord> = {}): SpanRecord {
  return {
    traceId: TRACE, spanId: (0x1000 + i).toString(16).padStart(16, '0'), parentSpanId: '00f067aa0ba902b7',
    name: `GET echo.demo.svc.cluster.local/ #${i}`, kind: 'server', startMs: 1_764_550_000_000.25 + i, endMs: 1_764_550_000_012.5 + i,
    proxy: 'waypoint demo/waypoint', attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200, 'weft.retried': false }, ...over,
  };
}

async function sample(reg: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return (v?.value as number | undefined) ?? 0;
}

function rig(t: Test, endpoint: string, over: Partial<ConstructorParameters<typeof OtlpExporter>[0]> = {}) {
  const clock = new ManualClock(1_764_550_000_000);
  const registry = new Registry();
  const log = new LogLines();
  const exporter = new OtlpExporter({
    endpoint, proxy: 'waypoint demo/waypoint', registry, logger: pino({ level: 'info' }, log), clock,
    batchSize: 4, maxQueueSpans: 16, intervalMs: 1000, timeoutMs: 10_000, random: () => 1, ...over,
  });
  t.teardown(() => exporter.close());
  return { clock, registry, log, exporter };
}

t.test('the endpoint becomes a grpc-js target', async (t) => {
  t.same(grpcTarget('http://otel-collector.observability:4317'), { target: 'otel-collector.observability:4317', secure: false });
  t.same(grpcTarget('https://collector.example'), { target: 'collector.example:4317', secure: true });
  t.same(grpcTarget('http://[::1]:14317'), { target: '[::1]:14317', secure: false });
});

t.test('a collector receives the spans in OTLP shape, with the proxy as the resource', async (t) => {
  const collector = new OtlpTestCollector();
  const endpoint = await collector.start();
  t.teardown(() => collector.stop());
  const { clock, registry, exporter } = rig(t, endpoint);

  exporter.onSpan(span(1));
  exporter.onSpan(span(2, { kind: 'client', parentSpanId: undefined, error: 'UF' }));
  t.equal(collector.calls, 0, 'a partial batch waits for the interval');
  clock.advance(999);
  t.equal(exporter.queued, 2, 'not yet');
  clock.advance(1);
  await waitFor('2 spans exported', async () => (await sample(registry, 'weft_otlp_spans_exported_total')) === 2);
  const [a, b] = collector.spans;
  t.equal(a!.traceId, TRACE);
  t.equal(a!.spanId, '0000000000001001');
  t.equal(a!.parentSpanId, '00f067aa0ba902b7');
  t.equal(a!.kind, 2, 'SPAN_KIND_SERVER');
  t.equal(a!.startTimeUnixNano, '1764550000001250000', 'epoch ns, every digit kept');
  t.equal(a!.endTimeUnixNano, '1764550000013500000');
  t.same(a!.attributes, { 'http.request.method': 'GET', 'http.response.status_code': '200', 'weft.retried': false });
  t.same(a!.status, { code: 0, message: '' });
  t.match(a!.resource, { 'service.name': 'weft-waypoint', 'weft.proxy.name': 'demo/waypoint', 'weft.proxy.kind': 'waypoint', 'k8s.namespace.name': 'demo' });
  t.equal(a!.scope.name, 'weft');
  t.equal(b!.kind, 3, 'SPAN_KIND_CLIENT');
  t.equal(b!.parentSpanId, '', 'a root span has no parent');
  t.same(b!.status, { code: 2, message: 'UF' }, 'STATUS_CODE_ERROR with the response flag');

  // A full batch leaves at once (on a zero timer, not on onSpan's stack).
  for (let i = 10; i < 14; i++) exporter.onSpan(span(i));
  t.equal(collector.calls, 1, 'not sent from inside onSpan');
  clock.advance(0);
  await waitFor('the full batch', () => collector.spans.length === 6);
  t.equal(collector.calls, 2);

  // close() sends what is left.
  exporter.onSpan(span(20));
  await exporter.close();
  t.equal(collector.spans.length, 7, 'close flushed the queue');
  t.equal(await sample(registry, 'weft_otlp_spans_exported_total'), 7);
});

t.test('spans the collector rejects (partial success) are counted as dropped', async (t) => {
  const collector = new OtlpTestCollector();
  collector.mode = { rejectEvery: 2 };
  const endpoint = await collector.start();
  t.teardown(() => collector.stop());
  const { clock, registry, log, exporter } = rig(t, endpoint);
  for (let i = 0; i < 4; i++) exporter.onSpan(span(i));
  clock.advance(0);
  await waitFor('the batch answered', async () => (await sample(registry, 'weft_otlp_spans_exported_total')) === 2);
  t.equal(await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'rejected' }), 2);
  t.equal(log.lines.length, 1);
  t.match(log.lines[0], { msg: 'OTLP collector rejected spans', rejected: 2, dropped: 2, reason: 'test collector rejects some spans' });
});

t.test('an unreachable collector: onSpan stays cheap, the queue bounded, drops counted, one log line a minute, backoff', async (t) => {
  const port = await closedPort();
  const { clock, registry, log, exporter } = rig(t, `http://127.0.0.1:${port}`);
  const N = 200_000;
  const spans = Array.from({ length: N }, (_, i) => span(i));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 1000; i++) exporter.onSpan(spans[i]!);
  const t1 = process.hrtime.bigint();
  for (let i = 1000; i < N; i++) exporter.onSpan(spans[i]!);
  const t2 = process.hrtime.bigint();
  t.comment(`onSpan: ${(Number(t1 - t0) / 1000).toFixed(0)} ns/span for the first 1000 (queue filling), ${(Number(t2 - t1) / (N - 1000)).toFixed(0)} ns/span for the next ${N - 1000} (queue full, dropped)`);
  t.equal(exporter.queued, 16, 'the queue stops at its bound');
  t.equal(await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'queue_full' }), N - 16);
  t.equal(await sample(registry, 'weft_otlp_queue_spans'), 16);

  clock.advance(0); // the full batch's timer
  await waitFor('the first export failed', async () => (await sample(registry, 'weft_otlp_export_failures_total', { code: 'UNAVAILABLE' })) === 1);
  t.equal(await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'export_failed' }), 4, 'a failed batch is dropped, not retried');
  t.equal(log.lines.length, 1, 'one line');
  t.match(log.lines[0], { level: 40, msg: /OTLP export failed/, code: 'UNAVAILABLE', dropped: N - 16 + 4, endpoint: `http://127.0.0.1:${port}` });

  // Failures back off: 1 s, 2 s, 4 s, ... (random 1 = the full step), armed on the clock.
  const delays: number[] = [];
  for (let n = 2; n <= 4; n++) {
    delays.push(clock.runNext());
    await waitFor(`export ${n} failed`, async () => (await sample(registry, 'weft_otlp_export_failures_total', { code: 'UNAVAILABLE' })) === n);
  }
  t.same(delays, [1000, 2000, 4000], 'backoff between exports after failures');
  t.equal(log.lines.length, 1, 'no second line within the minute');
  t.equal(exporter.queued, 0, 'the queue drained into failed exports');

  // New spans after a failure wait for the backoff: onSpan does not start an export.
  for (let i = 0; i < 8; i++) exporter.onSpan(span(i));
  clock.advance(60_000);
  await waitFor('export 5 failed', async () => (await sample(registry, 'weft_otlp_export_failures_total', { code: 'UNAVAILABLE' })) === 5);
  t.equal(log.lines.length, 2, 'a minute later, the next line');
  t.match(log.lines[1], { dropped: 4 * 3 + 4, suppressed: 3 }, 'it carries the spans dropped since the last line and the lines held back');
});

t.test('a collector that never answers: one export in flight, the deadline ends it, the queue stays bounded', async (t) => {
  const collector = new OtlpTestCollector();
  collector.mode = 'hang';
  const endpoint = await collector.start();
  t.teardown(() => collector.stop());
  // A deadline the loop below ends well before, even on a loaded machine (the wait for it is this test's cost).
  const { clock, registry, log, exporter } = rig(t, endpoint, { timeoutMs: 2000 });
  const spans = Array.from({ length: 100_000 }, (_, i) => span(i));
  for (let i = 0; i < 4; i++) exporter.onSpan(span(i));
  clock.advance(0);
  await waitFor('the export reached the collector', () => collector.calls === 1);
  const t0 = process.hrtime.bigint();
  for (const s of spans) exporter.onSpan(s);
  const t1 = process.hrtime.bigint();
  t.comment(`onSpan with an export hanging: ${(Number(t1 - t0) / 100_000).toFixed(0)} ns/span`);
  clock.advance(10_000);
  t.equal(collector.calls, 1, 'no second export while one is in flight');
  t.equal(exporter.queued, 16);
  t.equal(await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'queue_full' }), 100_000 - 16);
  await waitFor('the deadline ended the export', async () => (await sample(registry, 'weft_otlp_export_failures_total', { code: 'DEADLINE_EXCEEDED' })) === 1);
  t.equal(await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'export_failed' }), 4);
  t.equal(log.lines.length, 1);
  t.match(log.lines[0], { msg: /did not answer in time/, code: 'DEADLINE_EXCEEDED' });
});

t.test('close() with an unreachable collector returns promptly and drops the rest', async (t) => {
  const port = await closedPort();
  const { exporter } = rig(t, `http://127.0.0.1:${port}`);
  for (let i = 0; i < 10; i++) exporter.onSpan(span(i));
  const t0 = Date.now();
  await exporter.close();
  t.comment(`close with an unreachable collector: ${Date.now() - t0} ms`);
  exporter.onSpan(span(99));
  t.ok(exporter.queued <= 10, 'no span taken after close');
});

t.test('close() with an export hanging does not wait for its deadline: the wait is bounded as a whole', async (t) => {
  const collector = new OtlpTestCollector();
  collector.mode = 'hang';
  const endpoint = await collector.start();
  t.teardown(() => collector.stop());
  const { clock, registry, exporter } = rig(t, endpoint, { timeoutMs: 20_000 });
  for (let i = 0; i < 4; i++) exporter.onSpan(span(i));
  clock.advance(0);
  await waitFor('the export reached the collector', () => collector.calls === 1);
  for (let i = 4; i < 10; i++) exporter.onSpan(span(i));
  const t0 = Date.now();
  await exporter.close();
  t.comment(`close with a hung collector (export deadline 20 s): ${Date.now() - t0} ms`);
  t.equal(await sample(registry, 'weft_otlp_export_failures_total', { code: 'DEADLINE_EXCEEDED' }), 0, 'close returned before the hung export\'s deadline');
});
