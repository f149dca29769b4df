/** The shared token buckets, pure, with a manual clock: no sleeps. */
import t from 'tap';
import type { Clock } from '../src/lib/clock';
import { BoundedMap } from '../src/lib/bounded-map';
import { KeyedBuckets, RateLimiter, TokenBucket, perInterval } from '../src/lib/token-bucket';

function manualClock(start = 0): Clock & { t: number } {
  return { t: start, now() { return this.t; }, setTimeout: () => { throw new Error('buckets arm no timers'); }, clearTimeout: () => {} };
}

t.test('a bucket allows its burst, then refills at its rate, never above the burst', async (t) => {
  const clock = manualClock();
  const b = new KeyedBuckets({ perSecond: 2, burst: 3 }, clock);
  t.same([b.tryTake('a'), b.tryTake('a'), b.tryTake('a'), b.tryTake('a')], [true, true, true, false], 'burst of 3');
  clock.t += 499;
  t.notOk(b.tryTake('a'), 'not yet a whole token after 499 ms at 2/s');
  clock.t += 1;
  t.ok(b.tryTake('a'), 'one token after 500 ms');
  t.notOk(b.tryTake('a'));
  clock.t += 3_600_000;
  t.same([b.tryTake('a'), b.tryTake('a'), b.tryTake('a'), b.tryTake('a')], [true, true, true, false], 'an hour of quiet still gives only the burst');
  t.ok(b.tryTake('b'), 'keys are independent');
});

t.test('the number of keys is bounded; the least recently used goes first', async (t) => {
  const b = new KeyedBuckets({ perSecond: 1, burst: 1 }, manualClock(), 3);
  for (const k of ['a', 'b', 'c']) t.ok(b.tryTake(k));
  t.notOk(b.tryTake('a'), 'a is empty (and now the most recent)');
  t.ok(b.tryTake('d'), 'a fourth key evicts the least recently used (b)');
  t.equal(b.size, 3);
  t.notOk(b.tryTake('a'), 'a was kept');
  t.ok(b.tryTake('b'), 'b was dropped, so it starts full again');
});

t.test('invalid limits are refused', async (t) => {
  t.throws(() => new KeyedBuckets({ perSecond: 0, burst: 1 }));
  t.throws(() => new KeyedBuckets({ perSecond: 1, burst: 0.5 }));
  t.throws(() => new TokenBucket({ perSecond: Number.NaN, burst: 1 }));
  t.throws(() => new BoundedMap(0));
});

t.test('retryAfterSeconds: whole seconds until a token, at least 1', async (t) => {
  const clock = manualClock();
  const b = new TokenBucket({ perSecond: 0.25, burst: 1 }, clock);
  t.ok(b.tryTake());
  t.equal(b.retryAfterSeconds(), 4, 'a token every 4 s');
  clock.t += 2500;
  t.equal(b.retryAfterSeconds(), 2, '1.5 s left, rounded up');
  clock.t += 1499;
  t.equal(b.retryAfterSeconds(), 1, 'never 0 while empty');
  clock.t += 1;
  t.ok(b.ready());
  t.ok(b.tryTake());
});

t.test('perInterval: burst per interval, refilled evenly', async (t) => {
  const clock = manualClock();
  const b = new TokenBucket(perInterval(5, 60_000), clock);
  for (let i = 0; i < 5; i++) t.ok(b.tryTake());
  t.notOk(b.tryTake());
  clock.t += 11_999;
  t.notOk(b.tryTake(), 'not yet');
  clock.t += 1;
  t.ok(b.tryTake(), 'one line back after a fifth of the interval');
});

t.test('RateLimiter: the overall bucket caps many callers together; the caller is named first', async (t) => {
  const clock = manualClock();
  const l = new RateLimiter({ perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 2, burst: 3 }, maxCallers: 2 }, clock);
  t.ok(l.take('a').ok);
  t.ok(l.take('a').ok);
  t.same(l.take('a'), { ok: false, scope: 'caller', retryAfterSeconds: 1 });
  t.ok(l.take('b').ok);
  t.same(l.take('b'), { ok: false, scope: 'overall', retryAfterSeconds: 1 });
  t.equal(l.trackedCallers, 2);
  l.take('c');
  t.equal(l.trackedCallers, 2, 'callers tracked are bounded');
});

t.test('RateLimiter: a refused request takes neither token', async (t) => {
  const clock = manualClock();
  const l = new RateLimiter({ perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 1, burst: 1 } }, clock);
  t.ok(l.take('other').ok, 'someone else drains the overall bucket');
  // Refused on the overall limit many times: 'a' must keep its own two tokens.
  for (let i = 0; i < 5; i++) t.match(l.take('a'), { ok: false, scope: 'overall' });
  clock.t += 1000;
  t.ok(l.take('a').ok, 'overall refilled');
  clock.t += 1000;
  t.ok(l.take('a').ok, 'and a still had its own burst');
  // A refusal on the caller's limit does not drain the overall bucket either.
  const m = new RateLimiter({ perCaller: { perSecond: 1, burst: 1 }, overall: { perSecond: 1, burst: 2 } }, clock);
  t.ok(m.take('x').ok);
  for (let i = 0; i < 5; i++) t.match(m.take('x'), { ok: false, scope: 'caller' });
  t.ok(m.take('y').ok, 'the overall bucket still had its second token');
});
