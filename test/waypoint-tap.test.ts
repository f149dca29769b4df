// The waypoint's tap events and access-log volume on the real L7 path (WaypointL7 over
// real sockets, a real HTTP upstream, the tap read over real HTTP): one TapEvent per
// request with its verdict, workloads, path without the query and trace id; none built
// while nobody listens; access-log sampling and per-namespace levels on the `access` line.
import t from 'tap';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { WorkloadView } from '../src/registry/enrolment';
import { ProxyTelemetry } from '../src/telemetry/proxy-telemetry';
import type { TelemetryConfig } from '../src/telemetry/proxy-telemetry';
import type { TapEvent } from '../src/telemetry/types';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';
import { serveTap, subscribeTap } from './helpers/tap-stream';

function telemetry(config: Partial<TelemetryConfig> = {}, random?: () => number) {
  const registry = new Registry();
  const tel = new ProxyTelemetry({
    proxy: 'waypoint demo/waypoint', registry, logger: pino({ level: 'silent' }), ...(random ? { random } : {}),
    config: { traceSampling: 0, traceBufferSpans: 64, otlpEndpoint: '', accessLogSampling: 1, accessLogLevels: {}, ...config },
  });
  return { tel, registry };
}

/** Every address is the `client` pod of demo (the harness's client and upstream are both on 127.0.0.1). */
const workloads = { workloadByAddress: () => ({ record: { name: 'client', namespace: 'demo' } }) as unknown as WorkloadView };

/** Answers `?status=` (else 200); `/flaky` answers 503 then 200, in turn. */
async function statusUpstream(t: Parameters<typeof httpUpstream>[0]) {
  let flaky = 0;
  return httpUpstream(t, (req, res) => {
    req.resume();
    const url = new URL(req.url ?? '/', 'http://x');
    const status = url.pathname === '/flaky' ? (flaky++ % 2 === 0 ? 503 : 200) : Number(url.searchParams.get('status') ?? 200);
    req.on('end', () => { res.writeHead(status); res.end(); });
  });
}

t.test('one TapEvent per request while someone listens: verdict, peers, path without query, trace id', async (t) => {
  const { tel } = telemetry();
  const up = await statusUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel, workloads });
  t.equal(tel.tap.active, false);
  t.equal((await request(h.port, { path: '/before' })).status, 200);
  const port = await serveTap(t, tel.tap);
  const s = await subscribeTap(port);
  await s.next();
  t.equal((await request(h.port, { path: '/hello?token=secret' })).status, 200);
  t.equal((await request(h.port, { path: '/fail?status=503' })).status, 503);
  const ok = JSON.parse(await s.next()) as TapEvent;
  const failing = JSON.parse(await s.next()) as TapEvent;
  t.match(ok, {
    proxy: 'waypoint demo/waypoint', kind: 'request', verdict: 'routed', method: 'GET', authority: 'echo.demo', path: '/hello', status: 200, responseFlag: '-', attempts: 1, mtls: true,
    source: { address: '127.0.0.1', workload: 'client', namespace: 'demo', identity: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { address: '127.0.0.1', workload: 'client', namespace: 'demo', identity: 'spiffe://cluster.local/ns/demo/sa/echo', service: 'demo/echo' },
  });
  t.match(ok.traceId, /^[0-9a-f]{32}$/);
  t.equal(ok.traceId, h.records[1]!.traceId, 'the access log\'s trace id');
  t.notOk(JSON.stringify(ok).includes('secret'), 'no query string');
  t.ok(Date.parse(ok.time) > 0);
  t.match(failing, { verdict: 'routed', path: '/fail', status: 503 });
  t.equal(s.lines.length, 0, 'the request made before subscribing was not streamed');
  s.req.destroy();
});

t.test('verdicts of refused and retried requests', async (t) => {
  const { tel } = telemetry();
  const up = await statusUpstream(t);
  const h = await startWaypoint(t, (f) => (f.path === '/missing'
    ? { kind: 'respond', status: 404, body: 'no route\n' }
    : plan(up.port, { retry: { codes: [503], attempts: 1, backoffMs: 0 } })), { telemetry: tel });
  const s = await subscribeTap(await serveTap(t, tel.tap), '?status=4xx');
  await s.next();
  t.equal((await request(h.port, { path: '/flaky' })).status, 200);
  t.equal((await request(h.port, { path: '/missing' })).status, 404);
  const all = await subscribeTap(await serveTap(t, tel.tap));
  await all.next();
  t.equal((await request(h.port, { path: '/flaky' })).status, 200);
  t.match(JSON.parse(await s.next()), { verdict: 'no_route', status: 404, responseFlag: 'NR', attempts: 0 }, 'the 4xx filter got only the 404');
  t.match(JSON.parse(await all.next()), { verdict: 'retried', status: 200, attempts: 2 });
  s.req.destroy();
  all.req.destroy();
});

t.test('access-log sampling on the waypoint: failures and sampled traces kept, the rest sampled and counted', async (t) => {
  const { tel, registry } = telemetry({ accessLogSampling: 0 });
  const up = await statusUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
  const access = () => h.log.lines.filter((l) => l.msg === 'access');
  await request(h.port, { path: '/ok' });
  await request(h.port, { path: '/ok' });
  await request(h.port, { path: '/bad?status=500' });
  await request(h.port, { path: '/traced', headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' } });
  t.same(access().map((l) => [l.path, l.status]), [['/bad', 500], ['/traced', 200]], 'the 500 and the sampled trace');
  t.equal(access()[1]!.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736', 'with its trace id');
  t.equal(h.records.length, 4, 'metrics still see every request');
  const m = (await registry.getSingleMetric('weft_access_log_dropped_total')!.get()).values;
  t.same(m.map((v) => [v.labels.reason, v.value]), [['sampling', 2]]);
});

t.test('access-log levels on the waypoint: the destination Service\'s namespace off writes nothing', async (t) => {
  const { tel } = telemetry({ accessLogLevels: { demo: 'off' } });
  const up = await statusUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { telemetry: tel });
  await request(h.port, { path: '/ok' });
  await request(h.port, { path: '/bad?status=500' });
  t.equal(h.log.lines.filter((l) => l.msg === 'access').length, 0);
  t.equal(h.records.length, 2);
});
