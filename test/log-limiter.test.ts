/**
 * The refusal-log rate limiter and the untrusted-string cutter, driven by a manual
 * clock: N lines per interval per key, drops counted and reported on the next line
 * (same message, a `suppressed` field).
 */
import t from 'tap';
import { createLogger } from '../src/lib/log';
import { LogLimiter, truncateForLog } from '../src/lib/log-limiter';
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
  t.equal(lines[1]!.msg, 'refused', 'the message stays the same, so a query for it finds every line');
  t.equal(lines[1]!.suppressed, 9999);
  t.equal(lines[1]!.level, 'warn');
});

t.test('each key keeps its own drop count until a line reports it', async (t) => {
  const clock = new ManualClock(1_000_000);
  const lim = new LogLimiter({ burst: 1, intervalMs: 1000, clock });
  t.equal(lim.take('a'), 0);
  t.equal(lim.take('b'), 0);
  for (let i = 0; i < 3; i++) t.equal(lim.take('a'), undefined);
  t.equal(lim.take('b'), undefined);
  clock.advance(5000);
  t.equal(lim.take('b'), 1);
  t.equal(lim.take('a'), 3);
  t.equal(lim.size, 2, 'one entry per key, and keys are a fixed set of the caller');
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
