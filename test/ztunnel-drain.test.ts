// Graceful ztunnel shutdown (issue 9, fault row "graceful restart: established
// connections drained"): the drain a ztunnel runs on SIGTERM (drain.ts), on the
// loopback mesh with real TLS and HTTP/2. While node-b drains, an established
// connection through it keeps carrying bytes both ways, its peer got GOAWAY, new
// connections are refused, a connection that ends on its own ends cleanly; at the end
// of the drain the rest are reset and the access log says why. No timing is asserted:
// the first test ends the drain by hand (cut), the second waits for a short timeout.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import pino from 'pino';
import { DRAIN_OVER } from '../src/ztunnel/drain';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { startDemoMesh, IP, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { TunnelState } from '../src/hbone/tunnel';
import { connected, ending, roundTrip, until } from '../src/ztunnel/testing/sockets';
import { LogLines } from './helpers/log-lines';

async function meshWithLog(t: Test): Promise<{ demo: DemoMesh; lines: Array<Record<string, unknown>> }> {
  const log = new LogLines();
  const demo = await startDemoMesh({ logger: pino({ level: 'info' }, log) });
  t.teardown(() => demo.close());
  return { demo, lines: log.lines };
}

/** How a fresh TCP connection to host:port ends: 'refused' if nothing listens. */
function dialOutcome(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve('accepted'); });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : String(err.code)));
  });
}

t.test('during a drain: established connections carry on, new ones are refused; the rest reset at its end', { timeout: 30_000 }, async (t) => {
  const { demo, lines } = await meshWithLog(t);
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  const live = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  const finishing = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo2, port: demo.ports.echo });
  for (const s of [live, finishing]) t.equal((await roundTrip(s, Buffer.from('before'))).toString(), 'before');
  const liveEnd = ending(live, 25_000);
  const finishingEnd = ending(finishing, 25_000);
  t.equal(b.connections.size, 2);

  const drain = demo.mesh.drain('node-b', 600_000);
  const running = drain.run();
  // The peer's tunnel got GOAWAY: it takes no new streams and closes once they end.
  await until(() => a.pool.stats().every((s) => s.state === TunnelState.Draining), 5000, 'node-a\'s tunnel to see GOAWAY');
  t.pass('node-a\'s pooled tunnel to node-b is DRAINING (GOAWAY received)');

  for (let i = 0; i < 3; i++) {
    const payload = Buffer.from(`during-${i}`);
    t.same(await roundTrip(live, payload), payload, `round trip ${i} during the drain: bytes went both ways`);
  }
  // New connections: the drained node's listeners are closed (the kernel refuses;
  // with capture in place that is what an enrolled pod sees), and a new connection
  // from node-a needs a new tunnel to node-b, which is refused too.
  t.equal(await dialOutcome(IP.nodeB, b.ports.inbound), 'refused', '15008 refuses');
  t.equal(await dialOutcome(IP.nodeB, b.ports.outbound), 'refused', '15001 refuses');
  t.equal(await dialOutcome(IP.nodeB, b.ports.plaintext), 'refused', '15006 refuses');
  const fresh = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  const freshEnd = ending(fresh, 10_000);
  await connected(fresh).catch(() => undefined);
  fresh.write('new');
  const f = await freshEnd;
  t.equal(f.received.length, 0, 'a new connection through node-b got nothing');
  t.ok(f.error === 'ECONNRESET' || f.error === 'ECONNREFUSED', `and was reset (${f.error})`);
  t.ok(b.connections.size >= 1 && a.connections.size >= 1, 'the drain is still on');

  // A connection that ends on its own during the drain ends normally.
  finishing.end();
  const fe = await finishingEnd;
  t.ok(fe.gotEnd, 'the finishing connection got its FIN');
  t.equal(fe.error, undefined, 'and no reset');
  await until(() => b.connections.size === 1, 5000, 'node-b to forget the finished connection');
  const clean = lines.find((l) => l.node === 'node-b' && l.msg === 'connection complete' && l['dst.addr'] === `${IP.echo2}:${demo.ports.echo}`);
  t.ok(clean && clean.error === undefined, 'its access-log line on node-b has no error');

  // The end of the drain period (here by hand): the rest is reset, and says why.
  drain.cut();
  const outcome = await running;
  t.same(outcome, { ended: 'cut', reset: 1, finished: 1 });
  const le = await liveEnd;
  await until(() => b.connections.size === 0, 5000, 'node-b to end the live connection');
  t.not(le.error, 'TEST_TIMEOUT', `the live connection was closed at the end of the drain (${le.error ?? 'FIN'})`);
  const resetLine = lines.find((l) => l.node === 'node-b' && l.msg === 'connection complete' && l['dst.addr'] === `${IP.echo1}:${demo.ports.echo}`);
  t.equal(resetLine?.error, 'ABORTED');
  t.equal(resetLine?.reason, `closed by the proxy: ${DRAIN_OVER}`, 'the access log says it was the drain');
  t.equal(b.connections.size, 0);
  t.equal(b.inbound.sessionCount, 0, 'no HBONE session left on node-b');
});

t.test('a drain ends when its timeout passes; one with nothing open ends at once', { timeout: 30_000 }, async (t) => {
  const { demo, lines } = await meshWithLog(t);
  const held = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.hold });
  const heldEnd = ending(held, 25_000);
  held.write('x');
  await until(() => demo.held.length === 1, 5000, 'the pod to get the connection');
  const outcome = await demo.mesh.drain('node-a', 300).run();
  t.same(outcome, { ended: 'timeout', reset: 1, finished: 0 });
  t.equal((await heldEnd).error, 'ECONNRESET', 'the client saw a reset');
  const aLine = () => lines.find((l) => l.node === 'node-a' && l.msg === 'connection complete');
  await until(() => aLine() !== undefined, 5000, 'node-a\'s access-log line');
  const line = aLine();
  t.equal(line?.reason, `closed by the proxy: ${DRAIN_OVER}`, `access log says drain (${JSON.stringify(line)})`);
  // node-b's side of it ends when the reset of the HBONE stream arrives.
  await until(() => demo.mesh.node('node-b').connections.size === 0, 5000, 'node-b to see the reset');
  t.same(await demo.mesh.drain('node-b', 600_000).run(), { ended: 'empty', reset: 0, finished: 0 }, 'nothing open: no wait');
});

t.test('--drain-timeout: 5 s by default, 0s resets at once, nonsense refused by name', async (t) => {
  const base = ['--node', 'n1', '--address', '127.0.0.1', '--trust-anchor-file', '/dev/null'];
  t.equal(loadZtunnelConfig(base, {}).drainTimeout, 5000);
  t.equal(loadZtunnelConfig([...base, '--drain-timeout', '0s'], {}).drainTimeout, 0);
  t.equal(loadZtunnelConfig([...base, '--drain-timeout', '5s'], {}).drainTimeout, 5000);
  t.equal(loadZtunnelConfig(base, { WEFT_DRAIN_TIMEOUT: '45s' }).drainTimeout, 45_000);
  for (const bad of ['-1s', 'soon', '11m', '10ms']) {
    t.throws(() => loadZtunnelConfig([...base, '--drain-timeout', bad], {}), { code: 'WEFT_CONFIG_INVALID', message: /drain-timeout/ }, bad);
  }
});
