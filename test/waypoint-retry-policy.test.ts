// The TrafficPolicy's retry rules in the forward loop, end to end through the L7 handler
// against loopback upstreams: retries are marked (x-weft-retry) for the hops below; a
// request marked by a hop above is not retried again (the cross-hop cap) unless the cap
// is off; the budget stops retries; only idempotent methods are retried unless opted
// in; retry-on classes choose which statuses count.
import t, { type Test } from 'tap';
import type * as http from 'node:http';
import { Registry } from 'prom-client';
import { ManualClock } from './helpers/clock';
import { WaypointMetrics } from '../src/waypoint/metrics';
import { httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';
import { RetryBudget } from '../src/resilience/retry-budget';
import { DEFAULT_RETRY_BUDGET } from '../src/resilience/retry-spec';
import type { RetryRules } from '../src/resilience/retry';

/** An upstream answering from a list of statuses (then 200), recording each request's retry mark. */
async function scripted(t: Test, statuses: number[]) {
  const marks: (string | undefined)[] = [];
  const up = await httpUpstream(t, (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on('end', () => {
      marks.push(req.headers['x-weft-retry'] as string | undefined);
      const status = statuses.shift() ?? 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`status ${status}`);
    });
  });
  return { port: up.port, marks };
}

const policy = (over: Partial<RetryRules> = {}): RetryRules => ({
  codes: [], attempts: 3, backoffMs: 0, retryOn: ['gateway-error', 'connect-failure', 'reset'], idempotentOnly: true, crossHopCap: true, ...over,
});

t.test('every retry goes out marked x-weft-retry: <try>; the first try as received', async (t) => {
  const up = await scripted(t, [503, 503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy() }));
  const r = await request(h.port);
  t.equal(r.status, 200);
  t.same(up.marks, [undefined, '2', '3']);
});

t.test('cross-hop cap: a request a hop above retried is not retried again; with the cap off it is', async (t) => {
  const up = await scripted(t, [503, 503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy() }));
  const r = await request(h.port, { headers: { 'x-weft-retry': '2' } });
  t.equal(r.status, 503, 'answered as the backend did');
  t.same(up.marks, ['2'], 'one try, the mark passed on');

  const up2 = await scripted(t, [503, 503]);
  const h2 = await startWaypoint(t, () => plan(up2.port, { retry: policy({ crossHopCap: false }) }));
  t.equal((await request(h2.port, { headers: { 'x-weft-retry': '2' } })).status, 200);
  t.same(up2.marks, ['2', '2', '3'], 'cap off: retried like any request');
});

t.test('cross-hop cap: a marked request costs the budget one retry, so this hop adds none', async (t) => {
  const clock = new ManualClock(0);
  const budget = new RetryBudget({ ...DEFAULT_RETRY_BUDGET, ratio: 0.5, minRetriesPerSecond: 0 }, clock);
  const up = await scripted(t, []);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy({ budget }) }), { clock });
  await request(h.port);
  await request(h.port);
  t.equal(budget.available(), 1, 'two original requests earned one retry');
  await request(h.port, { headers: { 'x-weft-retry': '2' } });
  t.equal(budget.available(), 0, 'the retry made above was charged');
});

t.test('budget: once spent, a retriable answer goes back as is', async (t) => {
  const clock = new ManualClock(0);
  const budget = new RetryBudget({ ...DEFAULT_RETRY_BUDGET, ratio: 0, minRetriesPerSecond: 0 }, clock);
  const up = await scripted(t, [503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy({ budget }) }), { clock });
  t.equal((await request(h.port)).status, 503);
  t.same(up.marks, [undefined], 'no retry: the budget had none');
  t.match(h.records[0], { status: 503, attempts: 1, responseFlag: '-', retryRefused: 'budget' });
});

t.test('metrics: retries made and retriable answers refused by a limit, per Service', async (t) => {
  const registry = new Registry();
  const metrics = new WaypointMetrics(registry, { workloadByAddress: () => undefined });
  const up = await scripted(t, [503, 503, 200, 503]);
  const h2 = await startWaypoint(t, () => plan(up.port, { retry: policy() }));
  t.equal((await request(h2.port)).status, 200, 'two retries, then 200');
  t.equal((await request(h2.port, { headers: { 'x-weft-retry': '2' } })).status, 503, 'marked: not retried');
  for (const r of h2.records) metrics.onRequest(r);
  t.match(h2.records[1], { retryRefused: 'cross-hop' });
  const text = await registry.metrics();
  t.match(text, /weft_waypoint_retries_total\{destination_service_namespace="demo",destination_service_name="echo",result="retried"\} 2/);
  t.match(text, /weft_waypoint_retries_total\{destination_service_namespace="demo",destination_service_name="echo",result="cross_hop"\} 1/);
});

t.test('idempotent methods only unless opted in; a connection never made is retried for any method', async (t) => {
  const up = await scripted(t, [503, 503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy() }));
  t.equal((await request(h.port, { method: 'POST', body: 'x' })).status, 503, 'a POST is not retried');
  t.equal((await request(h.port, { method: 'PUT', body: 'x' })).status, 200, 'a PUT is');
  const up2 = await scripted(t, [503]);
  const h2 = await startWaypoint(t, () => plan(up2.port, { retry: policy({ idempotentOnly: false }) }));
  t.equal((await request(h2.port, { method: 'POST', body: 'x' })).status, 200, 'retryNonIdempotent: the POST is retried');

  const up3 = await scripted(t, []);
  const h3 = await startWaypoint(t, () => plan(up3.port, { retry: policy() }));
  h3.dialer.failNext.set(up3.port, 1);
  t.equal((await request(h3.port, { method: 'POST', body: 'x' })).status, 200, 'connect failure: the POST never ran, so it is retried');
  t.equal(h3.dialer.count(up3.port), 2);
});

t.test('retry-on classes: gateway-error leaves a 500 alone, 5xx retries it', async (t) => {
  const up = await scripted(t, [500]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy() }));
  t.equal((await request(h.port)).status, 500);
  const up2 = await scripted(t, [500]);
  const h2 = await startWaypoint(t, () => plan(up2.port, { retry: policy({ retryOn: ['5xx'] }) }));
  t.equal((await request(h2.port)).status, 200);
  t.same(up2.marks, [undefined, '2']);
});

t.test('exponential backoff with full jitter on the injected clock', async (t) => {
  const clock = new ManualClock(Date.now());
  const up = await scripted(t, [503, 503]);
  const h = await startWaypoint(t, () => plan(up.port, { retry: policy({ backoffMs: 100, backoffMaxMs: 1000 }) }), { clock, random: () => 0.5 });
  const pending = request(h.port);
  // Full jitter at 0.5: half of 100 before the first retry, half of 200 before the second.
  for (const wait of [50, 100]) {
    while (!clock.armed.includes(wait)) await new Promise((r) => setTimeout(r, 5));
    t.equal(up.marks.length, wait === 50 ? 1 : 2, `the next try waits ${wait} ms`);
    clock.advance(wait);
  }
  t.equal((await pending).status, 200);
  t.same(up.marks, [undefined, '2', '3']);
});
