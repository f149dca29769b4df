// StreamSocket: the socket-shaped adapter Node's HTTP machinery runs on over an HBONE
// (HTTP/2 CONNECT) stream, on real loopback sockets.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { StreamSocket } from '../src/waypoint/stream-socket';

/** A CONNECT stream pair over h2c on loopback: [client side, server side]. */
async function streamPair(t: Test): Promise<[http2.ClientHttp2Stream, http2.ServerHttp2Stream]> {
  const server = http2.createServer();
  let serverStream!: http2.ServerHttp2Stream;
  const got = new Promise<void>((r) => server.on('stream', (s) => { serverStream = s; s.respond({ ':status': 200 }); r(); }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  t.teardown(() => { session.destroy(); server.close(); });
  const client = session.request({ ':method': 'CONNECT', ':authority': '10.0.0.1:80' });
  await got;
  await new Promise((r) => client.once('response', r));
  return [client, serverStream];
}

function collect(s: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    s.on('data', (c: Buffer) => { out += c.toString('latin1'); });
    s.on('end', () => resolve(out));
  });
}

t.test('strings written in a batch reach an Http2Stream intact, in order', async (t) => {
  const [client, server] = await streamPair(t);
  const sock = new StreamSocket(client);
  const got = collect(server);
  // What Node's HTTP/1 writer does: cork, several string and Buffer chunks, uncork.
  sock.cork();
  sock.write('GET / HTTP/1.1\r\n', 'latin1');
  sock.write('Host: a\r\n\r\n', 'latin1');
  sock.write(Buffer.from('body'));
  sock.write('ünïcode', 'utf8');
  sock.uncork();
  sock.end();
  t.equal(await got, `GET / HTTP/1.1\r\nHost: a\r\n\r\nbody${Buffer.from('ünïcode', 'utf8').toString('latin1')}`);
});

t.test('read-ahead bytes come first; the end of the inner stream ends the socket', async (t) => {
  const [client, server] = await streamPair(t);
  const sock = new StreamSocket(server, { prefix: Buffer.from('first '), remoteAddress: '10.1.2.3', remotePort: 4567 });
  t.equal(sock.remoteAddress, '10.1.2.3');
  t.equal(sock.remotePort, 4567);
  t.equal(sock.remoteFamily, 'IPv4');
  const got = collect(sock);
  client.end('then the rest');
  t.equal(await got, 'first then the rest');
});

t.test('setTimeout as net.Socket: fires when idle, 0 with a callback removes it, no listener build-up', async (t) => {
  const [client] = await streamPair(t);
  const sock = new StreamSocket(client);
  const cb = () => {};
  for (let i = 0; i < 50; i++) {
    sock.setTimeout(1000, cb);
    sock.setTimeout(0, cb);
  }
  t.equal(sock.listenerCount('timeout'), 0, 'what Node\'s keep-alive pool does per request leaves nothing behind');
  const fired = new Promise<void>((r) => sock.setTimeout(10, r));
  await fired;
  t.equal(sock.timeout, 10);
  t.equal(sock.setNoDelay(true), sock, 'socket methods chain');
  t.equal(sock.setKeepAlive(true, 1000), sock);
  t.equal(sock.ref(), sock);
  t.equal(sock.unref(), sock);
  sock.destroy();
});
