// HTTP/2 through the waypoint with bulk both ways at once (a gRPC bidirectional stream,
// an upload answered by a download): peers with Weft's windows (1 MiB per stream,
// 16 MiB per session) on both sides, real node http2 and real loopback sockets. Node's
// http2 stops reading while a write is pending; a waypoint that waited for its writes
// would meet a peer that does the same, and both would wait for ever
// (src/waypoint/stream-socket.ts eagerWriteBytes, src/hbone/send-buffer.ts).
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { connectStream, plan, startWaypoint } from './helpers/waypoint';

const STREAM_WINDOW = 1024 * 1024;
const SESSION_WINDOW = 16 * 1024 * 1024;
const settings = { initialWindowSize: STREAM_WINDOW };

async function echoUpstream(t: Test): Promise<number> {
  const server = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.once('connect', () => s.setLocalWindowSize(SESSION_WINDOW));
  });
  server.on('stream', (s) => {
    s.respond({ ':status': 200 });
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { sessions.forEach((s) => s.destroy()); server.close(); });
  return (server.address() as net.AddressInfo).port;
}

/** `streams` POSTs of `bytes` each, echoed; resolves with the bytes back per stream once all ended, or when nothing moved for `quietMs`. */
function bulkBothWays(session: http2.ClientHttp2Session, streams: number, bytes: number, quietMs: number): Promise<{ back: number[]; stalled: boolean }> {
  const payload = randomBytes(64 * 1024);
  const back = Array<number>(streams).fill(0);
  return new Promise((resolve) => {
    let ended = 0;
    let moved = 0;
    let seen = -1;
    const watch = setInterval(() => {
      if (moved === seen) { clearInterval(watch); resolve({ back, stalled: true }); }
      seen = moved;
    }, quietMs);
    for (let i = 0; i < streams; i++) {
      const req = session.request({ ':method': 'POST', ':path': `/bulk/${i}`, ':authority': 'echo.demo' });
      req.on('data', (c: Buffer) => { back[i]! += c.length; moved += c.length; });
      req.on('end', () => { if (++ended === streams) { clearInterval(watch); resolve({ back, stalled: false }); } });
      req.on('error', () => {});
      let left = bytes;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, payload.length);
          left -= n;
          moved += n;
          if (!req.write(payload.subarray(0, n))) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    }
  });
}

t.test('8 streams × 8 MB echoed through the waypoint, both ways at once: every byte back', async (t) => {
  const up = await echoUpstream(t);
  const h = await startWaypoint(t, () => plan(up));
  const c = http2.connect(`http://127.0.0.1:${h.port}`, { settings });
  c.on('error', () => {});
  c.once('connect', () => c.setLocalWindowSize(SESSION_WINDOW));
  t.teardown(() => c.destroy());
  const r = await bulkBothWays(c, 8, 8_000_000, 3000);
  t.notOk(r.stalled, `nothing stalled (bytes back per stream: ${r.back.join(', ')})`);
  t.same(r.back, Array(8).fill(8_000_000), 'all 8 × 8 MB back');
});

t.test('the same through an HTTP/2 CONNECT stream to the waypoint (as HBONE hands it over)', async (t) => {
  const up = await echoUpstream(t);
  const h = await startWaypoint(t, () => plan(up), { viaConnect: true });
  const tunnel = await connectStream(t, h.port);
  const c = http2.connect('http://echo.demo', { settings, createConnection: () => tunnel as unknown as net.Socket });
  c.on('error', () => {});
  c.once('connect', () => c.setLocalWindowSize(SESSION_WINDOW));
  t.teardown(() => c.destroy());
  const r = await bulkBothWays(c, 8, 8_000_000, 3000);
  t.notOk(r.stalled, `nothing stalled (bytes back per stream: ${r.back.join(', ')})`);
  t.same(r.back, Array(8).fill(8_000_000), 'all 8 × 8 MB back');
});
