// Istio-shaped metrics and the per-connection access log.
import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { WeftError } from '../src/lib/errors';
import { flagForError, LABEL_NAMES } from '../src/ztunnel/metrics';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { roundTrip, sendAndEnd, until, ending } from '../src/ztunnel/testing/sockets';

const lines: Array<Record<string, unknown>> = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});
let demo: DemoMesh;
t.before(async () => { demo = await startDemoMesh({ logger: pino({ level: 'info' }, sink) }); });
t.teardown(async () => { await demo?.close(); });

const completes = () => lines.filter((l) => l.msg === 'connection complete');

t.test('one access-log line per connection on each side, with Istio\'s fields', async (t) => {
  const before = completes().length;
  const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 }), 'hello');
  t.equal(e.received.toString(), 'hello');
  await until(() => completes().length === before + 2, 3000, 'both access-log lines');
  const [outbound] = completes().slice(before).filter((l) => l.direction === 'outbound');
  const [inbound] = completes().slice(before).filter((l) => l.direction === 'inbound');
  t.match(outbound, {
    node: 'node-a', 'src.workload': 'client', 'src.namespace': 'demo', 'src.identity': ID.client,
    'dst.service': 'demo/echo', 'dst.namespace': 'demo', 'dst.identity': ID.echo, 'dst.hbone_addr': /^127\.0\.0\.3:\d+$/,
    'dst.addr': new RegExp(`^127\\.0\\.2\\.[12]:${demo.ports.echo}$`), protocol: 'HBONE', bytes_sent: 5, bytes_recv: 5, duration_ms: Number,
  });
  t.match(outbound?.['src.addr'], /^127\.0\.1\.1:\d+$/);
  t.notOk('error' in outbound!, 'no error on a clean connection');
  t.match(inbound, { node: 'node-b', 'src.identity': ID.client, 'src.workload': 'client', 'dst.identity': ID.echo, bytes_sent: 5, bytes_recv: 5 });
  t.equal(inbound?.['src.addr'], outbound?.['src.addr'], 'the destination logs the real client address (forwarded)');
});

t.test('failures are logged with a short error class and a human reason', async (t) => {
  const before = completes().length;
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: 15008 }), 'x');
  await until(() => completes().length > before, 3000, 'access-log line');
  t.match(completes()[before], { error: 'LOOP', reason: /refused to prevent a loop/, direction: 'outbound' });
});

t.test('metric labels are exactly Istio\'s, with fixed response flags', async (t) => {
  const all = await demo.mesh.node('node-a').registry.getMetricsAsJSON();
  const names = all.map((x) => x.name).sort();
  t.same(names.filter((n) => n.startsWith('istio_')), ['istio_tcp_connections_closed_total', 'istio_tcp_connections_failed_total',
    'istio_tcp_connections_opened_total', 'istio_tcp_received_bytes_total', 'istio_tcp_sent_bytes_total']);
  // Weft's own counters (revoked, refused, ...) carry their own small label sets.
  t.same(names.filter((n) => !n.startsWith('istio_') && !n.startsWith('weft_ztunnel_')), [], 'nothing else');
  const m = all.filter((x) => x.name.startsWith('istio_'));
  const flags = new Set(['-', 'DENY', 'CONNECT', 'TLS_FAILURE', 'NO_HEALTHY_UPSTREAM', 'NO_ROUTE', 'LOOP', 'BAD_REQUEST', 'UPSTREAM_RESET', 'DOWNSTREAM_RESET', 'ABORTED']);
  for (const metric of m) {
    for (const v of metric.values) {
      t.same(Object.keys(v.labels).sort(), [...LABEL_NAMES].sort(), `${metric.name} label set`);
      t.ok(flags.has(String(v.labels.response_flags)), `${metric.name} flag ${String(v.labels.response_flags)} is from the fixed set`);
    }
  }
});

t.test('bytes of live connections appear at scrape time, once', async (t) => {
  const reg = demo.mesh.node('node-a').registry;
  const base = await metricSum(reg, 'istio_tcp_received_bytes_total', { reporter: 'source' });
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  await roundTrip(sock, Buffer.alloc(1000, 1));
  t.equal(await metricSum(reg, 'istio_tcp_received_bytes_total', { reporter: 'source' }) - base, 1000, 'counted while open');
  t.equal(await metricSum(reg, 'istio_tcp_received_bytes_total', { reporter: 'source' }) - base, 1000, 'not counted twice');
  t.equal(await metricSum(reg, 'weft_ztunnel_connections', { direction: 'outbound' }), 1, 'the live connection is counted (saturation gauge)');
  const end = ending(sock);
  sock.end(Buffer.alloc(24, 2));
  await end;
  await until(() => demo.mesh.node('node-a').connections.size === 0, 2000, 'close');
  t.equal(await metricSum(reg, 'istio_tcp_received_bytes_total', { reporter: 'source' }) - base, 1024, 'the rest counted at close');
  t.equal(await metricSum(reg, 'weft_ztunnel_connections'), 0, 'no live connection left');
  t.equal(await metricSum(reg, 'istio_tcp_sent_bytes_total', { reporter: 'source', destination_workload: 'echo-1' }) >= 1024, true);
});

t.test('errors map to the fixed flags', async (t) => {
  t.equal(flagForError(new WeftError('WEFT_HBONE_DENIED', 'x')), 'DENY');
  t.equal(flagForError(new WeftError('WEFT_HBONE_IDENTITY_MISMATCH', 'x')), 'TLS_FAILURE');
  t.equal(flagForError(new WeftError('WEFT_CERT_UNAVAILABLE', 'x')), 'TLS_FAILURE');
  t.equal(flagForError(new WeftError('WEFT_HBONE_BAD_REQUEST', 'x')), 'BAD_REQUEST');
  t.equal(flagForError(new WeftError('WEFT_HBONE_CONNECT_FAILED', 'x', { details: { reason: 'ECONNREFUSED' } })), 'CONNECT');
  t.equal(flagForError(new WeftError('WEFT_HBONE_CONNECT_FAILED', 'x', { details: { reason: 'ERR_TLS_CERT_ALTNAME_INVALID' } })), 'TLS_FAILURE');
  t.equal(flagForError(new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE', 'x')), 'CONNECT');
  t.equal(flagForError(new Error('anything else')), 'CONNECT');
});
