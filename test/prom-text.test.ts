// The Prometheus text parser (src/telemetry/prom-text.ts) the golden-signal views read
// the proxies' /metrics with: samples and labels (escapes included), TYPE and HELP,
// histograms grouped by label set, histogram_quantile's interpolation, and a line it
// cannot read named by its number.
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { histogramQuantile, histogramsOf, parsePromText, samplesOf, valueOf } from '../src/telemetry/prom-text';

t.test('samples, labels, TYPE and HELP; values with exponents, Inf and NaN; timestamps ignored', async (t) => {
  const s = parsePromText([
    '# HELP up_total Things that are up.\\nSecond line with a \\\\ backslash.',
    '# TYPE up_total counter',
    'up_total{a="1",b="two"} 3',
    'up_total{b="x" , a="2",} 1.5e3 1700000000000',
    '# a free comment',
    '',
    'plain 42',
    'inf_gauge +Inf',
    'neg_gauge -Inf',
    'nan_gauge NaN',
    // prom-client's spelling (nodejs_eventloop_lag_mean_seconds before its first sample).
    'nan_prom_client Nan',
    'inf_lower +inf',
    'windows_line 7\r',
  ].join('\n'));
  t.equal(s.types.get('up_total'), 'counter');
  t.equal(s.help.get('up_total'), 'Things that are up.\nSecond line with a \\ backslash.');
  t.same(samplesOf(s, 'up_total'), [
    { name: 'up_total', labels: { a: '1', b: 'two' }, value: 3 },
    { name: 'up_total', labels: { a: '2', b: 'x' }, value: 1500 },
  ]);
  t.equal(valueOf(s, 'plain'), 42);
  t.equal(valueOf(s, 'inf_gauge'), Infinity);
  t.equal(valueOf(s, 'neg_gauge'), -Infinity);
  t.ok(Number.isNaN(valueOf(s, 'nan_gauge')));
  t.ok(Number.isNaN(valueOf(s, 'nan_prom_client')));
  t.equal(valueOf(s, 'inf_lower'), Infinity);
  t.equal(valueOf(s, 'windows_line'), 7);
  t.equal(valueOf(s, 'absent'), undefined);
});

t.test('label values unescape \\\\, \\" and \\n, and may hold braces, commas and equals signs', async (t) => {
  const s = parsePromText('m{path="/a\\"b\\\\c\\nd",q="{x=1, y}"} 1\n');
  t.same(s.samples[0]!.labels, { path: '/a"b\\c\nd', q: '{x=1, y}' });
});

t.test('round trip: what prom-client writes (escaped labels, a histogram) reads back', async (t) => {
  const reg = new Registry();
  const c = new Counter({ name: 'weft_test_total', help: 'a "quoted" help\nwith a newline', labelNames: ['v'], registers: [reg] });
  c.inc({ v: 'back\\slash "quote"\nnewline' }, 2);
  const h = new Histogram({ name: 'weft_test_ms', help: 'h', labelNames: ['k'], buckets: [1, 10, 100], registers: [reg] });
  for (const v of [0.5, 5, 5, 50, 500]) h.observe({ k: 'a' }, v);
  h.observe({ k: 'b' }, 2);
  const s = parsePromText(await reg.metrics());
  t.same(samplesOf(s, 'weft_test_total')[0]!.labels, { v: 'back\\slash "quote"\nnewline' });
  t.equal(samplesOf(s, 'weft_test_total')[0]!.value, 2);
  t.equal(s.types.get('weft_test_ms'), 'histogram');
  const hs = histogramsOf(s, 'weft_test_ms');
  t.equal(hs.length, 2);
  const a = hs.find((x) => x.labels.k === 'a')!;
  t.same(a.labels, { k: 'a' }, 'le is not one of the series labels');
  t.same(a.buckets, [{ le: 1, count: 1 }, { le: 10, count: 3 }, { le: 100, count: 4 }, { le: Infinity, count: 5 }]);
  t.equal(a.count, 5);
  t.equal(a.sum, 560.5);
});

t.test('a line that is not the text format is an error naming the line', async (t) => {
  t.throws(() => parsePromText('ok 1\nbroken{a="1" 2\n'), /line 2 of the metrics text/);
  t.throws(() => parsePromText('m{a="unterminated} 1'), /line 1.*unterminated/);
  t.throws(() => parsePromText('m one'), /"one" is not a number/);
  t.throws(() => parsePromText('m{a=1} 1'), /expected ="..."/);
  t.throws(() => parsePromText('# TYPE m weird'), /unknown metric type/);
  t.throws(() => parsePromText('<html>'), /expected a metric name/);
  t.throws(() => parsePromText('m 1 2 3'), /at most a timestamp/);
});

t.test('histogram_quantile: linear inside the bucket, from 0 in the first, the top finite bound in +Inf', async (t) => {
  const b = [{ le: 10, count: 50 }, { le: 20, count: 90 }, { le: 40, count: 100 }, { le: Infinity, count: 100 }];
  t.equal(histogramQuantile(0.5, b), 10, 'rank 50 ends the first bucket');
  t.equal(histogramQuantile(0.25, b), 5, 'rank 25 is halfway through [0, 10]');
  t.equal(histogramQuantile(0.7, b), 15, 'rank 70 is halfway through (10, 20]');
  t.equal(histogramQuantile(0.95, b), 30);
  t.equal(histogramQuantile(1, b), 40);
  const over = [{ le: 10, count: 1 }, { le: Infinity, count: 10 }];
  t.equal(histogramQuantile(0.99, over), 10, 'a rank in +Inf is the highest finite bound');
  t.equal(histogramQuantile(0.5, [{ le: 1, count: 0 }, { le: Infinity, count: 0 }]), null, 'no observation: no quantile');
  t.equal(histogramQuantile(0.5, []), null);
  t.equal(histogramQuantile(0.5, [{ le: Infinity, count: 3 }]), null, 'only +Inf: nothing to interpolate in');
  t.equal(histogramQuantile(0.5, [{ le: 5, count: 4 }, { le: 10, count: 4 }, { le: Infinity, count: 4 }]), 2.5, 'empty buckets after the rank are skipped');
});
