// Golden signals from two scrapes (src/telemetry/golden-signals.ts), on scrapes recorded
// from the observability lab (test/fixtures/mesh-stats: demo traffic at 20 req/s per
// client for 3 s: demo/client → frontend.demo → echo.demo through demo/waypoint, and
// demo/client → echo.demo), plus hand-made ones for resets, 5xx, plaintext and L4 edges.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePromText, type PromScrape } from '../src/telemetry/prom-text';
import { goldenSignals, saturation, serviceEnd, type ProxyReading } from '../src/telemetry/golden-signals';
import { waypointWorkloads } from '../src/cli/mesh-stats';

const FIX = join(__dirname, 'fixtures', 'mesh-stats');
const fixture = (name: string): PromScrape => parsePromText(readFileSync(join(FIX, `${name}.prom`), 'utf8'));

function readings(tag: 'a' | 'c', atMs: number): ProxyReading[] {
  return [
    { kind: 'ztunnel', proxy: 'ztunnel node-1', atMs, scrape: fixture(`ztunnel-node-1-${tag}`) },
    { kind: 'ztunnel', proxy: 'ztunnel node-2', atMs, scrape: fixture(`ztunnel-node-2-${tag}`) },
    { kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', atMs, scrape: fixture(`waypoint-${tag}`) },
  ];
}

const WAYPOINTS = waypointWorkloads([{ kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', baseUrl: 'http://x:15020' }]);

t.test('the lab recording: three L7 edges at 60 requests in the window, all 2xx, mTLS, with the client hops\' L4 figures', async (t) => {
  const m = goldenSignals(readings('a', 0), readings('c', 5000), { waypointWorkloads: WAYPOINTS });
  t.same(m.warnings, []);
  t.equal(m.windowSeconds, 5);
  const names = m.edges.map((e) => `${e.source.namespace}/${e.source.name} → ${e.destination.namespace}/${e.destination.name} ${e.protocol}`).sort();
  t.same(names, ['demo/client → demo/echo http', 'demo/client → demo/frontend http', 'demo/frontend → demo/echo http'],
    'the waypoint\'s hops to the pods are not edges of their own');
  for (const e of m.edges) {
    t.comment(`${e.source.name} → ${e.destination.name}: ${e.rps} rps, success ${e.successRate}, p50 ${e.p50Ms} p95 ${e.p95Ms} p99 ${e.p99Ms} ms, ${e.connectionsPerSecond} conn/s, ${e.bytesPerSecond} B/s`);
    t.equal(e.rps, 12, '60 requests in 5 s');
    t.equal(e.successRate, 1);
    t.equal(e.mtls, true);
    t.ok(e.p50Ms! > 0 && e.p50Ms! <= e.p95Ms! && e.p95Ms! <= e.p99Ms!, 'ordered quantiles');
    t.ok(e.p99Ms! <= 250, 'the lab answers within 250 ms');
    t.ok(e.bytesPerSecond > 0, 'the client\'s hop to the waypoint carried bytes');
    t.ok(e.reporters.includes('waypoint demo/waypoint'));
  }
  const viaWaypoint = m.edges.find((e) => e.source.name === 'client' && e.destination.name === 'frontend')!;
  t.ok(viaWaypoint.reporters.includes('ztunnel node-1'), 'the client\'s ztunnel reported the hop to the waypoint');
  t.equal(m.proxies.length, 3);
  const wp = m.proxies.find((p) => p.kind === 'waypoint')!;
  t.equal(wp.proxy, 'waypoint demo/waypoint pod waypoint');
  t.ok(wp.eventLoopLagP99Ms! > 0 && wp.residentMemoryBytes! > 1e6);
  t.equal(wp.pendingRequests, 0, 'no connectionPool: nothing pending (the gauge has no series)');
});

t.test('per service: every source merged, quantiles from the merged buckets', async (t) => {
  const m = goldenSignals(readings('a', 0), readings('c', 5000), { waypointWorkloads: WAYPOINTS, perService: true });
  t.same(m.edges.map((e) => [`${e.source.namespace}/${e.source.name}`, `${e.destination.namespace}/${e.destination.name}`, e.rps]),
    [['*/*', 'demo/echo', 24], ['*/*', 'demo/frontend', 12]]);
  const edges = goldenSignals(readings('a', 0), readings('c', 5000), { waypointWorkloads: WAYPOINTS }).edges.filter((e) => e.destination.name === 'echo');
  const echo = m.edges[0]!;
  t.ok(echo.p99Ms! <= Math.max(...edges.map((e) => e.p99Ms!)) && echo.p50Ms! >= Math.min(...edges.map((e) => e.p50Ms!)), 'between its edges\' quantiles');
  t.equal(echo.bytesPerSecond, edges.reduce((n, e) => n + e.bytesPerSecond, 0));
});

t.test('the same scrape twice: no edges; a namespace filter keeps edges with an end in it', async (t) => {
  t.same(goldenSignals(readings('c', 0), readings('c', 1000), { waypointWorkloads: WAYPOINTS }).edges, []);
  t.same(goldenSignals(readings('a', 0), readings('c', 1000), { waypointWorkloads: WAYPOINTS, namespace: 'legacy' }).edges, []);
  t.equal(goldenSignals(readings('a', 0), readings('c', 1000), { waypointWorkloads: WAYPOINTS, namespace: 'demo' }).edges.length, 3);
});

const REQ = (src: string, code: string, n: number, extra = '') =>
  `istio_requests_total{reporter="waypoint",source_workload="${src}",source_workload_namespace="demo",destination_service_name="echo",destination_service_namespace="demo",request_protocol="http",response_code="${code}",response_flags="-",connection_security_policy="mutual_tls"${extra}} ${n}`;
const DUR = (src: string, counts: number[]) => {
  const bounds = ['1', '10', '100', '+Inf'];
  const l = `reporter="waypoint",source_workload="${src}",source_workload_namespace="demo",destination_service_name="echo",destination_service_namespace="demo",response_code="200"`;
  return [...bounds.map((b, i) => `istio_request_duration_milliseconds_bucket{le="${b}",${l}} ${counts[i]}`),
    `istio_request_duration_milliseconds_count{${l}} ${counts[3]}`, `istio_request_duration_milliseconds_sum{${l}} 1`];
};
const wp = (atMs: number, lines: string[]): ProxyReading => ({ kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'wp-1', atMs, scrape: parsePromText(lines.join('\n')) });

t.test('success is the non-5xx share; quantiles from bucket deltas only; a counter that went down counts from zero', async (t) => {
  const before = wp(0, [REQ('a', '200', 100), REQ('a', '503', 10), ...DUR('a', [100, 100, 110, 110]), REQ('b', '200', 500), ...DUR('b', [0, 0, 500, 500])]);
  const after = wp(2000, [REQ('a', '200', 190), REQ('a', '503', 20), REQ('a', '404', 10), ...DUR('a', [100, 200, 220, 220]), REQ('b', '200', 40), ...DUR('b', [40, 40, 40, 40])]);
  const m = goldenSignals([before], [after]);
  const a = m.edges.find((e) => e.source.name === 'a')!;
  t.equal(a.rps, 55, '110 requests in 2 s');
  t.equal(a.successRate, 100 / 110, '404s succeed, 503s do not');
  // Deltas: 0 in (0,1], 100 in (1,10], 10 in (10,100]: p50 at rank 55 is 1 + 9 * 55/100.
  t.equal(a.p50Ms, 5.95);
  t.equal(a.p99Ms, 90.1, 'rank 108.9: 10 + 90 * 8.9/10');
  const b = m.edges.find((e) => e.source.name === 'b')!;
  t.equal(b.rps, 20, 'the proxy restarted: 40 since then');
  t.equal(b.p99Ms, 0.99, 'all in the first bucket after the restart, interpolated from 0');
  t.same(m.edges.map((e) => e.source.name), ['a', 'b'], 'sorted by rate');
});

t.test('a proxy that restarted (process_start_time_seconds changed) counts every series from zero, even one that grew past its old value', async (t) => {
  const before = wp(0, ['process_start_time_seconds 1000', REQ('a', '200', 50), ...DUR('a', [0, 50, 50, 50])]);
  const after = wp(2000, ['process_start_time_seconds 1001', REQ('a', '200', 60), ...DUR('a', [60, 60, 60, 60])]);
  const a = goldenSignals([before], [after]).edges[0]!;
  t.equal(a.rps, 30, '60 requests since the restart in 2 s, not 10');
  t.equal(a.p99Ms, 0.99, 'the buckets since the restart only');
  const same = goldenSignals([before], [wp(2000, ['process_start_time_seconds 1000', REQ('a', '200', 60), ...DUR('a', [10, 60, 60, 60])])]).edges[0]!;
  t.equal(same.rps, 5, 'no restart: the difference');
});

t.test('a plaintext series makes the edge not mTLS; gRPC is named', async (t) => {
  const before = wp(0, []);
  const after = wp(1000, [REQ('a', '200', 5), REQ('a', '200', 1, ',x="1"').replace('"mutual_tls"', '"none"').replace('"http"', '"grpc"')]);
  const [e] = goldenSignals([before], [after]).edges;
  t.equal(e!.mtls, false);
  t.equal(e!.protocol, 'grpc');
  t.equal(e!.rps, 6);
  t.equal(e!.p99Ms, null, 'no duration histogram: no quantiles');
});

const TCP = (name: string, reporter: string, src: string, dst: string, service: string, n: number, mtls = 'mutual_tls') =>
  `${name}{reporter="${reporter}",source_workload="${src}",source_workload_namespace="legacy",destination_workload="${dst}",destination_workload_namespace="demo",destination_service="${service}",request_protocol="tcp",response_flags="-",connection_security_policy="${mtls}"} ${n}`;
const zt = (node: string, atMs: number, lines: string[]): ProxyReading => ({ kind: 'ztunnel', proxy: `ztunnel ${node}`, atMs, scrape: parsePromText(lines.join('\n')) });

t.test('L4 edges: one reporter per edge (the source\'s ztunnel first), Service or workload as destination', async (t) => {
  const lines = (n: number) => [
    TCP('istio_tcp_connections_opened_total', 'source', 'app', 'db-0', 'db.demo.svc.cluster.local', n),
    TCP('istio_tcp_sent_bytes_total', 'source', 'app', 'db-0', 'db.demo.svc.cluster.local', n * 100),
    TCP('istio_tcp_received_bytes_total', 'source', 'app', 'db-0', 'db.demo.svc.cluster.local', n * 10),
  ];
  const dest = (n: number) => [
    TCP('istio_tcp_connections_opened_total', 'destination', 'app', 'db-0', 'db.demo.svc.cluster.local', n),
    TCP('istio_tcp_connections_opened_total', 'destination', 'unknown', 'db-0', 'unknown', n, 'unknown'),
  ];
  const m = goldenSignals([zt('node-1', 0, lines(0)), zt('node-2', 0, dest(0))], [zt('node-1', 4000, lines(8)), zt('node-2', 4000, dest(8))]);
  t.equal(m.edges.length, 2);
  const svc = m.edges.find((e) => e.destination.name === 'db')!;
  t.same(svc.destination, { namespace: 'demo', name: 'db' });
  t.equal(svc.protocol, 'tcp');
  t.equal(svc.rps, null);
  t.equal(svc.connectionsPerSecond, 2, 'the source\'s count only, not both ends\'');
  t.equal(svc.bytesPerSecond, 220);
  t.same(svc.reporters, ['ztunnel node-1']);
  const plain = m.edges.find((e) => e.source.name === 'unknown')!;
  t.same(plain.destination, { namespace: 'demo', name: 'db-0' }, 'no Service: the workload');
  t.equal(plain.mtls, false);
});

t.test('L4: a source whose own ztunnel reported is not counted again by the destination\'s, which names no Service (the lab: client → echo via the VIP)', async (t) => {
  const svc = 'echo.demo.svc.cluster.local';
  const src = (n: number) => [TCP('istio_tcp_sent_bytes_total', 'source', 'client', 'echo-2', svc, n)];
  // The destination's ztunnel got a CONNECT to the pod: it cannot tell the Service.
  const dst = (n: number) => [
    TCP('istio_tcp_sent_bytes_total', 'destination', 'client', 'echo-2', 'unknown', n),
    TCP('istio_tcp_sent_bytes_total', 'destination', 'outsider', 'echo-2', 'unknown', n, 'unknown'),
  ];
  const m = goldenSignals([zt('node-1', 0, src(0)), zt('node-2', 0, dst(0))], [zt('node-1', 4000, src(800)), zt('node-2', 4000, dst(800))]);
  t.same(m.edges.map((e) => `${e.source.name} → ${e.destination.name} ${e.bytesPerSecond}`).sort(), ['client → echo 200', 'outsider → echo-2 200'],
    'one edge for client (its ztunnel\'s, to the Service); the caller outside the mesh still from the destination\'s');
});

t.test('L4: a source ztunnel\'s series with an unknown source (its pod not yet in its registry) hides no caller outside the mesh', async (t) => {
  const svc = 'echo.demo.svc.cluster.local';
  const src = (n: number) => [TCP('istio_tcp_sent_bytes_total', 'source', 'unknown', 'echo-2', svc, n)];
  const dst = (n: number) => [TCP('istio_tcp_sent_bytes_total', 'destination', 'unknown', 'echo-2', 'unknown', n, 'unknown')];
  const m = goldenSignals([zt('node-1', 0, src(0)), zt('node-2', 0, dst(0))], [zt('node-1', 4000, src(800)), zt('node-2', 4000, dst(800))]);
  t.same(m.edges.map((e) => `${e.source.name} → ${e.destination.name} ${e.bytesPerSecond}`).sort(), ['unknown → echo 200', 'unknown → echo-2 200'],
    'the plaintext caller the destination saw is still an edge');
});

t.test('per service at L4: one reporter per edge first, then the sources merged (a mesh caller and one outside the mesh both count once)', async (t) => {
  const svc = 'db.demo.svc.cluster.local';
  // app (in the mesh) is reported by both ztunnels; legacy-app (outside) only by the destination's.
  const src = (n: number) => [TCP('istio_tcp_connections_opened_total', 'source', 'app', 'db-0', svc, n)];
  const dst = (n: number) => [
    TCP('istio_tcp_connections_opened_total', 'destination', 'app', 'db-0', svc, n),
    TCP('istio_tcp_connections_opened_total', 'destination', 'legacy-app', 'db-0', svc, 3 * n, 'unknown'),
  ];
  const m = goldenSignals([zt('node-1', 0, src(0)), zt('node-2', 0, dst(0))], [zt('node-1', 4000, src(8)), zt('node-2', 4000, dst(8))], { perService: true });
  t.equal(m.edges.length, 1);
  const e = m.edges[0]!;
  t.same([e.source.name, e.destination.name], ['*', 'db']);
  t.equal(e.connectionsPerSecond, 8, '2/s from app (its ztunnel) + 6/s from legacy-app (the destination\'s)');
  t.equal(e.mtls, false, 'one caller is plaintext');
  t.same(e.reporters, ['ztunnel node-1', 'ztunnel node-2']);
});

t.test('a proxy that did not answer, or answered only once, is a warning', async (t) => {
  const m = goldenSignals(
    [{ kind: 'ztunnel', proxy: 'ztunnel node-1', atMs: 0, error: 'ECONNREFUSED' }],
    [{ kind: 'ztunnel', proxy: 'ztunnel node-1', atMs: 1000, scrape: parsePromText('') }, { kind: 'ztunnel', proxy: 'ztunnel node-2', atMs: 1000, error: 'timeout' }]);
  t.same(m.warnings, ['ztunnel node-1: answered only the second scrape; its rates start with the next reading', 'ztunnel node-2: not answering (timeout)']);
  t.equal(m.proxies.length, 1, 'the one that answered has its saturation');
  t.same(m.proxies[0], { proxy: 'ztunnel node-1', kind: 'ztunnel', eventLoopLagP99Ms: null, residentMemoryBytes: null, connections: null, inflightRequests: null, pendingRequests: null });
});

t.test('saturation: lag in ms, memory, connections and requests from the weft_* gauges', async (t) => {
  const s = parsePromText([
    'nodejs_eventloop_lag_p99_seconds 0.0125', 'process_resident_memory_bytes 1000',
    'weft_waypoint_downstream_connections 3', 'weft_waypoint_upstream_connections{protocol="http1"} 2', 'weft_waypoint_upstream_connections{protocol="h2c"} 1',
    'weft_waypoint_requests_in_flight 4',
    'weft_waypoint_pool_requests{destination_service_namespace="demo",destination_service_name="echo",state="pending"} 5',
    'weft_waypoint_pool_requests{destination_service_namespace="demo",destination_service_name="echo",state="active"} 9',
    'weft_ztunnel_connections{direction="inbound"} 6', 'weft_ztunnel_connections{direction="outbound"} 7',
  ].join('\n'));
  t.same(saturation({ kind: 'waypoint', proxy: 'waypoint demo/wp', pod: 'p' }, s), {
    proxy: 'waypoint demo/wp pod p', kind: 'waypoint', eventLoopLagP99Ms: 12.5, residentMemoryBytes: 1000, connections: 6, inflightRequests: 4, pendingRequests: 5,
  });
  t.same(saturation({ kind: 'ztunnel', proxy: 'ztunnel n' }, s), {
    proxy: 'ztunnel n', kind: 'ztunnel', eventLoopLagP99Ms: 12.5, residentMemoryBytes: 1000, connections: 13, inflightRequests: null, pendingRequests: null,
  });
});

t.test('Service hosts as edge ends', async (t) => {
  t.same(serviceEnd('echo.demo.svc.cluster.local', 'x'), { name: 'echo', namespace: 'demo' });
  t.same(serviceEnd('echo.demo', 'x'), { name: 'echo', namespace: 'demo' });
  t.same(serviceEnd('example.com.', 'x'), { name: 'example.com.', namespace: 'x' });
});
