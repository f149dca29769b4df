// The waypoint's request-metric labels stay a bounded set (src/waypoint/metrics.ts): the
// values come from the registry or a fixed vocabulary, and the one an upstream writes
// itself (grpc-status) is kept to gRPC's codes, so a misbehaving upstream cannot grow
// the scrape with a series per response.
import t from 'tap';
import { Registry } from 'prom-client';
import { WaypointMetrics, grpcStatusLabel } from '../src/waypoint/metrics';
import type { RequestRecord } from '../src/waypoint/types';

const record = (grpcStatus: string | undefined, status = 200): RequestRecord => ({
  protocol: 'h2c', grpc: true, method: 'POST', authority: 'echo.demo', path: '/x', status, durationMs: 1, attempts: 1, responseFlag: '-',
  requestBytes: 0, responseBytes: 0, destinationService: { namespace: 'demo', name: 'echo' }, ...(grpcStatus !== undefined ? { grpcStatus } : {}),
} as RequestRecord);

t.test('grpc_response_status keeps gRPC\'s codes and folds anything else into invalid', async (t) => {
  t.equal(grpcStatusLabel(undefined), '');
  for (const c of ['0', '7', '14', '16']) t.equal(grpcStatusLabel(c), c);
  for (const c of ['17', '-1', '01', 'UNAVAILABLE', 'x'.repeat(1000), '14 ']) t.equal(grpcStatusLabel(c), 'invalid');
});

t.test('a thousand different grpc-status values from an upstream make two series, not a thousand', async (t) => {
  const registry = new Registry();
  const m = new WaypointMetrics(registry, { workloadByAddress: () => undefined });
  for (let i = 0; i < 1000; i++) m.onRequest(record(`bogus-${i}`));
  m.onRequest(record('14'));
  const series = (await m.requests.get()).values;
  t.same(series.map((v) => v.labels.grpc_response_status).sort(), ['14', 'invalid']);
  t.equal(series.find((v) => v.labels.grpc_response_status === 'invalid')!.value, 1000);
});
