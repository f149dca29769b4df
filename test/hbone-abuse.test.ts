// Item 7 of issue 9: HTTP/2 and TLS abuse against the HBONE server (15008), sent as
// hand-made frames over real mTLS (test/helpers/h2-frames.ts) to a real InboundServer.
// Each case checks what reached the pods (accepts on the upstream server), how the
// session ended (GOAWAY and its code), and that a legitimate stream still works after.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import pino from 'pino';
import { DEFAULT_HBONE_LIMITS, HboneNodeLimits } from '../src/hbone/limits';
import { SecureContextCache } from '../src/hbone/tls';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { until } from '../src/ztunnel/testing/sockets';
import * as H from './helpers/h2-frames';
import { LogLines } from './helpers/log-lines';

const T = { timeout: 30_000 };
const contexts = new SecureContextCache();

interface Sink { port: number; accepts: number }

async function mesh(t: Test, inbound: Parameters<typeof startDemoMesh>[0] extends infer O ? O extends { inbound?: infer I } ? I : never : never = {}): Promise<{ demo: DemoMesh; sink: Sink }> {
  const demo = await startDemoMesh({ inbound });
  const sink: Sink = { port: 0, accepts: 0 };
  sink.port = await demo.mesh.pod(IP.echo1, (s) => { sink.accepts++; s.resume(); });
  t.teardown(() => demo.close());
  return { demo, sink };
}

/** A raw TCP connection to node-b's 15008 as if for echo-1's pod IP (what the DNAT would do). */
function tcp(demo: DemoMesh, node = 'node-b', podIp: string = IP.echo1): net.Socket {
  return demo.mesh.connectHbone(node, podIp);
}

async function raw(t: Test, demo: DemoMesh, node = 'node-b', podIp: string = IP.echo1): Promise<H.RawH2> {
  const cert = await demo.mesh.ca.get(ID.client);
  const sock = tls.connect({ socket: tcp(demo, node, podIp), secureContext: contexts.get(cert, demo.mesh.ca.rootsPem), ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', () => resolve()); sock.once('error', reject); sock.once('close', () => reject(new Error('closed during the handshake'))); });
  const c = new H.RawH2(sock);
  t.teardown(() => c.destroy());
  // The server's SETTINGS come first; from then on it has accepted the session.
  await c.until(() => c.frames.some((f) => f.type === H.FRAME.SETTINGS), 5000, 'server SETTINGS');
  return c;
}

/** A well-behaved client: CONNECT to echo, one round trip. */
async function legitimate(demo: DemoMesh): Promise<string> {
  const cert = await demo.mesh.ca.get(ID.client);
  const s = http2.connect('https://hbone', {
    createConnection: () => tls.connect({ socket: tcp(demo), secureContext: contexts.get(cert, demo.mesh.ca.rootsPem), ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined }),
  });
  s.on('error', () => {});
  try {
    const req = s.request({ ':method': 'CONNECT', ':authority': `${IP.echo1}:${demo.ports.echo}` }, { endStream: false });
    req.on('error', () => {});
    let got = '';
    req.on('data', (d: Buffer) => { got += d.toString(); });
    const status = await new Promise<number>((resolve) => { req.once('response', (h) => resolve(Number(h[':status']))); req.once('close', () => resolve(0)); });
    if (status !== 200) return `status ${status}`;
    req.end('hello');
    await new Promise<void>((resolve) => req.once('close', () => resolve()));
    return got;
  } finally {
    s.destroy();
  }
}

const refused = (demo: DemoMesh, reason: string) => metricSum(demo.mesh.node('node-b').registry, 'weft_ztunnel_hbone_refused_total', { reason });

t.test('rapid reset (CVE-2023-44487): reset streams are never dialled; the session ends in GOAWAY', T, async (t) => {
  const { demo, sink } = await mesh(t);
  const c = await raw(t, demo);
  const N = 1500;
  for (let i = 0; i < N && !c.closed; i++) {
    const id = 1 + 2 * i;
    c.write(H.headers(id, H.connectHeaders(`${IP.echo1}:${sink.port}`)), H.rstStream(id, H.ERROR.CANCEL));
  }
  await c.until(() => c.goaway() !== undefined, 10_000, 'GOAWAY');
  // nghttp2's own limit on reset streams (1000 burst) ends the session before the last
  // stream the flood opened.
  t.ok(c.goaway()!.lastStreamId < 2 * N - 1, `GOAWAY after stream ${c.goaway()!.lastStreamId} of ${2 * N - 1}`);
  t.equal(await legitimate(demo), 'hello', 'a legitimate stream works afterwards (and its dial has reached the pods)');
  t.equal(sink.accepts, 0, 'not one TCP dial reached the pod for the reset streams');
  // Each is counted: reset before its dial, or refused over the session's pending dials.
  t.ok(await refused(demo, 'reset_before_dial') + await refused(demo, 'pending_dials') > 900, 'counted');
  await until(() => demo.mesh.node('node-b').connections.size === 0, 5000, 'no connection left behind');
});

t.test('a reset arriving while the dial is under way cancels it', T, async (t) => {
  // Dials to 127.0.2.1 never complete: the socket is never connected.
  const held: net.Socket[] = [];
  const { demo } = await mesh(t, { socketFactory: () => { const s = new net.Socket(); held.push(s); return s; } });
  const c = await raw(t, demo);
  c.write(H.headers(1, H.connectHeaders(`${IP.echo1}:${demo.ports.echo}`)));
  await until(() => held.length === 1, 5000, 'the dial to start');
  c.write(H.rstStream(1));
  await until(() => held[0]!.destroyed, 5000, 'the dialling socket to be destroyed');
  t.pass('the pending dial was dropped as soon as the peer reset its stream');
  await until(() => demo.mesh.node('node-b').connections.size === 0, 5000, 'no connection left behind');
});

t.test('pending dials are capped per session: the rest are refused (REFUSED_STREAM), counted', T, async (t) => {
  const held: net.Socket[] = [];
  const { demo } = await mesh(t, { limits: { maxPendingDialsPerConnection: 2 }, socketFactory: () => { const s = new net.Socket(); held.push(s); return s; } });
  const c = await raw(t, demo);
  for (let i = 0; i < 5; i++) c.write(H.headers(1 + 2 * i, H.connectHeaders(`${IP.echo1}:${demo.ports.echo}`)));
  await c.until(() => c.resets().size === 3, 5000, 'three refusals');
  t.same([...c.resets().values()], [H.ERROR.REFUSED_STREAM, H.ERROR.REFUSED_STREAM, H.ERROR.REFUSED_STREAM]);
  t.equal(held.length, 2, 'two dials, no more');
  t.equal(await refused(demo, 'pending_dials'), 3);
  for (const s of held) s.destroy();
});

t.test('pending dials are capped per peer identity across its sessions', T, async (t) => {
  const held: net.Socket[] = [];
  const { demo } = await mesh(t, { limits: { maxPendingDialsPerIdentity: 3 }, socketFactory: () => { const s = new net.Socket(); held.push(s); return s; } });
  const [a, b] = [await raw(t, demo), await raw(t, demo)];
  for (let i = 0; i < 2; i++) a.write(H.headers(1 + 2 * i, H.connectHeaders(`${IP.echo1}:${demo.ports.echo}`)));
  await until(() => held.length === 2, 5000, 'two dials from the first session');
  for (let i = 0; i < 2; i++) b.write(H.headers(1 + 2 * i, H.connectHeaders(`${IP.echo1}:${demo.ports.echo}`)));
  await b.until(() => b.resets().size === 1, 5000, 'one refusal on the second session');
  t.same([...b.resets().values()], [H.ERROR.REFUSED_STREAM]);
  t.equal(held.length, 3, 'three dials for the identity, no more');
  for (const s of held) s.destroy();
});

t.test('two HBONE servers sharing the node limits (dual-stack: one per family) share them', T, async (t) => {
  const held: net.Socket[] = [];
  // node-a's and node-b's servers stand for the IPv4 and IPv6 servers of one node.
  const shared = new HboneNodeLimits({ maxPendingDials: 2, maxHandshakes: 1 });
  const { demo } = await mesh(t, { nodeLimits: shared, socketFactory: () => { const s = new net.Socket(); held.push(s); return s; } });
  const b = await raw(t, demo);
  for (let i = 0; i < 2; i++) b.write(H.headers(1 + 2 * i, H.connectHeaders(`${IP.echo1}:${demo.ports.echo}`)));
  await until(() => held.length === 2, 5000, 'the node\'s two dial slots taken on one server');
  const a = await raw(t, demo, 'node-a', IP.client);
  a.write(H.headers(1, H.connectHeaders(`${IP.client}:${demo.ports.echo}`)));
  await a.until(() => a.resets().size === 1, 5000, 'the other server refuses');
  t.same([...a.resets().values()], [H.ERROR.REFUSED_STREAM], 'no slot left on the node');
  t.equal(held.length, 2, 'no third dial');
  t.equal(shared.dials.pending(), 2);
  // Resets cancel the dials under way (the held sockets never connect).
  b.write(H.rstStream(1), H.rstStream(3));
  await until(() => shared.dials.pending() === 0, 5000, 'the slots to free');

  // A handshake in progress on one server holds the node's one slot for the other too.
  const slow = tcp(demo);
  await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
  await until(() => shared.handshakes === 1, 5000, 'the slow handshake to be in progress');
  const err = await raw(t, demo, 'node-a', IP.client).then(() => 'connected', (e: Error) => e.message);
  t.not(err, 'connected', 'the other server refuses a handshake while the node\'s one slot is taken');
  slow.destroy();
  await until(() => shared.handshakes === 0, 5000, 'the slot to free');
  t.ok(await raw(t, demo, 'node-a', IP.client), 'a handshake once the slot is free');
  // Both servers' sessions park their stalled bytes inside the one node budget.
  t.equal(shared.budget.limit, DEFAULT_HBONE_LIMITS.nodeBufferBytes);
});

for (const [name, flood, reason] of [
  ['PING', (i: number) => H.ping(i), 'ping_flood'],
  ['SETTINGS', () => H.settings([[H.SETTING.INITIAL_WINDOW_SIZE, 65_535]]), 'settings_flood'],
] as const) {
  t.test(`${name} flood ends in GOAWAY(ENHANCE_YOUR_CALM)`, T, async (t) => {
    const { demo } = await mesh(t);
    const c = await raw(t, demo);
    for (let i = 0; i < 5000 && !c.closed; i++) c.write(flood(i));
    await c.until(() => c.goaway() !== undefined, 10_000, 'GOAWAY');
    t.equal(c.goaway()!.code, H.ERROR.ENHANCE_YOUR_CALM);
    await c.closedP();
    t.equal(await refused(demo, reason), 1, 'counted once');
    t.equal(await legitimate(demo), 'hello', 'a legitimate stream works afterwards');
  });
}

t.test('CONTINUATION flood: the session is closed at once and nothing is dialled', T, async (t) => {
  const { demo, sink } = await mesh(t);
  const c = await raw(t, demo);
  c.write(H.headers(1, H.connectHeaders(`${IP.echo1}:${sink.port}`), 0));
  for (let i = 0; i < 5000 && !c.closed; i++) c.write(H.frame(H.FRAME.CONTINUATION, 0, 1, H.headerBlock([['x-pad', 'y'.repeat(32)]])));
  // nghttp2 (≥ 1.61) refuses more than 8 CONTINUATION frames and Node drops the
  // connection; when a GOAWAY makes it out first it must not be NO_ERROR.
  await c.closedP();
  const g = c.goaway();
  if (g) t.not(g.code, H.ERROR.NO_ERROR, 'a GOAWAY, if any, names an error');
  // The proof that the flood was not processed: the session closed (above) while the
  // headers never completed, so nothing was dialled (below).
  t.equal(sink.accepts, 0, 'the headers never completed, nothing dialled');
  t.equal(await legitimate(demo), 'hello', 'a legitimate stream works afterwards');
});

t.test('oversized headers: a long :authority is a 400 logged cut short, a 64 KiB one never reaches the server code', T, async (t) => {
  const log = new LogLines();
  const lines = log.raw;
  const demo = await startDemoMesh({ logger: pino({ level: 'debug' }, log) });
  t.teardown(() => demo.close());
  const c = await raw(t, demo);
  c.write(H.headers(1, H.connectHeaders(`${'1'.repeat(1000)}:80`)));
  await c.until(() => c.frames.some((f) => f.type === H.FRAME.HEADERS && f.streamId === 1), 5000, 'an answer to stream 1');
  // HPACK of `:status 400` from nghttp2: static index 12 (0x8c).
  t.equal(c.frames.find((f) => f.type === H.FRAME.HEADERS && f.streamId === 1)!.payload[0], 0x8c, 'stream 1: 400');
  const refusal = lines.find((l) => l.includes('refused HBONE CONNECT'));
  t.ok(refusal && refusal.length < 1000, `the refusal is logged, cut short (${refusal?.length} bytes)`);
  c.write(H.headers(3, H.connectHeaders(`${'1'.repeat(64 * 1024)}:80`)));
  await c.until(() => c.resets().has(3) || c.goaway() !== undefined, 5000, 'stream 3 refused');
  t.notOk(c.frames.some((f) => f.type === H.FRAME.HEADERS && f.streamId === 3), 'stream 3: no answer');
  if (c.goaway()) t.not(c.goaway()!.code, H.ERROR.NO_ERROR, 'refused by nghttp2 over SETTINGS_MAX_HEADER_LIST_SIZE');
  t.ok(lines.every((l) => l.length < 4096), 'no log line carries the 64 KiB authority');
  t.equal(await legitimate(demo), 'hello', 'a legitimate stream works afterwards');
});

t.test('a peer address at its session cap is refused before any TLS work', T, async (t) => {
  const { demo } = await mesh(t, { limits: { maxSessionsPerPeer: 1 } });
  const held = await raw(t, demo);
  const cert = await demo.mesh.ca.get(ID.client);
  const sock = tls.connect({ socket: tcp(demo), secureContext: contexts.get(cert, demo.mesh.ca.rootsPem), ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
  let secure = false;
  sock.once('secureConnect', () => { secure = true; });
  sock.on('error', () => {});
  await new Promise<void>((resolve) => sock.once('close', () => resolve()));
  // A TLS 1.3 client sees its handshake done before the server checks anything after it.
  t.notOk(secure, 'closed before the server answered the ClientHello');
  t.equal(await refused(demo, 'sessions_per_peer'), 1);
  t.notOk(held.closed, 'the open session is kept');
  held.destroy();
  await until(() => demo.mesh.node('node-b').inbound.sessionCount === 0, 5000, 'the held session to close');
  t.equal(await legitimate(demo), 'hello', 'a session once the peer is below its cap');
});

t.test('handshakes and sessions per peer are capped; idle sessions are closed', T, async (t) => {
  const { demo } = await mesh(t, { limits: { maxHandshakes: 1, maxSessionsPerPeer: 2, sessionIdleTimeoutMs: 1000 } });
  // A connection that never sends a ClientHello holds the one handshake slot.
  const slow = tcp(demo);
  await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
  await until(() => demo.mesh.node('node-b').inbound.handshakesInProgress === 1, 5000, 'the slow handshake to be in progress');
  const err = await raw(t, demo).then(() => 'connected', (e: Error) => e.message);
  t.not(err, 'connected', 'a second handshake is refused while the first is in progress');
  t.equal(await refused(demo, 'handshakes'), 1);
  slow.destroy();
  await until(() => demo.mesh.node('node-b').inbound.handshakesInProgress === 0, 5000, 'the slot to free');
  const a = await raw(t, demo);
  const b = await raw(t, demo);
  // Closed by the server before the TLS handshake (the address is at its cap); a
  // session opened and closed later, or left open (a timeout), fails.
  const third = await raw(t, demo).then((c) => c.closedP().then(() => 'closed'), (e: Error) => e.message);
  t.match(third, /disconnected before secure TLS connection was established/, 'a third session from the same address is refused before its handshake');
  t.equal(await refused(demo, 'sessions_per_peer'), 1);
  // Neither a nor b opens a stream: both are closed with GOAWAY(NO_ERROR) once idle.
  await Promise.all([a.closedP(5000), b.closedP(5000)]);
  t.equal(a.goaway()?.code, H.ERROR.NO_ERROR, 'idle session: graceful GOAWAY');
  t.equal(await refused(demo, 'idle_session'), 2);
  // The client sees its sockets close before the server has counted its sessions out; a
  // stream opened in between meets the per-peer cap (seen once in CI as 'status 0').
  const inbound = demo.mesh.node('node-b').inbound;
  await until(() => inbound.sessionCount === 0 && inbound.node.peerSessions.size === 0, 5000, 'the idle sessions to be counted out');
  t.equal(await legitimate(demo), 'hello', 'a legitimate stream works afterwards');
});
