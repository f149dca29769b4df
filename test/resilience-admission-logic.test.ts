// The pure admission logic: fault decisions (injected random), per-key token buckets
// and the adaptive concurrency limiter (manual clock); no sleeps.
import t from 'tap';
import { FaultInjector } from '../src/resilience/fault';
import { validateFaults } from '../src/resilience/fault-spec';
import { MAX_KEY_LENGTH, ServiceRateLimit } from '../src/resilience/rate-limit';
import { validateRateLimit } from '../src/resilience/rate-limit-spec';
import { AdaptiveLimiter, MIN_LIMIT_WINDOWS, percentile } from '../src/resilience/shedding';
import { validateLoadShedding } from '../src/resilience/shedding-spec';
import { ManualClock } from './helpers/clock';

/** A random source that returns `values` in turn. */
const seq = (...values: number[]) => { let i = 0; return () => values[i++ % values.length]!; };

t.test('faults: each at its percentage, drawn independently, delay before abort', async (t) => {
  const spec = validateFaults({ delay: { fixedDelay: '200ms', percentage: 10 }, abort: { httpStatus: 503, percentage: 50 } }, 'f', 'reject');
  // draws: delay then abort per request
  const f = new FaultInjector(spec, seq(0.05, 0.6, 0.2, 0.4, 0.099, 0.499));
  t.same(f.decide({}), { delayMs: 200 }, 'delay drawn (0.05 < 10 %), abort not (0.6 >= 50 %)');
  t.same(f.decide({}), { delayMs: 0, abort: { httpStatus: 503, percentage: 50 } }, 'abort only');
  t.same(f.decide({}), { delayMs: 200, abort: { httpStatus: 503, percentage: 50 } }, 'both, at the edges of their shares');
  // over many uniform draws the shares come out as configured
  let r = 0;
  const even = new FaultInjector(spec, () => ((r = (r * 9301 + 49297) % 233280) / 233280));
  let delays = 0;
  let aborts = 0;
  for (let i = 0; i < 10_000; i++) {
    const d = even.decide({});
    if (d.delayMs) delays++;
    if (d.abort) aborts++;
  }
  t.ok(Math.abs(delays - 1000) < 100, `delays ${delays} ~ 10 %`);
  t.ok(Math.abs(aborts - 5000) < 250, `aborts ${aborts} ~ 50 %`);
});

t.test('faults: 0 % never draws, 100 % always', async (t) => {
  const f = new FaultInjector(validateFaults({ delay: { fixedDelay: '1s', percentage: 0 }, abort: { grpcStatus: 14, percentage: 100 } }, 'f', 'reject'),
    () => { throw new Error('no draw needed'); });
  t.same(f.decide({}), { delayMs: 0, abort: { grpcStatus: 14, percentage: 100 } });
});

t.test('faults: only requests carrying every header of the match', async (t) => {
  const spec = validateFaults({
    abort: { httpStatus: 500, percentage: 100 },
    match: { headers: [{ name: 'X-Chaos', value: 'on' }, { type: 'RegularExpression', name: 'x-user', value: 'test-.*' }] },
  }, 'f', 'reject');
  const f = new FaultInjector(spec);
  t.notOk(f.decide({}).abort, 'no headers');
  t.notOk(f.decide({ 'x-chaos': 'on' }).abort, 'one of two');
  t.notOk(f.decide({ 'x-chaos': 'on', 'x-user': 'prod-1' }).abort, 'regex misses');
  t.notOk(f.decide({ 'x-chaos': 'ON', 'x-user': 'test-1' }).abort, 'values are case-sensitive');
  t.ok(f.decide({ 'x-chaos': 'on', 'x-user': 'test-1' }).abort, 'both match (names case-insensitive)');
  t.ok(f.decide({ 'x-chaos': ['off', 'on'], 'x-user': 'test-1' }).abort, 'any value of a repeated header');
});

t.test('rate limit per Service: the burst, then the rate; a refusal says when to retry and takes nothing', async (t) => {
  const clock = new ManualClock();
  const rl = new ServiceRateLimit(validateRateLimit({ requestsPerSecond: 100, burst: 10 }, 'r', 'reject'), clock);
  let ok = 0;
  for (let i = 0; i < 20; i++) if (rl.take(undefined, {}).ok) ok++;
  t.equal(ok, 10, 'the burst');
  t.same(rl.take(undefined, {}), { ok: false, retryAfterSeconds: 1 }, 'retry-after in whole seconds, at least 1');
  // 500 offered per second for 10 s at an even pace: 100/s + the burst get through
  let accepted = 0;
  for (let i = 0; i < 5000; i++) {
    clock.advance(2);
    if (rl.take(undefined, {}).ok) accepted++;
  }
  t.equal(accepted, 1000, '100/s over 10 s at 500/s offered');
  const slow = new ServiceRateLimit(validateRateLimit({ requestsPerSecond: 0.25 }, 'r', 'reject'), clock);
  t.ok(slow.take(undefined, {}).ok);
  t.same(slow.take(undefined, {}), { ok: false, retryAfterSeconds: 4 }, 'one token every 4 s');
});

t.test('rate limit per source identity and per header: separate buckets, bounded, missing key shared', async (t) => {
  const clock = new ManualClock();
  const byId = new ServiceRateLimit(validateRateLimit({ requestsPerSecond: 1, burst: 2, key: 'SourceIdentity', maxKeys: 3 }, 'r', 'reject'), clock);
  const a = 'spiffe://cluster.local/ns/demo/sa/a';
  const b = 'spiffe://cluster.local/ns/demo/sa/b';
  t.same([byId.take(a, {}).ok, byId.take(a, {}).ok, byId.take(a, {}).ok], [true, true, false], 'a spends its burst');
  t.ok(byId.take(b, {}).ok, 'b has its own');
  t.same([byId.take(undefined, {}).ok, byId.take(undefined, {}).ok, byId.take(undefined, {}).ok], [true, true, false], 'peers without identity share one bucket');
  for (let i = 0; i < 100; i++) byId.take(`spiffe://cluster.local/ns/demo/sa/x${i}`, {});
  t.equal(byId.buckets, 3, 'bounded by maxKeys');

  const byHeader = new ServiceRateLimit(validateRateLimit({ requestsPerSecond: 1, burst: 1, key: 'Header', header: 'X-Tenant' }, 'r', 'reject'), clock);
  t.ok(byHeader.take(a, { 'x-tenant': 'one' }).ok);
  t.notOk(byHeader.take(b, { 'x-tenant': 'one' }).ok, 'same header value, same bucket, whoever sends it');
  t.ok(byHeader.take(a, { 'x-tenant': 'two' }).ok);
  t.ok(byHeader.take(a, {}).ok, 'no header: the shared bucket');
  t.notOk(byHeader.take(a, { 'x-tenant': undefined }).ok, 'which leaving the header out does not escape');
  t.ok(byHeader.take(a, { 'x-tenant': ['three', 'one'] }).ok, 'a repeated header is keyed by its first value');
  const long = 'v'.repeat(MAX_KEY_LENGTH);
  t.ok(byHeader.take(a, { 'x-tenant': `${long}1` }).ok);
  t.notOk(byHeader.take(a, { 'x-tenant': `${long}2` }).ok, 'a key is at most MAX_KEY_LENGTH characters');
});

t.test('rate limit at maxKeys fails closed: new keys never refill a drained one; they share one overflow bucket until a kept bucket is full again', async (t) => {
  const clock = new ManualClock();
  const rl = new ServiceRateLimit(validateRateLimit({ requestsPerSecond: 1, burst: 1, key: 'Header', header: 'x-tenant', maxKeys: 2 }, 'r', 'reject'), clock);
  const as = (v: string) => rl.take(undefined, { 'x-tenant': v }).ok;
  t.same([as('noisy'), as('noisy')], [true, false], 'noisy is limited');
  t.ok(as('k1'), 'a second key has its own bucket (now at maxKeys)');
  for (let i = 0; i < 50; i++) as(`flood${i}`);
  t.notOk(as('noisy'), 'a flood of new keys did not evict (and so refill) noisy');
  t.equal(rl.buckets, 2, 'still bounded');
  t.same(rl.take(undefined, { 'x-tenant': 'new' }), { ok: false, retryAfterSeconds: 1 }, 'a new key shares the drained overflow bucket, with its retry-after');
  clock.advance(1000);
  t.ok(as('k2'), 'a kept bucket full again (k1, the least recently used) makes room for a new key');
  t.ok(as('k1'), 'k1, forgotten once full, comes back full: nothing was lost');
  t.equal(rl.buckets, 2);
});

t.test('percentile: nearest rank', async (t) => {
  t.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  t.equal(percentile([5, 1, 3, 2, 4], 100), 5);
  t.equal(percentile([5, 1, 3, 2, 4], 1), 1);
  t.equal(percentile([7], 90), 7);
});

const shedding = (v: Record<string, unknown>) => validateLoadShedding(v, 'spec.loadShedding', 'reject');

/** Runs `n` requests through `l` one after another, each taking `ms`. */
function serial(l: AdaptiveLimiter, clock: ManualClock, n: number, ms: number): void {
  for (let i = 0; i < n; i++) {
    const at = clock.now();
    if (!l.tryAcquire('normal')) throw new Error('serial request shed');
    clock.advance(ms);
    l.release(at, ms);
  }
}

/**
 * Drives `l` for `windows` sample windows against a backend of `capacity` parallel
 * workers each taking `serviceMs`: beyond capacity a request queues, so its latency
 * grows with the queue. Offered: `concurrency` requests at once (a closed loop).
 * Returns the limits seen at the end of each window.
 */
function saturate(l: AdaptiveLimiter, clock: ManualClock, windows: number, opts: { capacity: number; serviceMs: number; concurrency: number; windowMs: number }): number[] {
  const limits: number[] = [];
  const end = clock.now() + windows * opts.windowMs;
  while (clock.now() < end) {
    // Admit as many as the limit lets in (of the offered concurrency), all finishing together:
    // latency = serviceMs × ceil(admitted / capacity), the queue the backend forms.
    const admitted: number[] = [];
    for (let i = 0; i < opts.concurrency; i++) if (l.tryAcquire('normal')) admitted.push(clock.now());
    const latency = opts.serviceMs * Math.max(1, Math.ceil(admitted.length / opts.capacity));
    clock.advance(latency);
    for (const at of admitted) l.release(at, latency);
    if (limits.length < Math.floor((clock.now() - (end - windows * opts.windowMs)) / opts.windowMs)) limits.push(l.limit);
  }
  return limits;
}

t.test('gradient: minRTT measured with the limit pinned, then the limit settles near the backend\'s capacity', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ minLimit: 2, maxLimit: 500, gradient: { minRttRequests: 10, minRttInterval: '60s' } }), clock, () => 0);
  t.same(l.view(), { limit: 2, inFlight: 0, measuring: true }, 'starts measuring minRTT, pinned to minLimit');
  t.ok(l.tryAcquire('normal'));
  t.ok(l.tryAcquire('normal'));
  t.notOk(l.tryAcquire('high'), 'pinned: a third is shed');
  l.release(0, 10);
  l.release(0, 10);
  serial(l, clock, 8, 10);
  t.same(l.view(), { limit: 2, inFlight: 0, minRttMs: 10, measuring: false }, 'measured after minRttRequests');
  const limits = saturate(l, clock, 40, { capacity: 20, serviceMs: 10, concurrency: 200, windowMs: 100 });
  t.comment(`gradient limits per window: ${limits.join(' ')}`);
  const settled = limits.slice(-10);
  t.ok(settled.every((x) => x >= 10 && x <= 60), `settles around the capacity of 20 (last windows: ${settled.join(' ')}), not the 200 offered`);
});

t.test('gradient: the limit falls when latency rises and never leaves [minLimit, maxLimit]', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ minLimit: 3, maxLimit: 40, gradient: { minRttRequests: 5 } }), clock, () => 0);
  serial(l, clock, 5, 10);
  const up = saturate(l, clock, 20, { capacity: 1000, serviceMs: 10, concurrency: 200, windowMs: 100 });
  t.equal(up[up.length - 1], 40, `no queue: grows to maxLimit (${up.join(' ')})`);
  const down = saturate(l, clock, 20, { capacity: 1, serviceMs: 10, concurrency: 200, windowMs: 100 });
  t.equal(down[down.length - 1], 3, `a backend of one worker: down to minLimit (${down.join(' ')})`);
});

t.test('gradient: no demand raises nothing; minRTT is measured again after its interval', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ minLimit: 3, gradient: { minRttRequests: 3, minRttInterval: '10s' } }), clock, () => 0);
  serial(l, clock, 3, 10);
  for (let i = 0; i < 50; i++) serial(l, clock, 1, 100);
  t.equal(l.limit, 3, 'one request at a time never raises the limit');
  clock.advance(10_000);
  t.ok(l.tryAcquire('normal'));
  t.ok(l.view().measuring, 'measuring again after minRttInterval');
  l.release(clock.now() - 1, 50); // began before the measurement: not counted
  serial(l, clock, 3, 20);
  t.equal(l.view().minRttMs, 20, 'minRTT from requests begun during the measurement only');
});

t.test('gradient: a limit held at minLimit for MIN_LIMIT_WINDOWS windows measures minRTT again at once (a backend grown slower for good)', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ minLimit: 3, maxLimit: 100, gradient: { minRttRequests: 5, minRttInterval: '1h' } }), clock, () => 0);
  serial(l, clock, 5, 10);
  t.equal(l.view().minRttMs, 10);
  // The backend now takes 100 ms however few requests it has: no queue, just slower.
  const slow = saturate(l, clock, MIN_LIMIT_WINDOWS, { capacity: 1000, serviceMs: 100, concurrency: 50, windowMs: 100 });
  t.same(slow, Array(MIN_LIMIT_WINDOWS).fill(3), 'held at minLimit against the old minRTT');
  t.equal(l.view().minRttMs, 10, 'not measured again yet');
  const after = saturate(l, clock, 20, { capacity: 1000, serviceMs: 100, concurrency: 50, windowMs: 100 });
  t.equal(l.view().minRttMs, 100, `measured again soon after ${MIN_LIMIT_WINDOWS} windows at minLimit, not after minRttInterval (1h)`);
  t.ok(after[after.length - 1]! >= 40, `the limit grows again (${after.join(' ')})`);
});

t.test('AIMD: back off above the latency target, add while under it and used', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ algorithm: 'AIMD', minLimit: 2, maxLimit: 30, aimd: { latencyTarget: '50ms', backoffRatio: 0.5, increase: 2 } }), clock, () => 0);
  t.notOk(l.view().measuring, 'AIMD measures no minRTT');
  const up = saturate(l, clock, 30, { capacity: 100, serviceMs: 10, concurrency: 100, windowMs: 100 });
  t.equal(up[up.length - 1], 30, `grows by 2 per window to maxLimit (${up.join(' ')})`);
  const down = saturate(l, clock, 30, { capacity: 5, serviceMs: 20, concurrency: 100, windowMs: 100 });
  const tail = down.slice(-10);
  t.ok(tail.every((x) => x >= 2 && x <= 14), `hovers where latency meets the target (capacity 5 x 20 ms, target 50 ms): ${down.join(' ')}`);
});

t.test('priorities: low is shed first, then normal; high may use the whole limit', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ algorithm: 'AIMD', minLimit: 20, maxLimit: 20, aimd: { latencyTarget: '1s' }, priorityHeader: 'x-priority' }), clock);
  t.equal(l.priorityOf({ 'x-priority': 'low' }), 'low');
  t.equal(l.priorityOf({ 'x-priority': 'urgent' }), 'normal', 'an unknown value is normal');
  t.equal(l.priorityOf({}), 'normal');
  let low = 0;
  while (l.tryAcquire('low')) low++;
  t.equal(low, 15, 'low up to 75 % of 20');
  let normal = 0;
  while (l.tryAcquire('normal')) normal++;
  t.equal(normal, 3, 'normal up to 90 %');
  let high = 0;
  while (l.tryAcquire('high')) high++;
  t.equal(high, 2, 'high up to the limit');
  const noHeader = new AdaptiveLimiter(shedding({ algorithm: 'AIMD', minLimit: 20, maxLimit: 20, aimd: { latencyTarget: '1s' } }), clock);
  let n = 0;
  while (noHeader.tryAcquire(noHeader.priorityOf({ 'x-priority': 'low' }))) n++;
  t.equal(n, 20, 'without a priority header every request may use the whole limit');
});

t.test('release without a latency frees the slot but adds no sample', async (t) => {
  const clock = new ManualClock();
  const l = new AdaptiveLimiter(shedding({ minLimit: 1, maxLimit: 10, gradient: { minRttRequests: 1 } }), clock, () => 0);
  t.ok(l.tryAcquire('normal'));
  t.notOk(l.tryAcquire('normal'));
  l.release(0, undefined);
  t.ok(l.view().measuring, 'no sample from a failed request');
  t.equal(l.inFlight, 0);
  t.ok(l.tryAcquire('normal'), 'the slot is free again');
  l.release(0, undefined);
  l.release(0, undefined);
  t.equal(l.inFlight, 0, 'never below 0');
});
