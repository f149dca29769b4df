// The ztunnel's tap events and access-log volume (lifecycle.ts end() through
// connection-telemetry.ts): a TapEvent per finished connection with its verdict, peers,
// bytes and direction while someone listens (read over real HTTP); sampling and
// per-namespace levels on the `connection complete` line.
import t from 'tap';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { WorkloadView } from '../src/registry/enrolment';
import { ProxyTelemetry, type TelemetryConfig } from '../src/telemetry/proxy-telemetry';
import type { TapEvent } from '../src/telemetry/types';
import { ConnectionRegistry, type ConnectionInit } from '../src/ztunnel/connections';
import { ConnectionLifecycle } from '../src/ztunnel/lifecycle';
import { LogLines } from './helpers/log-lines';
import { serveTap, subscribeTap } from './helpers/tap-stream';

function rig(config: Partial<TelemetryConfig> = {}) {
  const registry = new Registry();
  const tel = new ProxyTelemetry({
    proxy: 'ztunnel node-1', registry, logger: pino({ level: 'silent' }), random: () => 0.5,
    config: { traceSampling: 0, traceBufferSpans: 64, otlpEndpoint: '', accessLogSampling: 1, accessLogLevels: {}, ...config },
  });
  const log = new LogLines();
  const lc = new ConnectionLifecycle({ connections: new ConnectionRegistry(), telemetry: tel, logger: pino({ level: 'info' }, log) });
  return { tel, registry, log, lc };
}

const view = (namespace: string, name: string) => ({ record: { namespace, name } }) as unknown as WorkloadView;

function init(srcNs = 'demo', dstNs = 'demo'): ConnectionInit {
  return {
    direction: 'outbound', protocol: 'HBONE',
    src: { ip: '10.0.1.2', port: 40000, workload: view(srcNs, 'client'), identity: `spiffe://cluster.local/ns/${srcNs}/sa/client` },
    dst: { ip: '10.0.2.3', port: 8080, workload: view(dstNs, 'echo'), identity: `spiffe://cluster.local/ns/${dstNs}/sa/echo`, service: `${dstNs}/echo` },
  };
}

t.test('a TapEvent per finished connection while someone listens', async (t) => {
  const { tel, lc } = rig();
  const s = await subscribeTap(await serveTap(t, tel.tap));
  await s.next();
  const c = lc.begin(init());
  lc.established(c);
  c.counters.sent = 120;
  c.counters.received = 340;
  lc.end(c, { flag: '-' });
  const denied = lc.begin(init('legacy'));
  lc.end(denied, { flag: 'DENY', reason: 'denied by demo/deny-legacy' });
  const e = JSON.parse(await s.next()) as TapEvent;
  t.match(e, {
    proxy: 'ztunnel node-1', kind: 'connection', verdict: 'routed', direction: 'outbound', bytesSent: 120, bytesReceived: 340, responseFlag: '-', mtls: true,
    source: { address: '10.0.1.2', workload: 'client', namespace: 'demo', identity: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { address: '10.0.2.3', workload: 'echo', namespace: 'demo', service: 'demo/echo' },
  });
  t.equal(e.path, undefined);
  t.ok(e.durationMs >= 0);
  t.match(JSON.parse(await s.next()), { verdict: 'denied', responseFlag: 'DENY', source: { namespace: 'legacy' } });
  s.req.destroy();
});

t.test('access-log sampling on the ztunnel: clean connections sampled and counted, failures kept', async (t) => {
  const { lc, log, registry } = rig({ accessLogSampling: 0.1 });
  for (let i = 0; i < 3; i++) {
    const c = lc.begin(init());
    lc.established(c);
    lc.end(c, { flag: '-' });
  }
  const failed = lc.begin(init());
  lc.established(failed);
  lc.end(failed, { flag: 'UPSTREAM_RESET' });
  t.same(log.lines.filter((l) => l.msg === 'connection complete').map((l) => l.error), ['UPSTREAM_RESET'], 'only the failure (the draw is 0.5)');
  const m = (await registry.getSingleMetric('weft_access_log_dropped_total')!.get()).values;
  t.same(m.map((v) => [v.labels.reason, v.value]), [['sampling', 3]]);
});

t.test('access-log levels on the ztunnel: by the destination namespace, else the source', async (t) => {
  const { lc, log } = rig({ accessLogLevels: { legacy: 'off' } });
  const toLegacy = lc.begin(init('demo', 'legacy'));
  lc.established(toLegacy);
  lc.end(toLegacy, { flag: '-' });
  const fromLegacy = lc.begin({ ...init('legacy'), dst: { ip: '10.0.9.9', port: 80 } });
  lc.established(fromLegacy);
  lc.end(fromLegacy, { flag: '-' });
  const demo = lc.begin(init('legacy', 'demo'));
  lc.established(demo);
  lc.end(demo, { flag: '-' });
  t.same(log.lines.filter((l) => l.msg === 'connection complete').map((l) => l['dst.addr']), ['10.0.2.3:8080'], 'only the one to demo');
});

t.test('a connection of a sampled trace: its line is kept under sampling, with its trace id, as is its tap event', async (t) => {
  const { tel, lc, log } = rig({ accessLogSampling: 0, traceSampling: 1 });
  const s = await subscribeTap(await serveTap(t, tel.tap));
  await s.next();
  const c = lc.begin(init());
  lc.established(c);
  lc.end(c, { flag: '-' });
  const [line] = log.lines.filter((l) => l.msg === 'connection complete');
  t.match(line?.trace_id, /^[0-9a-f]{32}$/);
  t.equal((JSON.parse(await s.next()) as TapEvent).traceId, line?.trace_id);
  s.req.destroy();
});
