// Protocol per port: declared (appProtocol, port name) or sniffed from the first bytes,
// which must all reach the next consumer.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { H2_PREFACE, classifyBytes, declaredProtocol, sniffStream } from '../src/waypoint/sniff';
import { ManualClock } from './helpers/clock';
import { startWaypoint } from './helpers/waypoint';

t.test('declared protocols: appProtocol wins over the port name; Istio name prefixes', async (t) => {
  t.equal(declaredProtocol({ appProtocol: 'http' }), 'http');
  t.equal(declaredProtocol({ appProtocol: 'HTTP2' }), 'h2c');
  t.equal(declaredProtocol({ appProtocol: 'grpc' }), 'h2c');
  t.equal(declaredProtocol({ appProtocol: 'kubernetes.io/h2c' }), 'h2c');
  t.equal(declaredProtocol({ appProtocol: 'tcp', portName: 'http' }), 'tcp', 'appProtocol wins');
  t.equal(declaredProtocol({ appProtocol: 'something-unknown', portName: 'grpc-api' }), 'h2c', 'an unknown appProtocol falls back to the name');
  t.equal(declaredProtocol({ portName: 'http' }), 'http');
  t.equal(declaredProtocol({ portName: 'http-web' }), 'http');
  t.equal(declaredProtocol({ portName: 'http2-x' }), 'h2c');
  t.equal(declaredProtocol({ portName: 'grpc-api' }), 'h2c');
  t.equal(declaredProtocol({ portName: 'grpc-web-api' }), 'http');
  t.equal(declaredProtocol({ portName: 'tcp-db' }), 'tcp');
  t.equal(declaredProtocol({ portName: 'https' }), 'tcp');
  t.equal(declaredProtocol({ portName: 'httpx' }), undefined, 'a prefix is a whole word');
  t.equal(declaredProtocol({ portName: 'web' }), undefined);
  t.equal(declaredProtocol({}), undefined);
});

t.test('classifyBytes: preface, request lines, anything else, and when to wait', async (t) => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  t.equal(classifyBytes(H2_PREFACE, false), 'h2c');
  t.equal(classifyBytes(Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4])]), false), 'h2c');
  t.equal(classifyBytes(H2_PREFACE.subarray(0, 10), false), undefined, 'half a preface: wait');
  t.equal(classifyBytes(H2_PREFACE.subarray(0, 10), true), 'tcp', 'half a preface then EOF: not HTTP');
  t.equal(classifyBytes(b('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), false), 'http1');
  t.equal(classifyBytes(b('OPTIONS * HTTP/1.0\r\n'), false), 'http1');
  t.equal(classifyBytes(b('GE'), false), undefined, 'a method being typed: wait');
  t.equal(classifyBytes(b('GE'), true), 'tcp');
  t.equal(classifyBytes(b('GET /long'), false), undefined, 'no line end yet: wait');
  t.equal(classifyBytes(b(`GET /${'a'.repeat(5000)}`), false), 'http1', 'a long URL is still HTTP/1 (the parser judges it)');
  t.equal(classifyBytes(b('GET / HTTP/2.0\r\n'), false), 'tcp');
  t.equal(classifyBytes(b('get / HTTP/1.1\r\n'), false), 'tcp', 'methods are case-sensitive');
  t.equal(classifyBytes(b('\x16\x03\x01\x02\x00'), false), 'tcp', 'a TLS ClientHello');
  t.equal(classifyBytes(b('*3\r\n$3\r\nSET\r\n'), false), 'tcp', 'Redis');
  t.equal(classifyBytes(Buffer.alloc(0), false), undefined);
});

/** A connected loopback pair. */
async function pair(t: Test): Promise<{ client: net.Socket; server: net.Socket }> {
  let server!: net.Socket;
  const srv = net.createServer({ allowHalfOpen: true }, (s) => { server = s; });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  while (!server) await new Promise((r) => setImmediate(r));
  t.teardown(() => { client.destroy(); server.destroy(); srv.close(); });
  return { client, server };
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

t.test('sniffStream: a request line split across writes is recognised and no byte is lost', async (t) => {
  const { client, server } = await pair(t);
  const sniffed = sniffStream(server);
  client.write('GE');
  await new Promise((r) => setTimeout(r, 20));
  client.write('T /x HTTP/1.1\r\nHost: a\r\n\r\n');
  const r = await sniffed;
  t.equal(r.protocol, 'http1');
  const all = readAll(server);
  client.end('tail');
  t.equal((await all).toString(), 'GET /x HTTP/1.1\r\nHost: a\r\n\r\ntail');
});

t.test('sniffStream: bytes then FIN before a decision: tcp, bytes and end delivered', async (t) => {
  const { client, server } = await pair(t);
  const sniffed = sniffStream(server);
  client.end('GE');
  const r = await sniffed;
  t.equal(r.protocol, 'tcp');
  t.equal((await readAll(server)).toString(), 'GE');
});

t.test('sniffStream: the preface is h2c; a silent client hits the timeout (injected clock)', async (t) => {
  const a = await pair(t);
  const s1 = sniffStream(a.server);
  a.client.write(H2_PREFACE);
  t.equal((await s1).protocol, 'h2c');
  const b = await pair(t);
  const clock = new ManualClock();
  const s2 = sniffStream(b.server, { clock, timeoutMs: 1000, onTimeout: 'tcp' });
  clock.advance(999);
  let settled = false;
  void s2.then(() => { settled = true; });
  await new Promise((r) => setImmediate(r));
  t.notOk(settled, 'still waiting before the timeout');
  clock.advance(1);
  t.same(await s2, { protocol: 'tcp', bytes: 0 });
  // A server-first protocol: the server speaks, then the client answers; the stream still works.
  const got = readAll(b.server);
  b.client.end('late');
  t.equal((await got).toString(), 'late');
});

t.test('handler: an undeclared port carrying TCP goes to passthrough with its first bytes', async (t) => {
  const h = await startWaypoint(t, () => ({ kind: 'respond', status: 500 }), {
    passthrough: (stream) => {
      // An echo as the L4 passthrough stands in.
      stream.on('data', (c: Buffer) => stream.write(c));
      stream.on('end', () => stream.end());
    },
  });
  const s = net.connect(h.port, '127.0.0.1');
  const got = readAll(s);
  s.write('\x16\x03\x01 not http');
  await new Promise((r) => setTimeout(r, 20));
  s.end(' and more');
  t.equal((await got).toString('latin1'), '\x16\x03\x01 not http and more');
  t.equal(h.router.seen.length, 0, 'the router never saw it');
});

t.test('handler: a port declared tcp is never sniffed, even if it carries HTTP', async (t) => {
  let passed = 0;
  const h = await startWaypoint(t, () => ({ kind: 'respond', status: 404 }), {
    destination: { portName: 'tcp-raw' },
    passthrough: (stream) => { passed++; stream.end('opaque'); },
  });
  const s = net.connect(h.port, '127.0.0.1');
  const got = readAll(s);
  s.end('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  t.equal((await got).toString(), 'opaque');
  t.equal(passed, 1);
});
