// The HBONE client pool: sharing, limits, idle release, keepalive, failures.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import pino from 'pino';
import { isWeftError } from '../src/lib/errors';
import { HbonePool, type OpenStreamRequest } from '../src/hbone/pool';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';
import { connected, ending, roundTrip, sendAndEnd, until } from '../src/ztunnel/testing/sockets';
import { ManualClock } from './helpers/clock';

const T = { timeout: 60_000 };

async function mesh(t: Test, pool: NonNullable<Parameters<typeof startDemoMesh>[0]>['pool'] = {}): Promise<DemoMesh> {
  const demo = await startDemoMesh({ pool });
  t.teardown(() => demo.close());
  return demo;
}

t.test('sequential connections share one tunnel', T, async (t) => {
  const demo = await mesh(t);
  for (let i = 0; i < 30; i++) {
    const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), `m${i}`);
    t.equal(e.received.toString(), `m${i}`);
  }
  const stats = demo.mesh.node('node-a').pool.stats();
  t.equal(stats.length, 1);
  t.match(stats[0], { state: 'READY', totalStreams: 30, activeStreams: 0, sourceIdentity: ID.client, destinationIdentity: ID.echo, peerNode: 'node-b' });
  t.match(stats[0]!.localAddress, /^127\.0\.0\.1:\d+$/);
  t.match(stats[0]!.peerAddress, /^127\.0\.0\.3:\d+$/);
  t.equal(demo.mesh.node('node-b').inbound.sessionCount, 1);
});

t.test('150 concurrent first connections: two handshakes, 100 + 50 streams', T, async (t) => {
  const demo = await mesh(t);
  const socks = Array.from({ length: 150 }, () => demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.hold }));
  await Promise.all(socks.map((s) => connected(s)));
  for (const s of socks) s.write('x');
  await until(() => demo.held.length === 150, 20_000, 'all 150 to reach the pod');
  const stats = demo.mesh.node('node-a').pool.stats();
  t.equal(stats.length, 2, 'one tunnel per 100 streams');
  t.same(stats.map((s) => s.activeStreams).sort((a, b) => b - a), [100, 50]);
  t.equal(demo.mesh.node('node-b').inbound.sessionCount, 2, 'two TLS handshakes in all');
  const endings = socks.map((s) => ending(s));
  for (const s of socks) s.end();
  for (const h of demo.held) h.end();
  await Promise.all(endings);
  await until(() => demo.mesh.node('node-a').pool.stats().every((s) => s.activeStreams === 0), 10_000, 'streams to close');
  t.same(demo.mesh.node('node-a').pool.stats().map((s) => s.totalStreams).sort((a, b) => b - a), [100, 50]);
});

t.test('different source identities never share a tunnel', T, async (t) => {
  const demo = await mesh(t);
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), 'a');
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client2, { ip: IP.echo1, port: demo.ports.echo }), 'b');
  const ids = demo.mesh.node('node-a').pool.stats().map((s) => s.sourceIdentity).sort();
  t.same(ids, [ID.other, ID.client].sort());
});

t.test('idle tunnels are released', T, async (t) => {
  const clock = new ManualClock(0);
  const demo = await mesh(t, { idleTimeoutMs: 150, clock });
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  t.equal((await roundTrip(sock, Buffer.from('hi'))).toString(), 'hi');
  clock.advance(60_000); // 400 idle timeouts with the stream open
  t.equal(demo.mesh.node('node-a').pool.size, 1, 'not idle while a stream is open');
  t.equal(clock.pending, 0, 'no idle countdown runs while a stream is open');
  sock.end();
  await ending(sock);
  await until(() => clock.pending === 1, 5000, 'the idle countdown to start once the stream is gone');
  clock.advance(149);
  t.equal(demo.mesh.node('node-a').pool.size, 1, 'not released before the idle timeout');
  clock.advance(1);
  await until(() => demo.mesh.node('node-a').pool.size === 0, 5000, 'idle tunnel to close');
  await until(() => demo.mesh.node('node-b').inbound.sessionCount === 0, 5000, 'server session to close');
  const again = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), 'again');
  t.equal(again.received.toString(), 'again', 'a new tunnel opens on demand');
});

t.test('a rotated source certificate drains the old tunnel; new connections use a new one', T, async (t) => {
  const demo = await mesh(t);
  const a = demo.mesh.node('node-a');
  const live = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  await roundTrip(live, Buffer.from('1'));
  await a.certs.rotate(ID.client);
  t.same(a.pool.stats().map((s) => s.state), ['DRAINING']);
  t.equal((await roundTrip(live, Buffer.from('still'))).toString(), 'still', 'the live connection keeps working');
  const fresh = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), 'new');
  t.equal(fresh.received.toString(), 'new');
  t.same(a.pool.stats().map((s) => s.state).sort(), ['DRAINING', 'READY']);
  live.end();
  await ending(live);
  await until(() => a.pool.stats().length === 1, 5000, 'drained tunnel to close');
  t.equal(a.pool.stats()[0]!.state, 'READY');
});

t.test('a peer that stops answering PINGs is dropped', T, async (t) => {
  // A TCP relay between the pool and node-b that can freeze, like a dead peer.
  const demo = await mesh(t, { pingIntervalMs: 50, pingTimeoutMs: 200 });
  const b = demo.mesh.node('node-b');
  let frozen = false;
  let fromB = 0;
  const pairs: net.Socket[] = [];
  const relay = net.createServer((c) => {
    const u = net.connect({ host: IP.nodeB, port: b.ports.inbound });
    // The relay must not hide the original destination: record it for node-b's "conntrack".
    u.once('connect', () => demo.mesh.conntrack.record(u.localAddress!, u.localPort!, { ip: IP.echo1, port: 15008 }));
    pairs.push(c, u);
    for (const [from, to] of [[c, u], [u, c]] as const) {
      from.on('data', (d) => { if (!frozen) { to.write(d); if (from === u) fromB++; } });
      from.on('error', () => {});
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.4', () => r()));
  t.teardown(() => { pairs.forEach((p) => p.destroy()); relay.close(); });
  const pool = new HbonePool({ certs: demo.mesh.node('node-a').certs, logger: pino({ level: 'silent' }), pingIntervalMs: 50, pingTimeoutMs: 200 });
  t.teardown(() => pool.close());
  const req = (): OpenStreamRequest => ({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.4', port: (relay.address() as net.AddressInfo).port },
    authority: { ip: IP.echo1, port: demo.ports.hold }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  });
  const opened = await pool.open(req());
  opened.stream.on('error', () => {});
  // Several PING rounds, counted on the wire rather than slept through: node-b's
  // answers are what crosses the relay from u to c once the stream is open.
  const seen = fromB;
  await until(() => fromB - seen >= 4, 5000, 'node-b to answer a few PINGs');
  t.equal(pool.size, 1, 'answered PINGs keep the tunnel');
  frozen = true;
  const closed = new Promise<void>((r) => opened.stream.once('close', () => r()));
  await until(() => pool.size === 0, 5000, 'dead tunnel to be dropped');
  await closed;
  t.pass('its stream was closed too');
});

t.test('connect failures say what to check', T, async (t) => {
  const certs = await IssuerCertSource.create();
  const pool = new HbonePool({ certs, logger: pino({ level: 'silent' }), connectTimeoutMs: 300 });
  t.teardown(() => pool.close());
  const req = (port: number): OpenStreamRequest => ({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.5', port },
    authority: { ip: IP.echo1, port: 80 }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  });
  // Nothing listens.
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.5', () => r()));
  const closedPort = (free.address() as net.AddressInfo).port;
  await new Promise<void>((r) => free.close(() => r()));
  const refused = await pool.open(req(closedPort)).catch((e: unknown) => e);
  t.ok(isWeftError(refused, 'WEFT_HBONE_CONNECT_FAILED'));
  t.match((refused as Error).message, /ECONNREFUSED.*ztunnel running/);
  // Accepts TCP, never speaks TLS: the 10 s (here 300 ms) timeout with the NetworkPolicy hint.
  const silent = new Set<net.Socket>();
  const black = net.createServer((s) => { silent.add(s); s.on('error', () => {}); });
  await new Promise<void>((r) => black.listen(0, '127.0.0.5', () => r()));
  t.teardown(() => { silent.forEach((s) => s.destroy()); black.close(); });
  const timedOut = await pool.open(req((black.address() as net.AddressInfo).port)).catch((e: unknown) => e);
  t.ok(isWeftError(timedOut, 'WEFT_HBONE_CONNECT_FAILED'));
  t.match((timedOut as Error).message, /timed out after 0.3 s; maybe a NetworkPolicy or firewall blocks TCP port \d+/);
  t.equal(pool.size, 0, 'failed tunnels are forgotten');
  // No certificate for the source identity.
  certs.refuse.add(ID.other);
  const noCert = await pool.open({ ...req(closedPort), sourceIdentity: ID.other }).catch((e: unknown) => e);
  t.ok(isWeftError(noCert, 'WEFT_CERT_UNAVAILABLE'));
  t.equal(pool.size, 0);
});

t.test('concurrent waiters of a failing handshake all get the error', T, async (t) => {
  const certs = await IssuerCertSource.create();
  const pool = new HbonePool({ certs, logger: pino({ level: 'silent' }) });
  t.teardown(() => pool.close());
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.5', () => r()));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise<void>((r) => free.close(() => r()));
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => pool.open({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.5', port },
    authority: { ip: IP.echo1, port: 80 }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  })));
  t.same(results.map((r) => r.status), ['rejected', 'rejected', 'rejected', 'rejected', 'rejected']);
});

t.test('invalid pool options name the field', async (t) => {
  const certs = { get: async () => { throw new Error('x'); }, current: () => undefined, rootsPem: '', on: () => undefined };
  for (const [field, value] of [['maxStreamsPerConnection', 0], ['idleTimeoutMs', -1], ['pingIntervalMs', Number.NaN], ['connectTimeoutMs', 0]] as const) {
    t.throws(() => new HbonePool({ certs, logger: pino({ level: 'silent' }), [field]: value }), { code: 'WEFT_CONFIG_INVALID', message: new RegExp(field) }, field);
  }
  t.throws(() => new HbonePool({ certs, logger: pino({ level: 'silent' }), tuning: { streamWindow: 10 } }), { code: 'WEFT_CONFIG_INVALID', message: /streamWindow/ });
  t.throws(() => new HbonePool({ certs, logger: pino({ level: 'silent' }), tuning: { maxFrameSize: 2 ** 24 } }), { code: 'WEFT_CONFIG_INVALID', message: /maxFrameSize/ });
});

/** An HBONE server double advertising `maxConcurrentStreams`: answers 200 to every CONNECT and holds it. */
async function limitedPeer(t: Test, certs: IssuerCertSource, maxConcurrentStreams: number): Promise<{ port: number; sessions: () => number }> {
  const cert = await certs.get(ID.echo);
  let sessions = 0;
  const srv = http2.createSecureServer({
    key: cert.keyPem, cert: cert.certChainPem.join('\n'), ca: certs.rootsPem, requestCert: true, ALPNProtocols: ['h2'],
    settings: { maxConcurrentStreams },
  });
  srv.on('session', (s) => { sessions++; s.on('error', () => {}); });
  srv.on('stream', (stream) => { stream.on('error', () => {}); stream.respond({ ':status': 200 }); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.5', () => r()));
  t.teardown(() => new Promise<void>((r) => { srv.close(() => r()); for (const s of openSessions) s.destroy(); }));
  const openSessions = new Set<http2.ServerHttp2Session>();
  srv.on('session', (s) => { openSessions.add(s); s.once('close', () => openSessions.delete(s)); });
  return { port: (srv.address() as net.AddressInfo).port, sessions: () => sessions };
}

t.test('a peer allowing 0 concurrent streams: a clear error, never a hang', T, async (t) => {
  const certs = await IssuerCertSource.create();
  const peer = await limitedPeer(t, certs, 0);
  // A connect timeout far beyond the test's own: a hang fails the test instead of passing late.
  const pool = new HbonePool({ certs, logger: pino({ level: 'silent' }), connectTimeoutMs: 120_000 });
  t.teardown(() => pool.close());
  const err = await pool.open({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.5', port: peer.port },
    authority: { ip: IP.echo1, port: 80 }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  }).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_HBONE_CONNECT_FAILED'), String(err));
  t.match((err as Error).message, /SETTINGS_MAX_CONCURRENT_STREAMS 0/);
  t.ok(peer.sessions() <= 3, `a bounded number of tunnels tried (${peer.sessions()})`);
  await until(() => pool.size === 0, 5000, 'the refusing tunnels to be let go');
});

t.test('a peer allowing 1 concurrent stream: another tunnel per stream', T, async (t) => {
  const certs = await IssuerCertSource.create();
  const peer = await limitedPeer(t, certs, 1);
  const pool = new HbonePool({ certs, logger: pino({ level: 'silent' }), connectTimeoutMs: 120_000 });
  t.teardown(() => pool.close());
  const req = (): OpenStreamRequest => ({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.5', port: peer.port },
    authority: { ip: IP.echo1, port: 80 }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  });
  const first = await pool.open(req());
  // Settled on the first tunnel: its limit is known, so the next streams go elsewhere.
  const more = await Promise.all([pool.open(req()), pool.open(req())]);
  for (const o of [first, ...more]) o.stream.on('error', () => {});
  t.equal(new Set([first, ...more].map((o) => o.tunnelId)).size, 3, 'three streams, three tunnels');
  t.equal(peer.sessions(), 3);
});

t.test('a socket factory that throws fails the open at once and leaves no tunnel behind', T, async (t) => {
  const certs = await IssuerCertSource.create();
  // The connect timeout is far longer than the test: only the immediate failure can pass.
  const pool = new HbonePool({
    certs, logger: pino({ level: 'silent' }), connectTimeoutMs: 600_000,
    socketFactory: () => { throw new Error('EMFILE: too many open files'); },
  });
  t.teardown(() => pool.close());
  const err = await pool.open({
    sourceIdentity: ID.client, destinationIdentity: ID.echo, nextHop: { host: '127.0.0.5', port: 15008 },
    authority: { ip: IP.echo1, port: 80 }, forwardedFor: { ip: IP.client, port: 1 }, counters: { received: 0, sent: 0 },
  }).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_HBONE_CONNECT_FAILED'), 'a WeftError with the connect code');
  t.match((err as Error).message, /EMFILE/);
  t.equal(pool.size, 0, 'the failed tunnel is forgotten');
});
