// HTTP/2 through the waypoint with bulk both ways at once (a gRPC bidirectional stream,
// an upload answered by a download), on each of its two sessions: the client's (front)
// and the upstream's. The stream beneath each is an HTTP/2 CONNECT stream with Node's
// 64 KiB windows, as HBONE hands streams over, so its writes wait often; the peers are
// node http2 with Weft's windows (1 MiB per stream, 16 MiB per session), which stop
// reading while a write is pending. A waypoint that did the same would wait for its peer
// while the peer waits for it (src/waypoint/write-ahead.ts; without write-ahead on its
// side, each test gets 0 bytes back).
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { SESSION_WINDOW, STREAM_WINDOW } from '../src/waypoint/h2-windows';
import { StreamSocket } from '../src/waypoint/stream-socket';
import type { UpstreamDialer } from '../src/waypoint/types';
import { connectStream, h2Upstream, plan, startWaypoint, tcpUpstream } from './helpers/waypoint';

const settings = { initialWindowSize: STREAM_WINDOW };
/** No byte either way for this long, with streams unfinished: stalled (generous: a slow CI box moves MBs in far less). */
const QUIET_MS = 10_000;

/** An h2c server that echoes every stream's body; fed connections with emit('connection'). */
function echoServer(t: Test): http2.Http2Server {
  const server = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
    s.once('connect', () => s.setLocalWindowSize(SESSION_WINDOW));
  });
  server.on('stream', (s) => {
    s.respond({ ':status': 200 });
    s.pipe(s);
  });
  t.teardown(() => sessions.forEach((s) => s.destroy()));
  return server;
}

/** A plain-h2c listener (Node's default windows, as a tunnel without Weft's tuning) whose CONNECT streams go to `onStream`. */
function tunnelListener(t: Test, onStream: (s: Duplex) => void): Promise<number> {
  return h2Upstream(t, (stream, headers) => {
    if (headers[':method'] !== 'CONNECT') return stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    stream.respond({ ':status': 200 });
    onStream(stream);
  });
}

/** Reaches every upstream through a CONNECT stream to `port`. */
class ConnectDialer implements UpstreamDialer {
  constructor(private readonly t: Test, private readonly port: number) {}
  dial(): Promise<Duplex> {
    return connectStream(this.t, this.port);
  }
}

interface BulkOutcome {
  /** Bytes back per stream. */
  back: number[];
  /** Per stream: every byte back equal to what was sent at its offset. */
  intact: boolean[];
  /** Per stream: the RST_STREAM code it closed with (0: none). */
  resets: number[];
  /** Nothing moved either way for QUIET_MS with streams still open. */
  stalled: boolean;
}

/** `streams` POSTs of `bytes` each (the 64 KiB payload over and over), echoed; settles once every stream closed, or once nothing moved for QUIET_MS. */
function bulkBothWays(session: http2.ClientHttp2Session, streams: number, bytes: number): Promise<BulkOutcome> {
  const payload = randomBytes(64 * 1024);
  const out: BulkOutcome = { back: Array(streams).fill(0), intact: Array(streams).fill(true), resets: Array(streams).fill(0), stalled: false };
  return new Promise((resolve) => {
    let closed = 0;
    let moved = 0;
    let seen = -1;
    const watch = setInterval(() => {
      if (moved === seen) { clearInterval(watch); resolve({ ...out, stalled: true }); }
      seen = moved;
    }, QUIET_MS);
    for (let i = 0; i < streams; i++) {
      const req = session.request({ ':method': 'POST', ':path': `/bulk/${i}`, ':authority': 'echo.demo' });
      req.on('data', (c: Buffer) => {
        if (out.intact[i] && !matchesPayload(c, out.back[i]!, payload)) out.intact[i] = false;
        out.back[i]! += c.length;
        moved += c.length;
      });
      req.on('close', () => {
        out.resets[i] = req.rstCode ?? 0;
        if (++closed === streams) { clearInterval(watch); resolve(out); }
      });
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

/** Whether `chunk`, received at `offset` of the stream, is the repeated `payload` there. */
function matchesPayload(chunk: Buffer, offset: number, payload: Buffer): boolean {
  for (let k = 0; k < chunk.length;) {
    const pos = (offset + k) % payload.length;
    const n = Math.min(payload.length - pos, chunk.length - k);
    if (!chunk.subarray(k, k + n).equals(payload.subarray(pos, pos + n))) return false;
    k += n;
  }
  return true;
}

/** The verdict on 8 × 8 MB: nothing stalled or reset, every byte back and equal. */
function assertAllBack(t: Test, r: BulkOutcome): void {
  t.notOk(r.stalled, `nothing stalled (bytes back per stream: ${r.back.join(', ')})`);
  t.same(r.resets, Array(8).fill(0), 'no stream reset');
  t.same(r.back, Array(8).fill(8_000_000), 'all 8 × 8 MB back');
  t.same(r.intact, Array(8).fill(true), 'each byte as sent');
}

/** A client session with Weft's windows, over what `createConnection` gives. */
function client(t: Test, createConnection: () => Duplex, url = 'http://echo.demo'): http2.ClientHttp2Session {
  const c = http2.connect(url, { settings, createConnection: createConnection as () => net.Socket });
  c.on('error', () => {});
  c.once('connect', () => c.setLocalWindowSize(SESSION_WINDOW));
  t.teardown(() => c.destroy());
  return c;
}

t.test('front: 8 streams × 8 MB echoed, the client\'s session over a CONNECT stream to the waypoint: every byte back', async (t) => {
  const echo = echoServer(t);
  const up = await tcpUpstream(t, (sock) => echo.emit('connection', sock));
  const h = await startWaypoint(t, () => plan(up), { viaConnect: true });
  const tunnel = await connectStream(t, h.port);
  assertAllBack(t, await bulkBothWays(client(t, () => tunnel), 8, 8_000_000));
});

t.test('upstream: the same with the waypoint\'s upstream session over a CONNECT stream to the echo: every byte back', async (t) => {
  const echo = echoServer(t);
  // The echo's session runs over a StreamSocket without write-ahead: a peer whose writes wait.
  const tunnelPort = await tunnelListener(t, (stream) => echo.emit('connection', new StreamSocket(stream)));
  // Any port: the ConnectDialer reaches the echo whatever the plan names.
  const h = await startWaypoint(t, () => plan(1), { dialer: new ConnectDialer(t, tunnelPort) });
  assertAllBack(t, await bulkBothWays(client(t, () => net.connect(h.port, '127.0.0.1'), `http://127.0.0.1:${h.port}`), 8, 8_000_000));
});
