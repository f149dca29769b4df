// Edge validation of the admission sections of TrafficPolicy (faults, rateLimit,
// loadShedding): defaults filled in, and every bad value refused naming its full path.
import t, { type Test } from 'tap';
import { FieldError, type UnknownKeys } from '../src/registry/checks';
import { validateFaults } from '../src/resilience/fault-spec';
import { validateRateLimit } from '../src/resilience/rate-limit-spec';
import { validateLoadShedding } from '../src/resilience/shedding-spec';

type Validator = (v: unknown, path: string, unknown: UnknownKeys) => unknown;

function refuses(t: Test, fn: Validator, v: unknown, field: string, message: RegExp, path: string): void {
  try {
    fn(v, path, 'reject');
  } catch (err) {
    t.ok(err instanceof FieldError, `${field}: a FieldError`);
    t.equal((err as FieldError).field, field, `names ${field}`);
    t.match((err as FieldError).problem, message, `${field}: ${(err as Error).message}`);
    return;
  }
  t.fail(`${JSON.stringify(v)} was accepted; expected a refusal of ${field}`);
}

t.test('faults: defaults and the validated shape', async (t) => {
  t.same(validateFaults({ delay: { fixedDelay: '200ms', percentage: 10 }, abort: { httpStatus: 503, percentage: 50 } }, 'spec.faults', 'reject'),
    { delay: { fixedDelay: '200ms', percentage: 10 }, abort: { httpStatus: 503, percentage: 50 } });
  t.same(validateFaults({ abort: { grpcStatus: 14, percentage: 0.5 }, match: { headers: [{ name: 'X-Chaos', value: 'on' }] } }, 'spec.faults', 'reject'),
    { match: { headers: [{ type: 'Exact', name: 'X-Chaos', value: 'on' }] }, abort: { grpcStatus: 14, percentage: 0.5 } });
  t.same(validateFaults({}, 'spec.faults', 'reject'), {}, 'an empty section injects nothing');
  t.same(validateFaults({ delay: { fixedDelay: '1s', percentage: 1 }, other: 1 }, 'spec.faults', 'drop'), { delay: { fixedDelay: '1s', percentage: 1 } }, 'readers drop unknown fields');
});

t.test('faults: every bad value names its field', async (t) => {
  const p = 'spec.faults';
  const cases: [unknown, string, RegExp][] = [
    [{ abort: { httpStatus: 503, percentage: 150 } }, 'spec.faults.abort.percentage', /0 to 100.*150/],
    [{ abort: { httpStatus: 503, percentage: -1 } }, 'spec.faults.abort.percentage', /0 to 100/],
    [{ abort: { httpStatus: 503 } }, 'spec.faults.abort.percentage', /is required/],
    [{ abort: { httpStatus: 99, percentage: 1 } }, 'spec.faults.abort.httpStatus', /HTTP status.*200-599/],
    [{ abort: { grpcStatus: 0, percentage: 1 } }, 'spec.faults.abort.grpcStatus', /gRPC status other than OK/],
    [{ abort: { httpStatus: 503, grpcStatus: 14, percentage: 1 } }, 'spec.faults.abort', /exactly one of httpStatus/],
    [{ abort: { percentage: 1 } }, 'spec.faults.abort', /exactly one of httpStatus/],
    [{ delay: { fixedDelay: '-1s', percentage: 1 } }, 'spec.faults.delay.fixedDelay', /Gateway API duration/],
    [{ delay: { fixedDelay: '0s', percentage: 1 } }, 'spec.faults.delay.fixedDelay', /from 1ms/],
    [{ delay: { fixedDelay: 200, percentage: 1 } }, 'spec.faults.delay.fixedDelay', /duration such as/],
    [{ delay: { fixedDelay: '2h', percentage: 1 } }, 'spec.faults.delay.fixedDelay', /to 1h/],
    [{ delay: { percentage: 1 } }, 'spec.faults.delay.fixedDelay', /is required/],
    [{ delay: { fixedDelay: '1s', percentage: '10%' } }, 'spec.faults.delay.percentage', /0 to 100/],
    [{ delay: { fixedDelay: '1s', percentage: 1, jitter: 1 } }, 'spec.faults.delay.jitter', /not a known field/],
    [{ abort: { httpStatus: 503, percentage: 1 }, match: { headers: [{ name: 'bad name', value: 'x' }] } }, 'spec.faults.match.headers[0].name', /header name/],
    [{ abort: { httpStatus: 503, percentage: 1 }, match: { headers: [{ type: 'RegularExpression', name: 'x', value: '(a' }] } }, 'spec.faults.match.headers[0].value', /regular expression/],
    [{ abort: { httpStatus: 503, percentage: 1 }, match: { path: '/' } }, 'spec.faults.match.path', /not a known field/],
    ['on', 'spec.faults', /must be an object/],
  ];
  for (const [v, field, message] of cases) refuses(t, validateFaults, v, field, message, p);
});

t.test('rateLimit: defaults and the validated shape', async (t) => {
  t.same(validateRateLimit({ requestsPerSecond: 100 }, 'spec.rateLimit', 'reject'), { requestsPerSecond: 100, burst: 100, key: 'Service' }, 'burst defaults to one second of the rate');
  t.same(validateRateLimit({ requestsPerSecond: 0.5 }, 'spec.rateLimit', 'reject'), { requestsPerSecond: 0.5, burst: 1, key: 'Service' }, 'a burst of at least 1');
  t.same(validateRateLimit({ requestsPerSecond: 10, burst: 5, key: 'Header', header: 'X-Tenant', maxKeys: 50 }, 'spec.rateLimit', 'reject'),
    { requestsPerSecond: 10, burst: 5, key: 'Header', header: 'x-tenant', maxKeys: 50 });
  t.same(validateRateLimit({ requestsPerSecond: 10, key: 'SourceIdentity' }, 'spec.rateLimit', 'reject'), { requestsPerSecond: 10, burst: 10, key: 'SourceIdentity', maxKeys: 10_000 });
});

t.test('rateLimit: every bad value names its field', async (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{}, 'spec.rateLimit.requestsPerSecond', /above 0.*nothing/],
    [{ requestsPerSecond: 0 }, 'spec.rateLimit.requestsPerSecond', /above 0/],
    [{ requestsPerSecond: -5 }, 'spec.rateLimit.requestsPerSecond', /above 0/],
    [{ requestsPerSecond: 10, burst: 1.5 }, 'spec.rateLimit.burst', /an integer above 0/],
    [{ requestsPerSecond: 10, key: 'Ip' }, 'spec.rateLimit.key', /one of Service, SourceIdentity, Header/],
    [{ requestsPerSecond: 10, key: 'Header' }, 'spec.rateLimit.header', /is required with key: Header/],
    [{ requestsPerSecond: 10, header: 'x-a' }, 'spec.rateLimit.header', /only with key: Header/],
    [{ requestsPerSecond: 10, key: 'SourceIdentity', maxKeys: 0 }, 'spec.rateLimit.maxKeys', /above 0/],
    [{ requestsPerSecond: 10, maxKeys: 5 }, 'spec.rateLimit.maxKeys', /only with key: SourceIdentity or Header/],
    [{ requestsPerSecond: 10, unit: 's' }, 'spec.rateLimit.unit', /not a known field/],
  ];
  for (const [v, field, message] of cases) refuses(t, validateRateLimit, v, field, message, 'spec.rateLimit');
});

t.test('loadShedding: defaults and the validated shape', async (t) => {
  t.same(validateLoadShedding({}, 'spec.loadShedding', 'reject'), {
    algorithm: 'Gradient', minLimit: 3, maxLimit: 1000, sampleWindow: '100ms', percentile: 50,
    gradient: { buffer: 25, minRttInterval: '60s', minRttRequests: 50 },
  });
  t.same(validateLoadShedding({ algorithm: 'AIMD', minLimit: 2, maxLimit: 50, aimd: { latencyTarget: '250ms' }, priorityHeader: 'X-Priority' }, 'spec.loadShedding', 'reject'), {
    algorithm: 'AIMD', minLimit: 2, maxLimit: 50, sampleWindow: '100ms', percentile: 50,
    aimd: { latencyTarget: '250ms', backoffRatio: 0.9, increase: 1 }, priorityHeader: 'x-priority',
  });
});

t.test('loadShedding: every bad value names its field', async (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{ minLimit: 0 }, 'spec.loadShedding.minLimit', /integer 1-100000/],
    [{ minLimit: 10, maxLimit: 5 }, 'spec.loadShedding.maxLimit', /at least minLimit \(10\)/],
    [{ sampleWindow: '1ms' }, 'spec.loadShedding.sampleWindow', /from 10ms/],
    [{ sampleWindow: '-5s' }, 'spec.loadShedding.sampleWindow', /Gateway API duration/],
    [{ percentile: 101 }, 'spec.loadShedding.percentile', /0 to 100/],
    [{ percentile: 0 }, 'spec.loadShedding.percentile', /above 0/],
    [{ algorithm: 'Vegas' }, 'spec.loadShedding.algorithm', /one of Gradient, AIMD/],
    [{ algorithm: 'AIMD' }, 'spec.loadShedding.aimd', /is required with algorithm: AIMD/],
    [{ algorithm: 'AIMD', aimd: { latencyTarget: '100ms', backoffRatio: 1.5 } }, 'spec.loadShedding.aimd.backoffRatio', /0.5 to 0.99/],
    [{ algorithm: 'AIMD', aimd: {} }, 'spec.loadShedding.aimd.latencyTarget', /is required/],
    [{ aimd: { latencyTarget: '100ms' } }, 'spec.loadShedding.aimd', /only with algorithm: AIMD/],
    [{ algorithm: 'AIMD', aimd: { latencyTarget: '100ms' }, gradient: {} }, 'spec.loadShedding.gradient', /only with algorithm: Gradient/],
    [{ gradient: { buffer: 200 } }, 'spec.loadShedding.gradient.buffer', /0 to 100/],
    [{ gradient: { minRttInterval: '10ms' } }, 'spec.loadShedding.gradient.minRttInterval', /from 1s/],
    [{ gradient: { minRttRequests: 0 } }, 'spec.loadShedding.gradient.minRttRequests', /integer 1-10000/],
    [{ gradient: { window: 1 } }, 'spec.loadShedding.gradient.window', /not a known field/],
    [{ priorityHeader: 'a b' }, 'spec.loadShedding.priorityHeader', /header name/],
  ];
  for (const [v, field, message] of cases) refuses(t, validateLoadShedding, v, field, message, 'spec.loadShedding');
});

t.test('the validated spec validates to itself (it is stored and read back through the validator)', async (t) => {
  const inputs: [Validator, unknown][] = [
    [validateFaults, { delay: { fixedDelay: '200ms', percentage: 10 }, abort: { grpcStatus: 14, percentage: 50 }, match: { headers: [{ name: 'x-a', value: 'b' }] } }],
    [validateFaults, { abort: { httpStatus: 503, percentage: 50 } }],
    [validateRateLimit, { requestsPerSecond: 100 }],
    [validateRateLimit, { requestsPerSecond: 3, key: 'Header', header: 'X-Tenant' }],
    [validateLoadShedding, {}],
    [validateLoadShedding, { algorithm: 'AIMD', aimd: { latencyTarget: '1s' }, priorityHeader: 'x-p' }],
  ];
  for (const [fn, v] of inputs) {
    const once = fn(v, 'spec.x', 'reject');
    t.same(fn(JSON.parse(JSON.stringify(once)), 'spec.x', 'reject'), once, JSON.stringify(v));
  }
});
