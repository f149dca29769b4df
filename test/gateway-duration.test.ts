// Gateway API durations (src/gateway/duration.ts, GEP-2257): what the API server accepts, in ms.
import t from 'tap';
import { DURATION_PATTERN, DurationError, formatGatewayDuration, isDuration, parseDuration } from '../src/gateway/duration';

t.test('valid durations in milliseconds', async (t) => {
  const cases: Array<[string, number]> = [
    ['0s', 0], ['0ms', 0], ['1ms', 1], ['500ms', 500], ['10s', 10_000], ['1m', 60_000], ['1h', 3_600_000],
    ['1h30m', 5_400_000], ['1h1m1s1ms', 3_661_001], ['99999h', 99_999 * 3_600_000], ['1s1s', 2000], ['1s500ms', 1500],
    ['00001s', 1000],
  ];
  for (const [s, ms] of cases) t.equal(parseDuration(s), ms, s);
});

t.test('refused: what GEP-2257 does not allow', async (t) => {
  for (const s of ['', '0', '1', 's', '1.5s', '-1s', '+1s', ' 1s', '1s ', '1 s', '1us', '1ns', '1d', '1H', '1S', '100000s',
    '1h1m1s1ms1h', '1sms', 'ms', '1m s', '1s\n']) {
    t.throws(() => parseDuration(s), DurationError, JSON.stringify(s));
    t.notOk(isDuration(s));
  }
  t.throws(() => parseDuration('1.5s'), { message: /must be a Gateway API duration such as 10s.*got "1\.5s"/ });
});

t.test('agrees with the GEP-2257 pattern on a sweep of short strings', async (t) => {
  const re = new RegExp(DURATION_PATTERN);
  const alphabet = ['0', '1', '9', 'h', 'm', 's', 'ms', '.', ' '];
  let n = 0;
  const disagree: string[] = [];
  const walk = (prefix: string, depth: number): void => {
    if (depth === 0) return;
    for (const a of alphabet) {
      const s = prefix + a;
      if (isDuration(s) !== re.test(s)) disagree.push(s);
      n++;
      walk(s, depth - 1);
    }
  };
  walk('', 4);
  t.same(disagree, [], 'no string where the two disagree');
  t.ok(n > 5000, `${n} strings`);
});

t.test('formatGatewayDuration: the shortest parts parseDuration reads back', async (t) => {
  t.equal(formatGatewayDuration(0), '0s');
  t.equal(formatGatewayDuration(250), '250ms');
  t.equal(formatGatewayDuration(123_450), '2m3s450ms');
  t.equal(formatGatewayDuration(3_600_000), '1h');
  for (const ms of [1, 999, 1000, 59_999, 60_000, 3_599_999, 100 * 3_600_000]) t.equal(parseDuration(formatGatewayDuration(ms)), ms, `${ms} ms round-trips`);
});
