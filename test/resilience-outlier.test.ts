// Outlier detection as pure logic (src/resilience/outlier.ts) on a manual clock: the
// section's validation with named fields, consecutive 5xx and gateway errors, ejection
// time = base x ejections (capped), max ejection percent, half-open return with one
// probe, success-rate ejection, and the multiplier's decay.
import t from 'tap';
import { FieldError } from '../src/registry/checks';
import { OutlierDetector, type EjectionEvent } from '../src/resilience/outlier';
import { OUTLIER_DEFAULTS, validateOutlierDetection, type OutlierDetectionSpec } from '../src/resilience/outlier-spec';
import type { AttemptOutcome } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';

const P = 'spec.outlierDetection';
const ok: AttemptOutcome = { status: 200, latencyMs: 1 };
const e503: AttemptOutcome = { status: 503, latencyMs: 1 };
const e500: AttemptOutcome = { status: 500, latencyMs: 1 };
const refused: AttemptOutcome = { failure: 'connect', latencyMs: 1 };
const ENDPOINTS = ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'];
const id = (s: string) => s;

function spec(over: Partial<OutlierDetectionSpec> = {}): OutlierDetectionSpec {
  return validateOutlierDetection({ consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '10s', maxEjectionPercent: 50, ...over }, P, 'reject');
}

function rig(over: Partial<OutlierDetectionSpec> = {}) {
  const clock = new ManualClock(1_000_000);
  const ejections: EjectionEvent[] = [];
  const returns: string[] = [];
  const d = new OutlierDetector(spec(over), clock, { onEject: (e) => ejections.push(e), onReturn: (k) => returns.push(k) });
  t.teardown(() => d.close());
  return { clock, d, ejections, returns, list: () => [...d.available(ENDPOINTS, id)] };
}

t.test('validation: defaults are Istio\'s; every bad value names its field', async (t) => {
  t.same(validateOutlierDetection({}, P, 'reject'), OUTLIER_DEFAULTS);
  const full = { consecutive5xxErrors: 2, consecutiveGatewayErrors: 1, interval: '500ms', baseEjectionTime: '5s', maxEjectionTime: '1m', maxEjectionPercent: 100, successRate: { minimumHosts: 3 } };
  const v = validateOutlierDetection(full, P, 'reject');
  t.same(v.successRate, { minimumHosts: 3, requestVolume: 100, stdevFactor: 1.9 }, 'successRate defaults filled in');
  t.same(validateOutlierDetection(v, P, 'reject'), v, 'the validated spec validates to itself (it is stored and read back)');
  const longBase = validateOutlierDetection({ baseEjectionTime: '10m' }, P, 'reject');
  t.equal(longBase.maxEjectionTime, '10m', 'a base above the default cap: the cap left out follows it, written so');
  t.same(validateOutlierDetection(JSON.parse(JSON.stringify(longBase)), P, 'reject'), longBase, 'and that validates to itself too');
  const bad: [unknown, string, RegExp][] = [
    [{ maxEjectionPercent: 150 }, `${P}.maxEjectionPercent`, /must be an integer 0-100, got 150/],
    [{ consecutive5xxErrors: -1 }, `${P}.consecutive5xxErrors`, /must be an integer 0-10000, got -1/],
    [{ consecutiveGatewayErrors: 1.5 }, `${P}.consecutiveGatewayErrors`, /integer/],
    [{ interval: '-1s' }, `${P}.interval`, /Gateway API duration/],
    [{ interval: 10 }, `${P}.interval`, /must be a duration such as 10s/],
    [{ interval: '10ms' }, `${P}.interval`, /must be from 100ms to 1h/],
    [{ baseEjectionTime: '0s' }, `${P}.baseEjectionTime`, /must be from 1ms/],
    [{ baseEjectionTime: '1m', maxEjectionTime: '30s' }, `${P}.maxEjectionTime`, /must be at least baseEjectionTime \(1m\), got "30s"/],
    [{ successRate: { stdevFactor: -1 } }, `${P}.successRate.stdevFactor`, /from 0 to 100/],
    [{ successRate: { requestVolume: 0 } }, `${P}.successRate.requestVolume`, /1-1000000/],
    [{ successRate: { minHosts: 1 } }, `${P}.successRate.minHosts`, /is not a known field/],
    [{ consecutiveErrors: 1 }, `${P}.consecutiveErrors`, /is not a known field/],
    ['5', P, /must be an object/],
  ];
  for (const [input, field, problem] of bad) {
    try {
      validateOutlierDetection(input, P, 'reject');
      t.fail(`${field} accepted`);
    } catch (err) {
      t.type(err, FieldError, field);
      t.equal((err as FieldError).field, field);
      t.match((err as FieldError).problem, problem, field);
    }
  }
});

t.test('consecutive 5xx: ejected after the configured count; a success in between starts over', async (t) => {
  const { d, ejections, list } = rig();
  t.equal(d.available(ENDPOINTS, id), ENDPOINTS, 'nothing ejected: the same list, no copy');
  d.report(ENDPOINTS[0]!, e500);
  d.report(ENDPOINTS[0]!, e503);
  d.report(ENDPOINTS[0]!, ok);
  d.report(ENDPOINTS[0]!, e500);
  d.report(ENDPOINTS[0]!, refused);
  t.same(ejections, [], 'two in a row, a success, two more: not yet');
  d.report(ENDPOINTS[0]!, e500);
  t.equal(ejections.length, 1);
  t.match(ejections[0], { endpoint: ENDPOINTS[0], reason: 'consecutive-5xx', ejections: 1, durationMs: 10_000, ejected: 1, total: 3 });
  t.same(list(), ENDPOINTS.slice(1), 'out of the candidates');
  t.ok(d.isEjected(ENDPOINTS[0]!));
  t.match(d.views()[0], { endpoint: ENDPOINTS[0], state: 'ejected', reason: 'consecutive-5xx', ejections: 1 });
});

t.test('consecutive gateway errors: 502/503/504 and connect failures; a 500 resets them', async (t) => {
  const { d, ejections } = rig({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 });
  d.report(ENDPOINTS[1]!, e503);
  d.report(ENDPOINTS[1]!, e500);
  d.report(ENDPOINTS[1]!, refused);
  t.same(ejections, [], 'a 500 is not a gateway error and breaks the run');
  d.report(ENDPOINTS[1]!, { status: 504, latencyMs: 1 });
  t.match(ejections, [{ endpoint: ENDPOINTS[1], reason: 'consecutive-gateway-errors' }]);
  const { d: d2, ejections: none } = rig({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 0 });
  for (let i = 0; i < 50; i++) d2.report(ENDPOINTS[0]!, e503);
  t.same(none, [], 'both at 0: never ejected for errors in a row');
  const { d: d3, ejections: four } = rig();
  for (let i = 0; i < 50; i++) d3.report(ENDPOINTS[0]!, { status: 404, latencyMs: 1 });
  t.same(four, [], '4xx is the client\'s fault, not the endpoint\'s');
});

t.test('half-open: after its time the endpoint gets ONE probe; success returns it, failure ejects it for base x 2', async (t) => {
  const { clock, d, ejections, returns, list } = rig();
  for (let i = 0; i < 3; i++) d.report(ENDPOINTS[0]!, e503);
  clock.advance(9_999);
  t.same(list(), ENDPOINTS.slice(1), 'still out just before its ejection time');
  clock.advance(1);
  t.same(list(), [ENDPOINTS[0]], 'its time passed: the next request is its probe, alone');
  t.same(list(), ENDPOINTS.slice(1), 'while the probe is out, the others take the traffic');
  d.report(ENDPOINTS[0]!, e503);
  t.match(ejections[1], { reason: 'probe-failed', ejections: 2, durationMs: 20_000 }, 'failed probe: ejected for 2 x base');
  clock.advance(19_999);
  t.same(list(), ENDPOINTS.slice(1));
  clock.advance(1);
  t.same(list(), [ENDPOINTS[0]], 'probe again after 2 x base');
  d.report(ENDPOINTS[0]!, ok);
  t.same(returns, [ENDPOINTS[0]], 'back');
  t.same(list(), ENDPOINTS, 'in the candidates again');
  t.equal(d.ejected, 0);
});

t.test('a probe never answered is handed out again after an interval', async (t) => {
  const { clock, d, list } = rig();
  for (let i = 0; i < 3; i++) d.report(ENDPOINTS[2]!, e503);
  clock.advance(10_000);
  t.same(list(), [ENDPOINTS[2]]);
  clock.advance(500);
  t.same(list(), ENDPOINTS.slice(0, 2), 'probe outstanding');
  clock.advance(600);
  t.same(list(), [ENDPOINTS[2]], 'an interval later, another probe');
});

t.test('ejection time grows with ejections up to maxEjectionTime; the multiplier decays while healthy', async (t) => {
  const { clock, d, ejections } = rig({ maxEjectionTime: '25s', maxEjectionPercent: 100 });
  const fail = () => { for (let i = 0; i < 3; i++) d.report(ENDPOINTS[0]!, e503); };
  fail();
  for (const expected of [20_000, 25_000, 25_000]) {
    clock.advance(ejections.at(-1)!.durationMs);
    d.available(ENDPOINTS, id);
    d.report(ENDPOINTS[0]!, e503);
    t.equal(ejections.at(-1)!.durationMs, expected);
  }
  clock.advance(25_000);
  d.available(ENDPOINTS, id);
  d.report(ENDPOINTS[0]!, ok);
  t.equal(d.views()[0]!.ejections, 4, 'back, the multiplier kept');
  clock.advance(2_000);
  t.equal(d.views()[0]!.ejections, 3, 'one interval healthy (the one it returned in does not count): one less');
  clock.advance(3_000);
  t.same(d.views(), [], 'fully decayed and forgotten');
});

t.test('max ejection percent: a second failing endpoint stays in past the limit; one may always go', async (t) => {
  const { d, ejections, list } = rig({ maxEjectionPercent: 50 });
  for (let i = 0; i < 3; i++) d.report(ENDPOINTS[0]!, e503);
  for (let i = 0; i < 10; i++) d.report(ENDPOINTS[1]!, e503);
  t.equal(ejections.length, 1, '2 of 3 would be 67 % > 50 %');
  t.same(list(), ENDPOINTS.slice(1));
  const { d: d2, ejections: one } = rig({ maxEjectionPercent: 10 });
  for (let i = 0; i < 3; i++) d2.report(ENDPOINTS[0]!, e503);
  t.equal(one.length, 1, '1 of 3 is 33 % > 10 %, but one endpoint may always be ejected');
  const { d: d3, ejections: never } = rig({ maxEjectionPercent: 0 });
  for (let i = 0; i < 3; i++) d3.report(ENDPOINTS[0]!, e503);
  t.equal(never.length, 0, '0 %: never');
  const { d: d4, list: list4 } = rig({ maxEjectionPercent: 100 });
  d4.available(ENDPOINTS, id);
  for (const ep of ENDPOINTS) for (let i = 0; i < 3; i++) d4.report(ep, e503);
  t.equal(d4.ejected, 3);
  t.same(list4(), ENDPOINTS, 'all out: the full list rather than none (panic)');
});

t.test('success rate: an endpoint far below the others is ejected at the interval end', async (t) => {
  const { clock, d, ejections } = rig({ consecutive5xxErrors: 0, successRate: { minimumHosts: 3, requestVolume: 20, stdevFactor: 1 } });
  const five = ['a:1', 'b:1', 'c:1', 'd:1', 'e:1'];
  d.available(five, id);
  for (let i = 0; i < 40; i++) {
    for (const ep of five) d.report(ep, ep === 'e:1' && i % 2 === 0 ? e503 : ok);
  }
  d.report('f:1', e503);
  clock.advance(1000);
  t.match(ejections, [{ endpoint: 'e:1', reason: 'success-rate' }], 'e at 50 % against 100 %; f had too few requests to be judged');
  const { clock: c2, d: d2, ejections: none } = rig({ consecutive5xxErrors: 0, successRate: { minimumHosts: 6, requestVolume: 20, stdevFactor: 1 } });
  for (let i = 0; i < 40; i++) for (const ep of five) d2.report(ep, ep === 'e:1' ? e503 : ok);
  c2.advance(1000);
  t.same(none, [], 'fewer endpoints with enough volume than minimumHosts: no comparison');
});

t.test('the interval timer stops when nothing is remembered; close() stops it', async (t) => {
  const { clock, d } = rig();
  d.report(ENDPOINTS[0]!, e503);
  t.equal(clock.pending, 1);
  d.report(ENDPOINTS[0]!, ok);
  clock.advance(1000);
  t.equal(clock.pending, 0, 'nothing to remember: no timer');
  d.report(ENDPOINTS[0]!, e503);
  d.close();
  t.equal(clock.pending, 0);
});

t.test('an ejected endpoint that left the Service is forgotten once its time is over', async (t) => {
  const { clock, d } = rig({ maxEjectionPercent: 100 });
  d.available(ENDPOINTS, id);
  for (let i = 0; i < 3; i++) d.report(ENDPOINTS[0]!, e503);
  t.equal(d.ejected, 1);
  const rest = ENDPOINTS.slice(1);
  for (let s = 0; s < 12; s++) {
    clock.advance(1000);
    t.same(d.available(rest, id), rest, 'the pod is gone from the candidates');
  }
  t.equal(d.ejected, 0, 'no longer counted as out');
  t.same(d.views(), []);
});

t.test('an endpoint left with a short error streak and no more requests is forgotten after maxEjectionTime', async (t) => {
  // A rollout: the old pod answers 503 twice while draining (3 would eject it), then is gone.
  const { clock, d } = rig();
  d.report('10.0.0.9:8080', e503);
  d.report('10.0.0.9:8080', e503);
  d.report(ENDPOINTS[0]!, ok);
  clock.advance(1000);
  t.same(d.views().map((v) => v.endpoint), ['10.0.0.9:8080'], 'the streak is remembered meanwhile');
  clock.advance(299_000);
  t.equal(d.views().length, 1, 'still within maxEjectionTime (300s)');
  clock.advance(2000);
  t.same(d.views(), [], 'forgotten: nothing of it left in the view');
  t.equal(clock.pending, 0, 'and the interval timer stopped');
});
