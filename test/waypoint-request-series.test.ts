// The waypoint's request metrics are kept per label set in plain numbers
// (src/waypoint/request-series.ts) and read by prom-client's registry at scrape time:
// what a scrape shows must be what prom-client's own Counter and Histogram would show
// for the same requests, byte for byte, and a removed label set must be gone.
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { RequestSeries } from '../src/waypoint/request-series';
import { seriesKey } from '../src/lib/metric-series';

const BUCKETS = [0.5, 1, 5, 10, 1000, 1e8];
type L = Record<'reporter' | 'source_workload' | 'response_code', string>;
const sets: L[] = [
  { reporter: 'waypoint', source_workload: 'client', response_code: '200' },
  { reporter: 'waypoint', source_workload: 'unknown', response_code: '503' },
  { reporter: 'waypoint', source_workload: 'we"ird\\name\n', response_code: '200' },
];
// Values on the bounds, between them, past the last, zero, fractions.
const values = [0, 0.5, 0.51, 1, 3, 5, 10, 999.9, 1000, 1e8, 2e8, 0.25];

function both(): { ours: Registry; theirs: Registry; series: RequestSeries<L>; counter: Counter<keyof L & string>; hists: Histogram<keyof L & string>[] } {
  const ours = new Registry();
  const theirs = new Registry();
  const series = new RequestSeries<L>(ours, { name: 'weft_test_requests_total', help: 'Requests.' }, [
    { name: 'weft_test_duration', help: 'Duration.', buckets: BUCKETS },
    { name: 'weft_test_bytes', help: 'Bytes.', buckets: [1, 10, 100] },
  ]);
  const labelNames = ['reporter', 'source_workload', 'response_code'] as const;
  const counter = new Counter({ name: 'weft_test_requests_total', help: 'Requests.', labelNames, registers: [theirs] });
  const hists = [
    new Histogram({ name: 'weft_test_duration', help: 'Duration.', labelNames, buckets: BUCKETS, registers: [theirs] }),
    new Histogram({ name: 'weft_test_bytes', help: 'Bytes.', labelNames, buckets: [1, 10, 100], registers: [theirs] }),
  ];
  return { ours, theirs, series, counter, hists };
}

t.test('a scrape reads as prom-client\'s own Counter and Histograms would write it', async (t) => {
  const { ours, theirs, series, counter, hists } = both();
  let fresh = 0;
  values.forEach((v, i) => {
    const labels = sets[i % sets.length]!;
    if (series.add(seriesKey(labels), labels, [v, i * 7])) fresh++;
    counter.inc(labels);
    hists[0]!.observe(labels, v);
    hists[1]!.observe(labels, i * 7);
  });
  t.equal(fresh, sets.length, 'add() says which label sets are new');
  const text = await ours.metrics();
  t.equal(text, await theirs.metrics(), 'exposition text');
  // prom-client's buckets also carry `exemplar: null` (exemplars are off); the rest is the same.
  const json = async (r: Registry) => JSON.parse(JSON.stringify(await r.getMetricsAsJSON(), (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
  t.same(await json(ours), await json(theirs), 'JSON');
  t.comment(text.split('\n').slice(0, 6).join('\n'));
});

t.test('a removed label set leaves the scrape', async (t) => {
  const { ours, theirs, series, counter, hists } = both();
  for (const labels of sets) {
    series.add(seriesKey(labels), labels, [1, 1]);
    counter.inc(labels);
    for (const h of hists) h.observe(labels, 1);
  }
  series.remove(seriesKey(sets[1]!));
  counter.remove(sets[1]!);
  for (const h of hists) h.remove(sets[1]!);
  const text = await ours.metrics();
  t.notMatch(text, /source_workload="unknown"/);
  t.equal(text, await theirs.metrics());
});

t.test('a value that is not a finite number is left out of its histogram, as prom-client refuses it; the request still counts', async (t) => {
  const { ours, theirs, series, counter, hists } = both();
  const labels = sets[0]!;
  for (const v of [2, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 7]) {
    series.add(seriesKey(labels), labels, [v, 3]);
    counter.inc(labels);
    for (const [i, h] of hists.entries()) {
      try {
        h.observe(labels, i === 0 ? v : 3);
      } catch { /* prom-client: "Value is not a valid number" */ }
    }
  }
  const text = await ours.metrics();
  t.match(text, /weft_test_duration_sum\{[^}]*\} 9\n/, 'the sum of the finite values');
  t.match(text, /weft_test_duration_count\{[^}]*\} 2\n/);
  t.match(text, /weft_test_requests_total\{[^}]*\} 5\n/, 'every request counted');
  t.equal(text, await theirs.metrics());
});
