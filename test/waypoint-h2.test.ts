// The waypoint's h2c path: HTTP/2 with prior knowledge and gRPC (trailers, trailers-only,
// bidirectional streaming), real node http2 servers and grpc-js as upstreams.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { StreamSocket } from '../src/waypoint/stream-socket';
import { FLAG, FRAME, headerBlock, headers, PREFACE, settings, settingsAck } from './helpers/h2-frames';
import { connectStream, h2Upstream, plan, startWaypoint, tcpUpstream } from './helpers/waypoint';

function client(t: Test, port: number): http2.ClientHttp2Session {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  t.teardown(() => c.destroy());
  return c;
}

interface H2Reply { headers: http2.IncomingHttpHeaders; flags: number; body: string; trailers?: http2.IncomingHttpHeaders }

function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':authority': 'echo.demo', ...headers }, { endStream: body === undefined });
    let reply: H2Reply | undefined;
    let data = '';
    req.on('response', (h, flags) => { reply = { headers: h, flags, body: '' }; });
    req.on('trailers', (tr) => { if (reply) reply.trailers = tr; });
    req.on('data', (c) => { data += c; });
    req.on('end', () => { if (reply) { reply.body = data; resolve(reply); } });
    req.on('close', () => { if (!reply) reject(new Error(`stream closed, code ${req.rstCode}`)); });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

t.test('h2c: requests multiplexed on one session each way, headers added, body back', async (t) => {
  const seen: http2.IncomingHttpHeaders[] = [];
  const up = await h2Upstream(t, (s, h) => {
    seen.push(h);
    s.respond({ ':status': 200, 'x-up': '1' });
    s.end(`you asked ${h[':path']}`);
  });
  const h = await startWaypoint(t, () => plan(up));
  const c = client(t, h.port);
  const replies = await Promise.all([1, 2, 3, 4].map((i) => call(c, { ':path': `/r/${i}` })));
  t.same(replies.map((r) => r.body), ['/r/1', '/r/2', '/r/3', '/r/4'].map((p) => `you asked ${p}`));
  t.equal(replies[0]!.headers['x-up'], '1');
  t.equal(seen[0]![':authority'], 'echo.demo');
  t.match(seen[0]!.forwarded, /^for="127\.0\.0\.1:\d+"$/);
  t.match(seen[0]!.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  t.equal(h.streams, 1);
  t.equal(h.dialer.count(up), 1, 'one upstream session for all four');
  t.match(h.records[0], { protocol: 'h2c', status: 200, attempts: 1 });
});

t.test('gRPC-shaped: te: trailers forwarded, trailers after the body; trailers-only stays one HEADERS frame', async (t) => {
  let te: string | undefined;
  const up = await h2Upstream(t, (s, h) => {
    te = h.te as string;
    if (h[':path'] === '/svc/Missing') {
      s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' }, { endStream: true });
      return;
    }
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
    s.end('\0\0\0\0\x02hi');
  });
  const h = await startWaypoint(t, () => plan(up));
  const c = client(t, h.port);
  const grpcHeaders = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };
  const ok = await call(c, { ...grpcHeaders, ':path': '/svc/Say' }, '\0\0\0\0\x00');
  t.equal(te, 'trailers');
  t.equal(ok.body, '\0\0\0\0\x02hi');
  t.equal(ok.trailers?.['grpc-status'], '0');
  t.equal(ok.trailers?.['grpc-message'], 'ok');
  const missing = await call(c, { ...grpcHeaders, ':path': '/svc/Missing' }, '\0\0\0\0\x00');
  t.ok(missing.flags & http2.constants.NGHTTP2_FLAG_END_STREAM, 'the reply is headers with END_STREAM');
  t.equal(missing.headers['grpc-status'], '5');
  t.equal(missing.trailers, undefined, 'no separate trailers frame');
  t.match(h.records[1], { grpcStatus: '5', status: 200 });
});

t.test('direct responses and a dead upstream over h2c', async (t) => {
  const h = await startWaypoint(t, (f) => (f.path === '/none' ? { kind: 'respond', status: 404, body: 'no route\n' } : plan(1)));
  const c = client(t, h.port);
  const a = await call(c, { ':path': '/none' });
  t.equal(a.headers[':status'], 404);
  t.equal(a.body, 'no route\n');
  const b = await call(c, { ':path': '/dead' });
  t.equal(b.headers[':status'], 503);
});

/** A grpc-js service with raw-bytes serializers: no proto file needed. */
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE = {
  say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
} as grpc.ServiceDefinition;

async function grpcUpstream(t: Test): Promise<number> {
  const server = new grpc.Server();
  server.addService(SERVICE, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (call.request.toString() === 'missing') return cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
      cb(null, Buffer.from(`hello ${call.request.toString()}`));
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (m: Buffer) => call.write(Buffer.from(`echo ${m.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => server.forceShutdown());
  return port;
}

function grpcClient(t: Test, port: number, opts: grpc.ClientOptions = {}) {
  const Ctor = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), opts) as grpc.Client & Record<string, CallableFunction>;
  t.teardown(() => c.close());
  return c;
}

t.test('grpc-js through the waypoint: unary ok, an error status (trailers-only), bidi streaming', async (t) => {
  const up = await grpcUpstream(t);
  const h = await startWaypoint(t, () => plan(up), { destination: { appProtocol: 'grpc' } });
  const c = grpcClient(t, h.port);
  const say = (m: string) => new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) => c.say!(Buffer.from(m), (err: grpc.ServiceError | null, res?: Buffer) => resolve({ err, res })));
  const ok = await say('mesh');
  t.equal(ok.err, null);
  t.equal(ok.res?.toString(), 'hello mesh');
  const missing = await say('missing');
  t.equal(missing.err?.code, grpc.status.NOT_FOUND);
  t.equal(missing.err?.details, 'no such thing');
  // Bidi: each reply comes before the next message is sent, so the body must stream, not buffer.
  const chat = c.chat!() as grpc.ClientDuplexStream<Buffer, Buffer>;
  const got: string[] = [];
  for (const m of ['one', 'two', 'three']) {
    chat.write(Buffer.from(m));
    got.push(await new Promise<string>((r) => chat.once('data', (d: Buffer) => r(d.toString()))));
  }
  chat.end();
  await new Promise<void>((r) => chat.on('status', () => r()));
  t.same(got, ['echo one', 'echo two', 'echo three']);
});

t.test('h2 inside an HTTP/2 CONNECT stream (HBONE shape; broken in Node 20.12.0, nodejs/node#52344)', async (t) => {
  const up = await h2Upstream(t, (s, hd) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
    s.end(`inner ${hd[':path']}`);
  });
  const h = await startWaypoint(t, () => plan(up), { viaConnect: true });
  const tunnel = await connectStream(t, h.port);
  const inner = http2.connect('http://echo.demo', { createConnection: () => new StreamSocket(tunnel) });
  inner.on('error', () => {});
  t.teardown(() => inner.destroy());
  const r = await call(inner, { ':method': 'POST', ':path': '/x', 'content-type': 'application/grpc', te: 'trailers' }, 'payload');
  t.equal(r.body, 'inner /x');
  t.equal(r.trailers?.['grpc-status'], '0');
});

/**
 * An h2c upstream (raw frames) answering each request with HEADERS and trailers
 * (grpc-status 5, no message) in one write, as the lab's HBONE path delivers them: the
 * waypoint then reads both, and the stream closes, before it relays the reply.
 */
function coalescingUpstream(t: Test): Promise<number> {
  return tcpUpstream(t, (sock) => {
    let buf = Buffer.alloc(0);
    let preface = false;
    sock.write(settings());
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) { if (buf.length < PREFACE.length) return; buf = buf.subarray(PREFACE.length); preface = true; }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!; const flags = buf[4]!; const id = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) sock.write(settingsAck());
        if (id > 0 && (type === FRAME.DATA || type === FRAME.HEADERS) && (flags & FLAG.END_STREAM)) {
          sock.write(Buffer.concat([
            headers(id, headerBlock([[':status', '200'], ['content-type', 'application/grpc']])),
            headers(id, headerBlock([['grpc-status', '5']]), FLAG.END_HEADERS | FLAG.END_STREAM),
          ]));
        }
      }
    });
  });
}

t.test('an empty gRPC reply whose headers and trailers arrive in one read reaches the client (the upstream stream ended before the reply was relayed)', async (t) => {
  const port = await coalescingUpstream(t);
  const h = await startWaypoint(t, () => plan(port));
  const session = client(t, h.port);
  const got = await new Promise<string>((resolve) => {
    const s = session.request({ ':method': 'POST', ':path': '/x.Y/Z', 'content-type': 'application/grpc', te: 'trailers' });
    // Bounded: without the fix the client waits for trailers that never come.
    const timer = setTimeout(() => { s.close(); resolve('no end within 2 s'); }, 2000);
    let status = '';
    s.on('data', () => {});
    s.on('trailers', (x) => { status = String(x['grpc-status']); });
    s.on('end', () => { clearTimeout(timer); resolve(`grpc-status ${status}`); });
    s.end(Buffer.alloc(5));
  });
  t.equal(got, 'grpc-status 5');
});
