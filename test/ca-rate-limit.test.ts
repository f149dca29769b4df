/** The CA's rate limits (token buckets, src/lib/token-bucket.ts), pure, with a manual clock: no sleeps. */
import t from 'tap';
import { MethodRateLimiter, limitsFor } from '../src/ca/rate-limit';
import type { Clock } from '../src/lib/clock';
import { isWeftError } from '../src/lib/errors';

function manualClock(): Clock & { t: number } {
  return { t: 0, now() { return this.t; }, setTimeout: () => { throw new Error('no timers'); }, clearTimeout: () => {} };
}

const refusal = (f: () => void): Error & { details?: { scope?: string; retryAfterSeconds?: number } } => {
  try { f(); } catch (e) { return e as Error; }
  throw new Error('expected a refusal');
};

t.test('per-caller limit first, then the overall one; the refusal says which and what to do', async (t) => {
  const clock = manualClock();
  const l = new MethodRateLimiter('CreateCertificate', { perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 1, burst: 3 } }, clock);
  l.check('node node-1');
  l.check('node node-1');
  const caller = (() => { try { l.check('node node-1'); } catch (e) { return e; } })();
  t.ok(isWeftError(caller, 'WEFT_CA_RATE_LIMITED'));
  t.equal((caller as { details?: { scope?: string } }).details?.scope, 'caller');
  t.match((caller as Error).message, /CreateCertificate from node node-1 exceeds 1\/s per caller \(bursts of 2\); retry in 1 s, .*--csr-rate/);
  t.equal((caller as { details?: { retryAfterSeconds?: number } }).details?.retryAfterSeconds, 1);
  l.check('node node-2');
  const overall = (() => { try { l.check('node node-3'); } catch (e) { return e; } })();
  t.ok(isWeftError(overall, 'WEFT_CA_RATE_LIMITED'));
  t.equal((overall as { details?: { scope?: string } }).details?.scope, 'overall');
  t.match((overall as Error).message, /more than 1 CreateCertificate requests\/s from all callers together \(bursts of 3\); retry in 1 s, .*--csr-rate/);
  clock.t += 1000;
  t.doesNotThrow(() => l.check('node node-3'), 'refilled after a second');
  const join = new MethodRateLimiter('Join', limitsFor(1), clock);
  const msg = (() => { for (let i = 0; i < 20; i++) { try { join.check('address 10.0.0.1'); } catch (e) { return (e as Error).message; } } return ''; })();
  t.match(msg, /--join-rate/, 'Join names its own flag');
});

t.test('a call refused on the overall limit costs the caller no token', async (t) => {
  const clock = manualClock();
  const l = new MethodRateLimiter('CreateCertificate', { perCaller: { perSecond: 1, burst: 2 }, overall: { perSecond: 1, burst: 1 } }, clock);
  l.check('node node-1');
  // node-2 is refused because everybody together is over the limit, again and again.
  for (let i = 0; i < 3; i++) t.equal(refusal(() => l.check('node node-2')).details?.scope, 'overall');
  clock.t += 1000;
  l.check('node node-2');
  clock.t += 1000;
  // Its own burst of 2 is intact: had the refusals taken its tokens, this would say 'caller'.
  t.doesNotThrow(() => l.check('node node-2'), 'node-2 still has its second token');
});

t.test('limitsFor: caller rate r with bursts of 10r; everyone 50r with bursts of 100r', async (t) => {
  t.same(limitsFor(2), { perCaller: { perSecond: 2, burst: 20 }, overall: { perSecond: 100, burst: 200 } });
});
