// The benches' percentile and median (src/bench/stats.ts), shared by every bench so
// their figures are computed one way.
import t from 'tap';
import { median, percentile } from '../src/bench/stats';

t.test('percentile: nearest rank over ascending samples; NaN when empty', async (t) => {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  t.equal(percentile(xs, 50), 6);
  t.equal(percentile(xs, 99), 10);
  t.equal(percentile(xs, 0), 1);
  t.ok(Number.isNaN(percentile([], 50)));
});

t.test('median: unsorted input, a failed run\'s NaN left out, the input untouched', async (t) => {
  const xs = [3, NaN, 1, 2];
  t.equal(median(xs), 2);
  t.ok(Number.isNaN(xs[1]!), 'input not sorted in place');
  t.equal(xs[0], 3);
  t.equal(median([4, 1, 3, 2]), 3, 'even count: the upper middle, as percentile(…, 50)');
  t.ok(Number.isNaN(median([])));
  t.ok(Number.isNaN(median([NaN, Infinity])));
});
