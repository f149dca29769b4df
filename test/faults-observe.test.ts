// Reading a ztunnel's Prometheus text (src/faults/observe.ts), shared by the fault
// suite and the e2e tests: which samples a label filter sums, and what "no sample" is.
import t from 'tap';
import { counterSum, metricSum } from '../src/faults/observe';

const TEXT = [
  '# HELP istio_tcp_connections_opened_total Connections opened',
  '# TYPE istio_tcp_connections_opened_total counter',
  'istio_tcp_connections_opened_total{reporter="source",response_flags="-"} 3',
  'istio_tcp_connections_opened_total{reporter="destination",response_flags="-"} 4',
  'istio_tcp_connections_opened_total_extra{reporter="source"} 100',
  'nodejs_heap_size_used_bytes 2048',
].join('\n');

t.test('metricSum: the matching samples of that metric only; NaN when none matches', async (t) => {
  t.equal(metricSum(TEXT, 'istio_tcp_connections_opened_total'), 7, 'every series, not a longer name');
  t.equal(metricSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 3);
  t.equal(metricSum(TEXT, 'nodejs_heap_size_used_bytes'), 2048, 'a metric without labels');
  t.ok(Number.isNaN(metricSum(TEXT, 'istio_tcp_connections_failed_total')), 'absent: NaN, not a made-up 0');
  t.ok(Number.isNaN(metricSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'nobody' })));
});

t.test('counterSum: the same sum, but 0 for a counter nothing was counted in yet', async (t) => {
  t.equal(counterSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 4);
  t.equal(counterSum(TEXT, 'istio_tcp_connections_failed_total', { response_flags: 'DENY' }), 0);
});
