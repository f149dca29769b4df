// A real waypoint L7 path (WaypointL7 over real sockets, a real HTTP upstream) with its
// ProxyTelemetry exporting to a real OTLP/gRPC collector (test/helpers/otlp-collector.ts):
// the collector receives the request's server span and one client span per attempt, with
// their parents and the waypoint as the resource; with the collector unreachable the
// requests are answered all the same, and the spans are counted as dropped.
import t from 'tap';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ProxyTelemetry } from '../src/telemetry/proxy-telemetry';
import { OtlpTestCollector, closedPort } from './helpers/otlp-collector';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';
import { waitFor } from './helpers/wait';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function telemetry(otlpEndpoint: string, registry: Registry): ProxyTelemetry {
  return new ProxyTelemetry({
    proxy: 'waypoint demo/waypoint', registry, logger: pino({ level: 'silent' }),
    config: { traceSampling: 1, traceBufferSpans: 64, otlpEndpoint, accessLogSampling: 1, accessLogLevels: {} },
  });
}

async function sample(reg: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return (v?.value as number | undefined) ?? 0;
}

t.test('a retried request through the waypoint arrives at the collector as a server span and two attempts', async (t) => {
  const collector = new OtlpTestCollector();
  const endpoint = await collector.start();
  t.teardown(() => collector.stop());
  const registry = new Registry();
  const tel = telemetry(endpoint, registry);
  t.teardown(() => tel.close());
  const statuses = [503];
  const up = await httpUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(statuses.shift() ?? 200);
      res.end();
    });
  });
  const h = await startWaypoint(t, () => plan(up.port, { retry: { codes: [503], attempts: 2, backoffMs: 0 } }), { telemetry: tel });
  t.equal((await request(h.port, { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } })).status, 200);
  await waitFor('3 spans at the collector (the exporter sends every second)', () => collector.spans.length === 3);
  const server = collector.spans.find((s) => s.kind === 2)!;
  const attempts = collector.spans.filter((s) => s.kind === 3);
  t.match(server, { traceId: TRACE, parentSpanId: PARENT, name: 'GET echo.demo', resource: { 'service.name': 'weft-waypoint', 'weft.proxy.name': 'demo/waypoint' } });
  t.match(server.attributes, { 'weft.destination_service': 'demo/echo', 'http.response.status_code': '200', 'weft.attempts': '2' });
  t.same(attempts.map((a) => a.parentSpanId), [server.spanId, server.spanId]);
  t.same(attempts.map((a) => a.status), [{ code: 2, message: 'http 503' }, { code: 0, message: '' }], 'the failed attempt is an error span');
  await waitFor('the export answered', async () => (await sample(registry, 'weft_otlp_spans_exported_total')) === 3);
});

t.test('an unreachable collector: the waypoint answers every request, the spans are dropped and counted', async (t) => {
  const up = await httpUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const N = 200;
  /** N sequential requests through a waypoint with this telemetry; ms per request. */
  const run = async (tel: ProxyTelemetry): Promise<number> => {
    const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
    const t0 = process.hrtime.bigint();
    let ok = 0;
    for (let i = 0; i < N; i++) if ((await request(h.port)).status === 200) ok++;
    t.equal(ok, N, 'every request answered');
    return Number(process.hrtime.bigint() - t0) / 1e6 / N;
  };
  const plain = telemetry('', new Registry());
  const registry = new Registry();
  const tel = telemetry(`http://127.0.0.1:${await closedPort()}`, registry);
  t.teardown(() => tel.close());
  const without = await run(plain);
  const unreachable = await run(tel);
  t.comment(`${N} sequential requests, 100 % sampling: ${without.toFixed(2)} ms per request without OTLP, ${unreachable.toFixed(2)} ms with the collector unreachable`);
  await waitFor('an export failed', async () => (await sample(registry, 'weft_otlp_export_failures_total', { code: 'UNAVAILABLE' })) >= 1);
  const dropped = await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'export_failed' }) + await sample(registry, 'weft_otlp_spans_dropped_total', { reason: 'queue_full' });
  t.ok(dropped > 0, `${dropped} spans dropped and counted`);
  t.equal(tel.ring.query({}).length, 64, 'the span ring (weft traces) is unaffected');
});
