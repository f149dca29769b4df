// The waypoint's saturation gauges (src/waypoint/load-gauges.ts): requests in flight,
// client connections served and upstream connections held, counted by the data path
// (handler.ts, exchange.ts, upstream-http1.ts) and read at scrape time.
import t from 'tap';
import type * as http from 'node:http';
import { Registry } from 'prom-client';
import { registerLoadGauges } from '../src/waypoint/load-gauges';
import { parsePromText, samplesOf } from '../src/telemetry/prom-text';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';
import { waitFor } from './helpers/wait';

t.test('held requests are in flight, on client connections and upstream connections; released, only idle upstreams stay', async (t) => {
  const held: http.ServerResponse[] = [];
  const up = await httpUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => held.push(res));
  });
  const h = await startWaypoint(t, () => plan(up.port));
  t.same(h.l7.load(), { inFlight: 0, downstream: 0, upstream: { http1: 0, h2c: 0 } }, 'idle at start');
  const replies = [0, 1, 2].map(() => request(h.port));
  await waitFor('three requests at the upstream', () => held.length === 3, { timeoutMs: 5000 });
  t.same(h.l7.load(), { inFlight: 3, downstream: 3, upstream: { http1: 3, h2c: 0 } });

  const registry = new Registry();
  registerLoadGauges(registry, () => h.l7.load());
  const scrape = parsePromText(await registry.metrics());
  t.equal(samplesOf(scrape, 'weft_waypoint_requests_in_flight')[0]!.value, 3);
  t.equal(samplesOf(scrape, 'weft_waypoint_downstream_connections')[0]!.value, 3);
  t.same(samplesOf(scrape, 'weft_waypoint_upstream_connections').map((s) => [s.labels.protocol, s.value]), [['http1', 3], ['h2c', 0]]);

  for (const res of held) res.end('ok');
  t.same((await Promise.all(replies)).map((r) => r.status), [200, 200, 200]);
  await waitFor('client connections closed', () => h.l7.load().downstream === 0, { timeoutMs: 5000 });
  t.same(h.l7.load(), { inFlight: 0, downstream: 0, upstream: { http1: 3, h2c: 0 } }, 'upstream connections stay pooled (idle)');
  up.server.closeAllConnections();
  await waitFor('upstream connections closed by the upstream', () => h.l7.load().upstream.http1 === 0, { timeoutMs: 5000 });
  t.pass('an upstream closing its connections takes them out of the count');
});

t.test('before the waypoint serves, the gauges read zero', async (t) => {
  const registry = new Registry();
  registerLoadGauges(registry, () => undefined);
  const scrape = parsePromText(await registry.metrics());
  t.equal(samplesOf(scrape, 'weft_waypoint_requests_in_flight')[0]!.value, 0);
  t.equal(samplesOf(scrape, 'weft_waypoint_upstream_connections').length, 2);
});
