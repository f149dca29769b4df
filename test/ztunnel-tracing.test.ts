// Connection spans of the real ztunnel data path (two loopback nodes, real mTLS HBONE):
// the outbound span (client kind) starts a trace for a captured TCP connection, its CONNECT
// carries its traceparent, and the destination ztunnel's inbound span (server kind) is its
// child, whatever the destination's own ratio (parent-based). Unsampled: no spans, but
// the same trace id on both nodes' access lines and tap events (the CONNECT says 00).
import t, { type Test } from 'tap';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { sendAndEnd, until } from '../src/ztunnel/testing/sockets';
import type { SpanRecord } from '../src/telemetry/types';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ConnectionLifecycle } from '../src/ztunnel/lifecycle';
import { ConnectionRegistry } from '../src/ztunnel/connections';
import { ProxyTelemetry } from '../src/telemetry/proxy-telemetry';
import type { TapEvent } from '../src/telemetry/types';
import { LogLines } from './helpers/log-lines';
import { serveTap, subscribeTap, type TapStream } from './helpers/tap-stream';

let demo: DemoMesh;
const log = new LogLines();
// node-a samples every new trace; node-b none of its own: it follows its callers.
t.before(async () => { demo = await startDemoMesh({ logger: pino({ level: 'info' }, log), traceSampling: { 'node-a': 1, 'node-b': 0 } }); });
t.teardown(async () => { await demo?.close(); });

const spans = (node: string): SpanRecord[] => demo.mesh.node(node).telemetry!.ring.query({});

t.test('a tunnelled connection: an outbound span, and the peer\'s inbound span as its child', async (t) => {
  const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 }), 'hello');
  t.equal(e.received.toString(), 'hello');
  await until(() => spans('node-a').length === 1 && spans('node-b').length === 1, 3000, 'both spans');
  const [out] = spans('node-a');
  const [inb] = spans('node-b');
  t.match(out, {
    kind: 'client', proxy: 'ztunnel node-a', name: 'tunnel outbound echo.demo.svc.cluster.local',
    attributes: {
      'weft.protocol': 'HBONE', 'weft.direction': 'outbound', 'weft.source_workload': 'demo/client', 'weft.source_principal': ID.client,
      'weft.destination_principal': ID.echo, 'weft.destination_service': 'demo/echo', 'weft.bytes_sent': 5, 'weft.bytes_received': 5, 'weft.response_flags': '-',
    },
  });
  t.notOk('parentSpanId' in out!, 'captured TCP has no trace context: a root span');
  t.equal(out!.error, undefined);
  t.match(inb, {
    kind: 'server', proxy: 'ztunnel node-b', traceId: out!.traceId, parentSpanId: out!.spanId, name: /^tunnel inbound /,
    attributes: { 'weft.direction': 'inbound', 'weft.source_workload': 'demo/client', 'weft.source_principal': ID.client, 'weft.destination_principal': ID.echo, 'weft.bytes_sent': 5 },
  });
  t.ok(out!.endMs >= out!.startMs && inb!.endMs >= inb!.startMs);
  t.comment(`outbound ${(out!.endMs - out!.startMs).toFixed(2)} ms, inbound ${(inb!.endMs - inb!.startMs).toFixed(2)} ms`);
});

t.test('a refused connection has a span with its flag', async (t) => {
  const before = spans('node-a').length;
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: 15008 }), 'x');
  await until(() => spans('node-a').length > before, 3000, 'the span');
  t.match(spans('node-a').at(-1), { kind: 'client', error: 'LOOP', attributes: { 'weft.response_flags': 'LOOP' } });
});

t.test('a connection node-b starts itself (ratio 0) makes no span', async (t) => {
  const beforeB = spans('node-b').length;
  const beforeA = spans('node-a').length;
  // echo pods' client side is on node-b: an outbound connection from node-b to the echo VIP.
  await sendAndEnd(demo.mesh.connectOutbound('node-b', IP.echo1, { ip: IP.echoVip, port: 80 }), 'hi');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(spans('node-b').length, beforeB, 'node-b did not sample its own new trace');
  t.equal(spans('node-a').length, beforeA);
});

t.test('the CONNECT\'s traceparent: a sampled one is followed (and is the parent), an unsampled one too, a malformed one is ignored (a new trace at the ratio)', async (t) => {
  const lifecycle = (sampling: number) => new ConnectionLifecycle({
    connections: new ConnectionRegistry(), logger: pino({ level: 'silent' }),
    telemetry: new ProxyTelemetry({
      proxy: 'ztunnel n', registry: new Registry(), logger: pino({ level: 'silent' }),
      config: { traceSampling: sampling, traceBufferSpans: 8, otlpEndpoint: '', accessLogSampling: 1, accessLogLevels: {} },
    }),
  });
  const init = () => ({ direction: 'inbound' as const, protocol: 'HBONE' as const, src: { ip: '127.0.0.1', port: 1 }, dst: { ip: '127.0.0.2', port: 2 } });
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const sampled = lifecycle(0).begin(init(), `00-${trace}-00f067aa0ba902b7-01`);
  t.match(sampled.span, { traceId: trace, parentSpanId: '00f067aa0ba902b7', kind: 'server' });
  t.equal(sampled.traceId, trace);
  const unsampled = lifecycle(1).begin(init(), `00-${trace}-00f067aa0ba902b7-00`);
  t.equal(unsampled.span, undefined, 'the peer did not sample: neither does this hop');
  t.equal(unsampled.traceId, trace, 'but the connection is in the peer\'s trace');
  const bad = lifecycle(1).begin(init(), 'not-a-traceparent');
  t.ok(bad.span, 'malformed: a new trace, sampled at the ratio (1)');
  t.not(bad.span!.traceId, trace);
  t.equal(bad.traceId, bad.span!.traceId);
  t.notOk('parentSpanId' in bad.span!);
  const two = lifecycle(0).begin(init(), ['a', 'b']);
  t.equal(two.span, undefined, 'two headers: ignored; ratio 0: no span');
  t.match(two.traceId, /^[0-9a-f]{32}$/, 'a fresh trace id all the same');
});

t.test('a CONNECT refused as a loop follows the peer\'s traceparent too: its span is the sampled peer\'s child (node-b samples none of its own)', async (t) => {
  const b = demo.mesh.node('node-b');
  const trace = '5bf92f3577b34da6a3ce929d0e0e4736';
  const open = async (traceparent: string) => {
    const before = spans('node-b').length;
    await demo.mesh.node('node-a').pool.open({
      sourceIdentity: ID.client, destinationIdentity: ID.echo,
      nextHop: { host: IP.nodeB, port: b.ports.inbound }, authority: { ip: IP.nodeB, port: b.ports.inbound },
      forwardedFor: { ip: IP.client, port: 40000 }, traceparent, counters: { sent: 0, received: 0 },
    }).then((o) => o.stream.destroy(), () => {});
    return before;
  };
  const before = await open(`00-${trace}-00f067aa0ba902b7-01`);
  await until(() => spans('node-b').length > before, 3000, 'the inbound span');
  t.match(spans('node-b').at(-1), { kind: 'server', traceId: trace, parentSpanId: '00f067aa0ba902b7', error: 'LOOP' });
});

/** Lines of `msg` written by `node` after index `from`. */
const linesOf = (node: string, from: number) => log.lines.slice(from).filter((l) => l.node === node && l.msg === 'connection complete');

async function tapOf(t: Test, node: string): Promise<TapStream> {
  const s = await subscribeTap(await serveTap(t, demo.mesh.node(node).telemetry!.tap));
  await s.next();
  return s;
}

// These close the nodes' tap hubs at their end (serveTap's teardown): they come last.
t.test('an unsampled connection (node-b samples none of its own): its outbound and the peer\'s inbound line and tap event carry the same trace id, and no span', async (t) => {
  const tapB = await tapOf(t, 'node-b');
  const from = log.lines.length;
  const spansB = spans('node-b').length;
  const e = await sendAndEnd(demo.mesh.connectOutbound('node-b', IP.echo1, { ip: IP.echoVip, port: 80 }), 'hi');
  t.equal(e.received.toString(), 'hi');
  await until(() => linesOf('node-b', from).length === 2, 3000, 'outbound and inbound lines');
  const lines = linesOf('node-b', from);
  const out = lines.find((l) => l.direction === 'outbound');
  const inb = lines.find((l) => l.direction === 'inbound');
  t.match(out, { protocol: 'HBONE', trace_id: /^[0-9a-f]{32}$/ });
  t.match(inb, { protocol: 'HBONE', trace_id: out?.trace_id });
  const events = [JSON.parse(await tapB.next()) as TapEvent, JSON.parse(await tapB.next()) as TapEvent];
  t.same(events.map((ev) => ev.traceId), [out?.trace_id, out?.trace_id]);
  t.same(events.map((ev) => ev.direction).sort(), ['inbound', 'outbound']);
  t.equal(spans('node-b').length, spansB, 'unsampled: no span');
  t.comment(`trace ${String(out?.trace_id)} on ${lines.length} lines and ${events.length} tap events`);
  tapB.req.destroy();
});

t.test('a malformed CONNECT traceparent is replaced: the inbound line and tap event carry a fresh trace id', async (t) => {
  const tapB = await tapOf(t, 'node-b');
  const from = log.lines.length;
  const b = demo.mesh.node('node-b');
  const bad = `00-${'A'.repeat(32)}-00f067aa0ba902b7-00`; // upper-case hex: invalid
  const opened = await demo.mesh.node('node-a').pool.open({
    sourceIdentity: ID.client, destinationIdentity: ID.echo,
    nextHop: { host: IP.nodeB, port: b.ports.inbound }, authority: { ip: IP.echo1, port: demo.ports.echo },
    forwardedFor: { ip: IP.client, port: 40001 }, traceparent: bad, counters: { sent: 0, received: 0 },
  });
  opened.stream.end('x');
  opened.stream.resume();
  await until(() => linesOf('node-b', from).length === 1, 3000, 'the inbound line');
  const [inb] = linesOf('node-b', from);
  t.match(inb, { direction: 'inbound', trace_id: /^[0-9a-f]{32}$/ });
  t.not(inb?.trace_id, 'a'.repeat(32));
  t.equal((JSON.parse(await tapB.next()) as TapEvent).traceId, inb?.trace_id);
  tapB.req.destroy();
});
