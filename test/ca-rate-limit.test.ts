/** The CA's token buckets, pure, with an injected clock: no sleeps. */
import t from 'tap';
import { MethodRateLimiter, TokenBuckets, limitsFor } from '../src/ca/rate-limit';
import { isWeftError } from '../src/lib/errors';

t.test('a bucket allows its burst, then refills at its rate, never above the burst', async (t) => {
  let now = 0;
  const b = new TokenBuckets({ perSecond: 2, burst: 3 }, () => now);
  t.same([b.take('a'), b.take('a'), b.take('a'), b.take('a')], [true, true, true, false], 'burst of 3');
  now += 499;
  t.notOk(b.take('a'), 'not yet a whole token after 499 ms at 2/s');
  now += 1;
  t.ok(b.take('a'), 'one token after 500 ms');
  t.notOk(b.take('a'));
  now += 3_600_000;
  t.same([b.take('a'), b.take('a'), b.take('a'), b.take('a')], [true, true, true, false], 'an hour of quiet still gives only the burst');
  t.ok(b.take('b'), 'keys are independent');
});

t.test('the number of keys is bounded; the least recently used goes first', async (t) => {
  const b = new TokenBuckets({ perSecond: 1, burst: 1 }, () => 0, 3);
  for (const k of ['a', 'b', 'c']) t.ok(b.take(k));
  t.notOk(b.take('a'), 'a is empty (and now the most recent)');
  t.ok(b.take('d'), 'a fourth key evicts the least recently used (b)');
  t.equal(b.size, 3);
  t.notOk(b.take('a'), 'a was kept');
  t.ok(b.take('b'), 'b was dropped, so it starts full again');
});

t.test('invalid limits are refused', async (t) => {
  t.throws(() => new TokenBuckets({ perSecond: 0, burst: 1 }));
  t.throws(() => new TokenBuckets({ perSecond: 1, burst: 0.5 }));
});

t.test('per-caller limit first, then the overall one; the refusal says which and what to do', async (t) => {
  let now = 0;
  const l = new MethodRateLimiter('CreateCertificate', { perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 1, burst: 3 } }, () => now);
  l.check('node node-1');
  l.check('node node-1');
  const caller = (() => { try { l.check('node node-1'); } catch (e) { return e; } })();
  t.ok(isWeftError(caller, 'WEFT_CA_RATE_LIMITED'));
  t.equal((caller as { details?: { scope?: string } }).details?.scope, 'caller');
  t.match((caller as Error).message, /CreateCertificate from node node-1 exceeds 1\/s per caller \(bursts of 2\).*--csr-rate/);
  l.check('node node-2');
  const overall = (() => { try { l.check('node node-3'); } catch (e) { return e; } })();
  t.ok(isWeftError(overall, 'WEFT_CA_RATE_LIMITED'));
  t.equal((overall as { details?: { scope?: string } }).details?.scope, 'overall');
  t.match((overall as Error).message, /more than 1 CreateCertificate requests\/s from all callers together/);
  now += 1000;
  t.doesNotThrow(() => l.check('node node-3'), 'refilled after a second');
  const join = new MethodRateLimiter('Join', limitsFor(1), () => now);
  const msg = (() => { for (let i = 0; i < 20; i++) { try { join.check('address 10.0.0.1'); } catch (e) { return (e as Error).message; } } return ''; })();
  t.match(msg, /--join-rate/, 'Join names its own flag');
});

t.test('limitsFor: caller rate r with bursts of 10r; everyone 50r with bursts of 100r', async (t) => {
  t.same(limitsFor(2), { perCaller: { perSecond: 2, burst: 20 }, overall: { perSecond: 100, burst: 200 } });
});
