// TrafficPolicy `retry`, pure: the section's validation (every field refused with its
// path), the budget on a manual clock, the retry decisions (classes, methods, the
// cross-hop cap, the budget), the full-jitter backoff and how a route's retry and a
// policy's combine.
import t from 'tap';
import { backoffDelay } from '../src/lib/backoff';
import { FieldError } from '../src/registry/checks';
import { RetryBudget } from '../src/resilience/retry-budget';
import { RetryBudgets } from '../src/resilience/retry-budgets';
import { countRequest, resolveRetry, retriable, retryDelayMs, retryRefusal, type RetryRules } from '../src/resilience/retry';
import { DEFAULT_RETRY_BUDGET, validateRetry, type RetryBudgetSpec } from '../src/resilience/retry-spec';
import { ManualClock } from './helpers/clock';

const P = 'spec.retry';

t.test('validateRetry: defaults filled in', async (t) => {
  t.same(validateRetry({}, P, 'reject'), {
    attempts: 2, retryOn: ['gateway-error', 'connect-failure', 'reset'], retriableStatusCodes: [],
    backoff: { baseInterval: '25ms', maxInterval: '250ms' }, retryNonIdempotent: false,
    budget: { enabled: true, ratio: 0.2, minRetriesPerSecond: 2, window: '10s' }, crossHopCap: true,
  });
  t.same(validateRetry({
    attempts: 3, perTryTimeout: '500ms', retryOn: ['5xx', 'retriable-4xx'], retriableStatusCodes: [429],
    backoff: { baseInterval: '10ms' }, retryNonIdempotent: true, budget: { ratio: 0.5, minRetriesPerSecond: 0, window: '30s' }, crossHopCap: false,
  }, P, 'reject'), {
    attempts: 3, perTryTimeout: '500ms', retryOn: ['5xx', 'retriable-4xx'], retriableStatusCodes: [429],
    backoff: { baseInterval: '10ms', maxInterval: '100ms' }, retryNonIdempotent: true,
    budget: { enabled: true, ratio: 0.5, minRetriesPerSecond: 0, window: '30s' }, crossHopCap: false,
  }, 'maxInterval defaults to ten times the base (Envoy)');
  const odd = validateRetry({ backoff: { baseInterval: '12345ms' } }, P, 'reject');
  t.equal(odd.backoff.maxInterval, '2m3s450ms', 'the default cap written as a valid duration');
  t.same(validateRetry(JSON.parse(JSON.stringify(odd)), P, 'reject'), odd, 'the validated section validates to itself (the registry reads it back)');
  const long = validateRetry({ backoff: { baseInterval: '10m' } }, P, 'reject');
  t.equal(long.backoff.maxInterval, '1h', 'ten times a long base is capped at maxInterval\'s own bound');
  t.same(validateRetry(JSON.parse(JSON.stringify(long)), P, 'reject'), long, 'and validates to itself');
  t.same(validateRetry({ unknownThing: 1 }, P, 'drop').attempts, 2, 'readers drop unknown fields');
});

t.test('validateRetry: every bad value names its field', async (t) => {
  const bad: [unknown, RegExp][] = [
    ['x', /^spec\.retry must be an object/],
    [{ tries: 3 }, /^spec\.retry\.tries is not a known field/],
    [{ attempts: -1 }, /^spec\.retry\.attempts must be an integer 0-10, got -1/],
    [{ attempts: 11 }, /^spec\.retry\.attempts must be an integer 0-10/],
    [{ attempts: 1.5 }, /^spec\.retry\.attempts/],
    [{ perTryTimeout: '-1s' }, /^spec\.retry\.perTryTimeout must be a Gateway API duration/],
    [{ perTryTimeout: '0s' }, /^spec\.retry\.perTryTimeout must be from 1ms to 1h, got "0s"/],
    [{ perTryTimeout: 5 }, /^spec\.retry\.perTryTimeout must be a duration such as 10s or 500ms, got 5/],
    [{ retryOn: ['5xx', 'teapot'] }, /^spec\.retry\.retryOn\[1\] must be one of 5xx, gateway-error, reset, connect-failure, retriable-4xx, got "teapot"/],
    [{ retryOn: ['reset', 'reset'] }, /^spec\.retry\.retryOn\[1\] repeats the class "reset"/],
    [{ retryOn: '5xx' }, /^spec\.retry\.retryOn must be an array/],
    [{ retriableStatusCodes: [200] }, /^spec\.retry\.retriableStatusCodes\[0\] must be an HTTP status code 400-599, got 200/],
    [{ retriableStatusCodes: [503, 503] }, /^spec\.retry\.retriableStatusCodes\[1\] repeats the code "503"/],
    [{ backoff: { baseInterval: '1x' } }, /^spec\.retry\.backoff\.baseInterval must be a Gateway API duration/],
    [{ backoff: { baseInterval: '0s' } }, /^spec\.retry\.backoff\.baseInterval must be from 1ms to 1h, got "0s"/],
    [{ backoff: { baseInterval: '100ms', maxInterval: '50ms' } }, /^spec\.retry\.backoff\.maxInterval must not be shorter than baseInterval \(100ms\), got "50ms"/],
    [{ backoff: { jitter: 'none' } }, /^spec\.retry\.backoff\.jitter is not a known field/],
    [{ retryNonIdempotent: 'yes' }, /^spec\.retry\.retryNonIdempotent must be true or false, got "yes"/],
    [{ crossHopCap: 0 }, /^spec\.retry\.crossHopCap must be true or false, got 0/],
    [{ budget: { ratio: -0.1 } }, /^spec\.retry\.budget\.ratio must be a number from 0 to 1000, got -0\.1/],
    [{ budget: { ratio: 1001 } }, /^spec\.retry\.budget\.ratio must be a number from 0 to 1000/],
    [{ budget: { ratio: '0.2' } }, /^spec\.retry\.budget\.ratio must be a number/],
    [{ budget: { minRetriesPerSecond: -1 } }, /^spec\.retry\.budget\.minRetriesPerSecond must be an integer 0-100000, got -1/],
    [{ budget: { window: '500ms' } }, /^spec\.retry\.budget\.window must be from 1s to 5m, got "500ms"/],
    [{ budget: { window: '1h' } }, /^spec\.retry\.budget\.window must be from 1s to 5m, got "1h"/],
    [{ budget: { enabled: 'no' } }, /^spec\.retry\.budget\.enabled must be true or false/],
    [{ budget: { tokens: 3 } }, /^spec\.retry\.budget\.tokens is not a known field/],
  ];
  for (const [v, want] of bad) {
    let err: unknown;
    try {
      validateRetry(v, P, 'reject');
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof FieldError && want.test(err.message), `${JSON.stringify(v)} → ${want}: ${(err as Error | undefined)?.message}`);
  }
});

const spec = (over: Partial<RetryBudgetSpec> = {}): RetryBudgetSpec => ({ ...DEFAULT_RETRY_BUDGET, ...over });

t.test('budget: retries ≤ ratio × requests + the floor, within the window', async (t) => {
  const clock = new ManualClock(1_000_000);
  const b = new RetryBudget(spec({ ratio: 0.2, minRetriesPerSecond: 0, window: '10s' }), clock);
  t.equal(b.withdraw(), false, 'no request yet, no floor: no retry');
  for (let i = 0; i < 100; i++) b.deposit();
  let granted = 0;
  while (b.withdraw()) granted++;
  t.equal(granted, 20, '100 requests at ratio 0.2 earn 20 retries');
  clock.advance(10_000);
  t.equal(b.available(), 0, 'a window later, the requests and the retries have both expired');
  for (let i = 0; i < 10; i++) b.deposit();
  t.equal(b.withdraw(), true, '10 requests earn 2 retries');
  t.equal(b.withdraw(), true);
  t.equal(b.withdraw(), false);
});

t.test('budget: the floor is minRetriesPerSecond × window, whatever the traffic', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget(spec({ ratio: 0.2, minRetriesPerSecond: 2, window: '10s' }), clock);
  let granted = 0;
  while (b.withdraw()) granted++;
  t.equal(granted, 20, '2/s over 10 s');
  clock.advance(5000);
  t.equal(b.withdraw(), false, 'half a window later the retries still count');
  clock.advance(5000);
  t.equal(Math.round(b.available()), 20, 'a whole window later they have expired');
});

t.test('budget: the window expires slot by slot', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget(spec({ ratio: 1, minRetriesPerSecond: 0, window: '10s' }), clock);
  for (let i = 0; i < 10; i++) {
    b.deposit();
    clock.advance(1000);
  }
  t.equal(Math.round(b.available()), 9, 'the first second has gone out of the window');
  clock.advance(4000);
  t.equal(Math.round(b.available()), 5);
  clock.advance(60_000);
  t.equal(Math.round(b.available()), 0, 'a long pause clears everything');
});

t.test('budget: charges (retries made by a hop above) count even past zero; disabled grants everything', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget(spec({ ratio: 0.2, minRetriesPerSecond: 0 }), clock);
  for (let i = 0; i < 10; i++) b.deposit();
  b.charge();
  b.charge();
  b.charge();
  t.equal(Math.round(b.available() * 10) / 10, -1, '2 earned, 3 charged');
  t.equal(b.withdraw(), false, 'so this hop adds none of its own');
  const off = new RetryBudget(spec({ enabled: false, minRetriesPerSecond: 0 }), clock);
  t.equal(off.withdraw(), true);
});

t.test('budgets: one per Service, made afresh when its spec object changes', async (t) => {
  const clock = new ManualClock(0);
  const budgets = new RetryBudgets(clock, 2);
  const s1 = spec();
  const a = budgets.forService('demo', 'echo', s1);
  t.equal(budgets.forService('demo', 'echo', s1), a, 'the same budget while the spec is the same object');
  t.not(budgets.forService('demo', 'other', s1), a);
  const s2 = spec();
  t.not(budgets.forService('demo', 'echo', s2), a, 'a new spec object (a changed policy): a new budget');
  budgets.forService('demo', 'third', s1);
  budgets.forService('demo', 'fourth', s1);
  t.not(budgets.forService('demo', 'echo', s2), a, 'bounded: the least recently used Service was forgotten');
  t.same(budgets.views(), [
    { namespace: 'demo', name: 'echo', ratio: 0.2, minRetriesPerSecond: 2, window: '10s', available: 20 },
    { namespace: 'demo', name: 'fourth', ratio: 0.2, minRetriesPerSecond: 2, window: '10s', available: 20 },
  ], 'the admin view: each Service kept and the retries its budget allows now');
});

const rules = (over: Partial<RetryRules> = {}): RetryRules => ({ codes: [], attempts: 3, backoffMs: 25, ...over });

t.test('retriable: GEP-1731 (no classes) retries its codes and every attempt without a response', async (t) => {
  const r = rules({ codes: [503] });
  t.equal(retriable(r, { status: 503 }), true);
  t.equal(retriable(r, { status: 500 }), false);
  for (const failure of ['connect', 'reset', 'timeout'] as const) t.equal(retriable(r, { failure }), true, failure);
});

t.test('retriable: the retry-on classes', async (t) => {
  const cases: [RetryRules['retryOn'], Parameters<typeof retriable>[1], boolean][] = [
    [['5xx'], { status: 500 }, true], [['5xx'], { status: 599 }, true], [['5xx'], { status: 499 }, false],
    [['5xx'], { failure: 'reset' }, true], [['5xx'], { failure: 'connect' }, true], [['5xx'], { failure: 'timeout' }, true],
    [['gateway-error'], { status: 502 }, true], [['gateway-error'], { status: 503 }, true], [['gateway-error'], { status: 504 }, true],
    [['gateway-error'], { status: 500 }, false], [['gateway-error'], { failure: 'reset' }, true],
    [['reset'], { failure: 'reset' }, true], [['reset'], { failure: 'timeout' }, true], [['reset'], { failure: 'connect' }, false], [['reset'], { status: 503 }, false],
    [['connect-failure'], { failure: 'connect' }, true], [['connect-failure'], { failure: 'reset' }, false],
    [['retriable-4xx'], { status: 409 }, true], [['retriable-4xx'], { status: 404 }, false],
    [[], { failure: 'connect' }, false], [[], { status: 503 }, false],
  ];
  for (const [retryOn, end, want] of cases) t.equal(retriable(rules({ retryOn }), end), want, `${JSON.stringify(retryOn)} ${JSON.stringify(end)}`);
  t.equal(retriable(rules({ retryOn: [], codes: [429] }), { status: 429 }), true, 'retriable status codes on top of the classes');
});

t.test('retryRefusal: attempts, methods, the cross-hop cap, the budget', async (t) => {
  const r = rules({ codes: [503], attempts: 2 });
  t.equal(retryRefusal(r, 1, { status: 200 }, 'GET', false), 'not-retriable');
  t.equal(retryRefusal(r, 1, { status: 503 }, 'GET', false), undefined, 'after the first try');
  t.equal(retryRefusal(r, 2, { status: 503 }, 'GET', false), undefined, 'after the second');
  t.equal(retryRefusal(r, 3, { status: 503 }, 'GET', false), 'exhausted', 'attempts 2 → 3 tries');

  const idem = rules({ codes: [503], idempotentOnly: true });
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) t.equal(retryRefusal(idem, 1, { status: 503 }, m, false), undefined, m);
  for (const m of ['POST', 'PATCH', 'CONNECT']) t.equal(retryRefusal(idem, 1, { status: 503 }, m, false), 'non-idempotent', m);
  t.equal(retryRefusal(idem, 1, { failure: 'reset' }, 'POST', false), 'non-idempotent', 'a reset may have run the POST');
  t.equal(retryRefusal(idem, 1, { failure: 'connect' }, 'POST', false), undefined, 'a connection never made: the POST never ran');
  t.equal(retryRefusal(rules({ codes: [503] }), 1, { status: 503 }, 'POST', false), undefined, 'a route retry (no policy) retries any method, as GEP-1731');

  t.equal(retryRefusal(r, 1, { status: 503 }, 'GET', true), 'cross-hop', 'a request a hop above retried is not retried again');
  t.equal(retryRefusal(r, 1, { failure: 'connect' }, 'GET', true), undefined, 'unless the endpoint could not be reached');
  t.equal(retryRefusal(rules({ codes: [503], crossHopCap: false }), 1, { status: 503 }, 'GET', true), undefined, 'cap off: retried');

  const clock = new ManualClock(0);
  const budget = new RetryBudget(spec({ ratio: 0, minRetriesPerSecond: 0 }), clock);
  t.equal(retryRefusal(rules({ codes: [503], budget }), 1, { status: 503 }, 'GET', false), 'budget');
  budget.deposit();
  const rich = new RetryBudget(spec({ ratio: 1, minRetriesPerSecond: 0 }), clock);
  rich.deposit();
  t.equal(retryRefusal(rules({ codes: [503], budget: rich }), 1, { status: 503 }, 'GET', false), undefined);
  t.equal(Math.round(rich.available()), 0, 'the retry was taken from the budget');
  t.equal(retryRefusal(rules({ codes: [503], budget: rich }), 1, { status: 200 }, 'GET', false), 'not-retriable');
  t.equal(Math.round(rich.available()), 0, 'a refusal for another reason takes nothing');
});

t.test('countRequest: an original request earns, a marked one costs (cap on); cap off: both earn', async (t) => {
  const clock = new ManualClock(0);
  const budget = new RetryBudget(spec({ ratio: 0.5, minRetriesPerSecond: 0 }), clock);
  const r = rules({ budget });
  countRequest(r, false);
  countRequest(r, false);
  t.equal(budget.available(), 1);
  countRequest(r, true);
  t.equal(budget.available(), 0);
  countRequest(rules({ budget, crossHopCap: false }), true);
  t.equal(budget.available(), 0.5);
  countRequest(rules(), true);
  t.pass('no budget: nothing to count');
});

t.test('backoff: full jitter between 0 and base × 2^(n-1), capped', async (t) => {
  t.equal(backoffDelay(1, { initialMs: 25, maxMs: 250, jitter: 'full' }, () => 0), 0);
  t.equal(backoffDelay(1, { initialMs: 25, maxMs: 250, jitter: 'full' }, () => 0.999), 25);
  t.equal(backoffDelay(3, { initialMs: 25, maxMs: 250, jitter: 'full' }, () => 0.5), 50, '100 × 0.5');
  t.equal(backoffDelay(10, { initialMs: 25, maxMs: 250, jitter: 'full' }, () => 0.999), 250, 'the cap');
  const r = rules({ backoffMs: 25, backoffMaxMs: 250 });
  t.equal(retryDelayMs(r, 2, () => 0.5), 25);
  t.equal(retryDelayMs(rules({ backoffMs: 40 }), 5, () => 0), 40, 'without a cap (a route retry): the fixed GEP-1731 interval');
});

t.test('resolveRetry: the route rule wins for codes/attempts/backoff; the policy adds the rest; limits hold for both', async (t) => {
  const clock = new ManualClock(0);
  const budget = new RetryBudget(DEFAULT_RETRY_BUDGET, clock);
  t.equal(resolveRetry(undefined, undefined, budget), undefined, 'neither: no retries');

  const route = { codes: new Set([500]), attempts: 1, backoffMs: 100 };
  const onlyRoute = resolveRetry(route, undefined, budget)!;
  t.same(onlyRoute.rules, { codes: [500], attempts: 1, backoffMs: 100, budget, crossHopCap: true }, 'a route retry gets the default budget and the cap');
  t.equal(onlyRoute.perTryTimeoutMs, undefined);

  const policy = validateRetry({ attempts: 3, perTryTimeout: '1s', retryOn: ['5xx'], retriableStatusCodes: [409] }, P, 'reject');
  const onlyPolicy = resolveRetry(undefined, policy, budget)!;
  t.same(onlyPolicy.rules, { codes: [409], attempts: 3, backoffMs: 25, backoffMaxMs: 250, retryOn: ['5xx'], idempotentOnly: true, budget, crossHopCap: true });
  t.equal(onlyPolicy.perTryTimeoutMs, 1000);

  const both = resolveRetry(route, policy, budget)!;
  t.same(both.rules, { codes: [500, 409], attempts: 1, backoffMs: 100, retryOn: ['5xx'], idempotentOnly: true, budget, crossHopCap: true },
    'the rule\'s attempts and fixed backoff; its codes plus the policy\'s; the policy\'s classes and method rule');
  t.equal(both.perTryTimeoutMs, 1000);

  const off = validateRetry({ budget: { enabled: false }, crossHopCap: false }, P, 'reject');
  t.same(resolveRetry(route, off, budget)!.rules, { codes: [500], attempts: 1, backoffMs: 100, retryOn: ['gateway-error', 'connect-failure', 'reset'], idempotentOnly: true, crossHopCap: false },
    'a policy may switch the budget and the cap off, for the route\'s retries too');
});
