// The byte pump on its own, socket ↔ socket and socket ↔ HTTP/2 stream, with real sockets.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Pipe, type ByteCounters, type PipeOutcome } from '../src/hbone/pipe';
import { ending, sha256, until } from '../src/ztunnel/testing/sockets';

interface Pair { client: net.Socket; server: net.Socket }

/** A connected TCP pair on loopback (both half-open capable). */
async function pair(t: Test): Promise<Pair> {
  let server!: net.Socket;
  const srv = net.createServer({ allowHalfOpen: true }, (s) => { server = s; });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((r) => client.once('connect', () => r()));
  await until(() => server !== undefined, 2000, 'accept');
  client.on('error', () => {});
  server.on('error', () => {});
  t.teardown(() => { client.destroy(); server.destroy(); srv.close(); });
  return { client, server };
}

/** app ⇄ [down | pipe | up] ⇄ peer: what a proxy does with one connection. */
async function proxied(t: Test, hwm?: number) {
  const a = await pair(t);
  const b = await pair(t);
  let outcome: PipeOutcome | undefined;
  let counted: ByteCounters | undefined;
  const pipe = new Pipe(a.server, b.client, { ...(hwm ? { highWaterMark: hwm } : {}), onDone: (o, c) => { outcome = o; counted = { ...c }; } });
  return { app: a.client, peer: b.server, pipe, done: () => outcome, counters: () => counted, upstream: b.client, downstream: a.server };
}

t.test('bytes both ways, counted, clean ending', async (t) => {
  const p = await proxied(t);
  const up = randomBytes(1_000_003);
  const down = randomBytes(777_777);
  const peerGot = ending(p.peer);
  const appGot = ending(p.app);
  p.app.end(up);
  p.peer.end(down);
  const [pe, ae] = await Promise.all([peerGot, appGot]);
  t.equal(sha256(pe.received), sha256(up));
  t.equal(sha256(ae.received), sha256(down));
  t.ok(pe.gotEnd && ae.gotEnd, 'FIN crossed both ways');
  await until(() => p.done() !== undefined, 2000, 'pipe to finish');
  t.same(p.done(), {});
  t.same(p.counters(), { received: up.length, sent: down.length });
});

t.test('half-close: one direction ends, the other keeps flowing', async (t) => {
  const p = await proxied(t);
  p.app.end('request');
  const first = await new Promise<Buffer>((r) => p.peer.once('data', r));
  await new Promise<void>((r) => p.peer.once('end', () => r()));
  t.equal(first.toString(), 'request');
  const appGot = ending(p.app);
  p.peer.write('late reply 1 ');
  p.peer.end('late reply 2');
  const e = await appGot;
  t.equal(e.received.toString(), 'late reply 1 late reply 2');
  t.ok(e.gotEnd);
});

t.test('a reset on either side becomes a reset on the other', async (t) => {
  const p = await proxied(t);
  const peerEnd = ending(p.peer);
  p.app.write('x');
  await until(() => p.peer.bytesRead > 0, 2000, 'data to reach the peer');
  p.app.resetAndDestroy();
  const e = await peerEnd;
  t.equal(e.error, 'ECONNRESET');
  await until(() => p.done() !== undefined, 2000, 'pipe to finish');
  t.equal(p.done()!.error, 'DOWNSTREAM_RESET');

  const q = await proxied(t);
  const appEnd = ending(q.app);
  q.app.write('y');
  await until(() => q.peer.bytesRead > 0, 2000, 'data to reach the peer');
  q.peer.resetAndDestroy();
  t.equal((await appEnd).error, 'ECONNRESET');
  await until(() => q.done() !== undefined, 2000, 'pipe to finish');
  t.equal(q.done()!.error, 'UPSTREAM_RESET');
});

t.test('a reset that arrives while bytes are still unread is a reset, not a FIN', async (t) => {
  // The proxy had not read the client's bytes yet (pauseOnConnect, tunnel still
  // opening) when the client reset: libuv then reports end-of-stream, not the error.
  let server!: net.Socket;
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => { server = s; });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const app = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  app.on('error', () => {});
  await new Promise<void>((r) => app.once('connect', () => r()));
  await until(() => server !== undefined, 2000, 'accept');
  server.on('error', () => {});
  t.teardown(() => { server.destroy(); srv.close(); });
  app.write('unread');
  const appClosed = new Promise<void>((r) => app.once('close', () => r()));
  app.resetAndDestroy();
  await appClosed; // on loopback the RST is delivered within the close() call
  const b = await pair(t);
  const peerEnd = ending(b.server);
  let outcome: PipeOutcome | undefined;
  new Pipe(server, b.client, { onDone: (o) => { outcome = o; } });
  const e = await peerEnd;
  t.equal(e.received.toString(), 'unread', 'the bytes read before the reset still pass');
  t.equal(e.error, 'ECONNRESET', 'the peer sees a reset');
  t.notOk(e.gotEnd, 'not a FIN');
  await until(() => outcome !== undefined, 2000, 'pipe to finish');
  t.equal(outcome!.error, 'DOWNSTREAM_RESET');
});

t.test('abort() resets both sides and reports ABORTED', async (t) => {
  const p = await proxied(t);
  const a = ending(p.app);
  const b = ending(p.peer);
  p.app.write('z');
  await until(() => p.peer.bytesRead > 0, 2000, 'data to reach the peer');
  p.pipe.abort();
  t.equal((await a).error, 'ECONNRESET');
  t.equal((await b).error, 'ECONNRESET');
  await until(() => p.done() !== undefined, 2000, 'pipe to finish');
  t.same(p.done(), { error: 'ABORTED' });
});

t.test('backpressure: a reader that stops makes the pipe stop reading', async (t) => {
  const hwm = 256 * 1024;
  const p = await proxied(t, hwm);
  p.peer.pause();
  const chunk = randomBytes(64 * 1024);
  let written = 0;
  // Far more than kernel buffers and the proxy's threshold hold together.
  for (let i = 0; i < 320; i++) { p.app.write(chunk); written += chunk.length; }
  await until(() => p.downstream.isPaused(), 5000, 'the pipe to pause its reader').catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  t.ok(p.upstream.writableLength <= hwm + 1024 * 1024, `proxy holds a bounded amount (${p.upstream.writableLength} bytes queued)`);
  t.ok(p.downstream.isPaused(), 'the reading side is paused');
  let received = 0;
  p.peer.on('data', (d: Buffer) => { received += d.length; });
  const peerEnded = new Promise<void>((r) => p.peer.once('end', () => r()));
  p.app.end();
  p.peer.resume();
  await peerEnded;
  t.equal(received, written, 'everything arrives once the reader resumes');
});

t.test('socket ↔ HTTP/2 stream: END_STREAM ⇄ FIN, RST_STREAM ⇄ RST', async (t) => {
  const server = http2.createServer();
  const streams: http2.ServerHttp2Stream[] = [];
  server.on('stream', (s) => { s.on('error', () => {}); s.respond({ ':status': 200 }); streams.push(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  session.on('error', () => {});
  t.teardown(() => { session.destroy(); server.close(); });

  const open = async () => {
    const p = await pair(t);
    const stream = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' });
    stream.on('error', () => {});
    await new Promise((r) => stream.once('response', r));
    let outcome: PipeOutcome | undefined;
    new Pipe(p.server, stream, { onDone: (o) => { outcome = o; } });
    await until(() => streams.length > 0, 2000, 'server stream');
    return { app: p.client, remote: streams.shift()!, outcome: () => outcome };
  };

  // FIN → END_STREAM and back.
  const a = await open();
  const chunks: Buffer[] = [];
  a.remote.on('data', (d: Buffer) => chunks.push(d));
  const remoteEnded = new Promise<void>((r) => a.remote.once('end', () => r()));
  const appGot = ending(a.app);
  a.app.end('over h2');
  await remoteEnded;
  t.equal(Buffer.concat(chunks).toString(), 'over h2', 'data then END_STREAM');
  a.remote.end('back');
  const e = await appGot;
  t.equal(e.received.toString(), 'back');
  t.ok(e.gotEnd, 'END_STREAM became FIN');
  await until(() => a.outcome() !== undefined, 2000, 'pipe');
  t.same(a.outcome(), {});

  // RST_STREAM → TCP RST.
  const b = await open();
  const bEnd = ending(b.app);
  b.remote.close(http2.constants.NGHTTP2_CONNECT_ERROR);
  t.equal((await bEnd).error, 'ECONNRESET');
  await until(() => b.outcome() !== undefined, 2000, 'pipe');
  t.equal(b.outcome()!.error, 'UPSTREAM_RESET');

  // TCP RST → RST_STREAM, never END_STREAM first.
  const c = await open();
  let sawEnd = false;
  c.remote.on('end', () => { sawEnd = true; });
  c.remote.resume();
  const closed = new Promise<number | undefined>((r) => c.remote.once('close', () => r(c.remote.rstCode)));
  c.app.write('x');
  await new Promise((r) => setTimeout(r, 50));
  c.app.resetAndDestroy();
  const code = await closed;
  t.not(code, http2.constants.NGHTTP2_NO_ERROR, 'the stream was reset');
  t.notOk(sawEnd, 'no END_STREAM before the reset');
  await until(() => c.outcome() !== undefined, 2000, 'pipe');
  t.equal(c.outcome()!.error, 'DOWNSTREAM_RESET');
});

t.test('idle timeout: pipes sharing one timeout are checked together; only the idle one is aborted, the busy one when it stops', async (t) => {
  const a = await pair(t);
  const b = await pair(t);
  const c = await pair(t);
  const d = await pair(t);
  let idleOutcome: PipeOutcome | undefined;
  let busyOutcome: PipeOutcome | undefined;
  new Pipe(a.server, b.client, { idleTimeoutMs: 1500, onDone: (o) => { idleOutcome = o; } });
  new Pipe(c.server, d.client, { idleTimeoutMs: 1500, onDone: (o) => { busyOutcome = o; } });
  d.server.resume();
  // A byte every 40 ms (far below the timeout, so a loaded machine cannot make it look idle) keeps the second pipe busy while the first one times out.
  const ticker = setInterval(() => c.client.write('.'), 40);
  t.teardown(() => clearInterval(ticker));
  await until(() => idleOutcome !== undefined, 5000, 'the idle pipe to be aborted');
  t.equal(idleOutcome!.error, 'ABORTED');
  t.match(idleOutcome!.detail, /^idle: no byte either way/);
  t.equal(busyOutcome, undefined, 'the busy pipe is still open');
  clearInterval(ticker);
  await until(() => busyOutcome !== undefined, 5000, 'the second pipe to be aborted once quiet');
  t.equal(busyOutcome!.error, 'ABORTED');
});
