/**
 * The refusal-log rate limiter and the untrusted-string cutter, driven by a manual
 * clock: N lines per interval, drops counted and reported on the next line, bounded
 * keys that cycling cannot defeat.
 */
import t from 'tap';
import { createLogger } from '../src/lib/log';
import { LogLimiter, OVERFLOW_KEY, truncateForLog } from '../src/lib/log-limiter';
import { ManualClock } from './helpers/clock';
import { LogLines } from './helpers/log-lines';

function captureLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const destination = new LogLines();
  return { logger: createLogger({ level: 'info', component: 'test', destination }), lines: destination.lines };
}

t.test('lets burst lines through per interval, then counts the rest', async (t) => {
  const clock = new ManualClock(1_000_000);
  const lim = new LogLimiter({ burst: 3, intervalMs: 1000, clock });
  t.same([lim.take('LOOP'), lim.take('LOOP'), lim.take('LOOP')], [0, 0, 0]);
  for (let i = 0; i < 1000; i++) t.equal(lim.take('LOOP'), undefined);
  // Another key has its own bucket.
  t.equal(lim.take('DENY'), 0);
  // A third of the interval refills one line, which reports the 1000 drops.
  clock.advance(334);
  t.equal(lim.take('LOOP'), 1000);
  t.equal(lim.take('LOOP'), undefined);
  // A long pause refills to the burst, never beyond.
  clock.advance(60_000);
  t.same([lim.take('LOOP'), lim.take('LOOP'), lim.take('LOOP'), lim.take('LOOP')], [1, 0, 0, undefined]);
  t.equal(clock.armed.length, 0, 'the limiter arms no timers');
});

t.test('log() writes the allowed lines and says how many were suppressed', async (t) => {
  const clock = new ManualClock(1_000_000);
  const { logger, lines } = captureLogger();
  const lim = new LogLimiter({ burst: 1, intervalMs: 1000, clock });
  let logged = 0;
  for (let i = 0; i < 10_000; i++) if (lim.log(logger, 'warn', 'LOOP', { dst: '10.0.0.1:15001' }, 'refused')) logged++;
  clock.advance(1000);
  t.ok(lim.log(logger, 'warn', 'LOOP', { dst: '10.0.0.1:15001' }, 'refused'));
  t.equal(logged, 1);
  t.equal(lines.length, 2);
  t.equal(lines[0]!.msg, 'refused');
  t.equal(lines[0]!.suppressed, undefined);
  t.equal(lines[1]!.msg, 'refused (suppressed 9999 similar lines)');
  t.equal(lines[1]!.suppressed, 9999);
  t.equal(lines[1]!.level, 'warn');
});

t.test('keys are bounded and cycling new keys cannot multiply the rate', async (t) => {
  const clock = new ManualClock(1_000_000);
  const lim = new LogLimiter({ burst: 1, intervalMs: 1000, maxKeys: 4, clock });
  let allowed = 0;
  for (let i = 0; i < 10_000; i++) if (lim.take(`k${i}`) !== undefined) allowed++;
  // 4 own buckets + one shared overflow bucket, one line each.
  t.equal(allowed, 5);
  t.ok(lim.size <= 5);
  // Once the busy keys are idle (refilled, nothing owed), new keys get their own buckets again.
  clock.advance(1000);
  t.equal(lim.take('fresh'), 0);
  t.ok(lim.size <= 5);
  // The overflow bucket kept its drop count and reports it.
  t.equal(lim.take(OVERFLOW_KEY), 10_000 - 5);
});

t.test('a key that owes a suppressed count is not forgotten', async (t) => {
  const clock = new ManualClock(1_000_000);
  const lim = new LogLimiter({ burst: 1, intervalMs: 1000, maxKeys: 1, clock });
  t.equal(lim.take('a'), 0);
  t.equal(lim.take('a'), undefined);
  clock.advance(5000);
  // 'a' is refilled but owes 1: 'b' goes to the overflow bucket instead of evicting it.
  t.equal(lim.take('b'), 0);
  t.equal(lim.take('a'), 1);
});

t.test('truncateForLog cuts long untrusted strings and says how much was cut', async (t) => {
  t.equal(truncateForLog('short'), 'short');
  t.equal(truncateForLog(undefined), undefined);
  t.equal(truncateForLog(42), '42');
  const big = 'a'.repeat(64 * 1024);
  const cut = truncateForLog(big)!;
  t.equal(cut, `${'a'.repeat(256)}…(${64 * 1024 - 256} more bytes)`);
  t.ok(cut.length < 300);
  t.equal(truncateForLog('x'.repeat(10), 4), 'xxxx…(6 more bytes)');
  // Multi-byte characters count as bytes; a surrogate pair is never split.
  t.equal(truncateForLog('ééé', 1), 'é…(4 more bytes)');
  t.equal(truncateForLog('a😀b', 2), 'a…(5 more bytes)');
});
