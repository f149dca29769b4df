/**
 * The h2c front end (HTTP/2 with prior knowledge, gRPC): one `http2.createServer()`
 * (never listening) fed each stream with `emit('connection', socket)`; requests are
 * served on the core stream API so responses are exactly what the upstream sent: a
 * trailers-only gRPC reply (`grpc-status` in a HEADERS frame with END_STREAM) stays
 * one, and trailers follow the body when the exchange is gRPC or asked for them
 * (`te: trailers`).
 */
import * as http2 from 'node:http2';
import { handleExchange, isGrpcMessage, type Downstream, type ExchangeDeps } from './exchange';
import { first, stripHopByHop } from './headers';
import { SESSION_WINDOW, STREAM_WINDOW } from './h2-windows';
import type { StreamSocket } from './stream-socket';
import type { UpstreamResponse } from './upstream';
import type { HeaderMap, StreamContext } from './types';

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

export class H2Front {
  readonly server: http2.Http2Server;
  /** The context of the connection being handed over; 'session' is emitted synchronously inside emit('connection'). */
  private pending: StreamContext | undefined;
  private readonly contexts = new WeakMap<http2.Http2Session, StreamContext>();

  constructor(private readonly deps: ExchangeDeps) {
    const cfg = deps.config;
    this.server = http2.createServer({
      settings: { maxHeaderListSize: cfg.maxHeaderBytes, initialWindowSize: STREAM_WINDOW },
      // Node counts pseudo-headers too; the exact limit is checked per stream below.
      maxHeaderListPairs: cfg.maxHeaderCount + 8,
    });
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      if (this.pending) this.contexts.set(session, this.pending);
      session.on('error', () => {});
      // An idle h2c session holds its HBONE stream: close it as HTTP/1.1 keep-alive would be.
      session.setTimeout(deps.config.keepAliveTimeoutMs, () => session.close());
      session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
    });
    this.server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number) => this.onStream(stream, headers, flags));
    this.server.on('sessionError', () => {});
  }

  /** Serves one stream (already wrapped) as h2c for `ctx`. */
  serve(sock: StreamSocket, ctx: StreamContext): void {
    this.pending = ctx;
    try {
      this.server.emit('connection', sock);
    } finally {
      this.pending = undefined;
    }
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
    stream.on('error', () => {});
    const ctx = this.contexts.get(stream.session!);
    if (!ctx) return void stream.close(NGHTTP2_INTERNAL_ERROR);
    const method = headers[':method'] ?? 'GET';
    const path = headers[':path'];
    const respondText = (status: number, text: string) => {
      stream.respond({ ':status': status, 'content-type': 'text/plain' });
      stream.end(text);
    };
    if (method === 'CONNECT' || path === undefined) return respondText(405, 'CONNECT is not proxied by the waypoint\n');
    const count = Object.keys(headers).filter((k) => !k.startsWith(':')).length;
    if (count > this.deps.config.maxHeaderCount) return respondText(431, `more than ${this.deps.config.maxHeaderCount} request headers\n`);
    const gone = new AbortController();
    let done = false;
    stream.once('close', () => { if (!done) gone.abort(); });
    let written = 0;
    const hasBody = !((flags & NGHTTP2_FLAG_END_STREAM) !== 0 || stream.endAfterHeaders);
    const down: Downstream = {
      protocol: 'h2c', ctx, method, authority: headers[':authority'] ?? first(headers.host) ?? '', target: path,
      headers: headers as HeaderMap, body: stream, hasBody, gone: gone.signal,
      sendLocal: (status, h, body) => {
        if (stream.headersSent || stream.destroyed) return;
        done = true;
        const buf = Buffer.from(body);
        const empty = bodyless(method, status) || buf.length === 0;
        const out: http2.OutgoingHttpHeaders = { ...h, ':status': status };
        if (!bodyless(method, status)) out['content-length'] = buf.length;
        if (buf.length && out['content-type'] === undefined) out['content-type'] = 'text/plain';
        stream.respond(out, { endStream: empty });
        written += empty ? 0 : buf.length;
        if (!empty) stream.end(buf);
      },
      sendUpstream: (up, h) => {
        const wantTrailers = isGrpcMessage(up.headers) || (first(headers.te) ?? '').includes('trailers');
        return this.stream(method, up, h, stream, wantTrailers, (n) => { written += n; }).finally(() => { done = true; });
      },
      responseBytes: () => written,
    };
    void handleExchange(this.deps, down);
  }

  private stream(method: string, up: UpstreamResponse, h: HeaderMap, stream: http2.ServerHttp2Stream, wantTrailers: boolean, count: (n: number) => void): Promise<boolean> {
    return new Promise((resolve) => {
      if (stream.destroyed) {
        up.discard();
        return resolve(false);
      }
      const out = { ...(h as http2.OutgoingHttpHeaders), ':status': up.status };
      if (up.endStream || bodyless(method, up.status)) {
        // Trailers-only (gRPC errors) or no body by definition: one HEADERS frame ending the stream.
        if (!up.endStream) up.discard();
        if (up.status === 204) delete out['content-length'];
        stream.respond(out, { endStream: true });
        stream.once('close', () => resolve(stream.rstCode === http2.constants.NGHTTP2_NO_ERROR));
        return;
      }
      let ended = false;
      stream.respond(out, { waitForTrailers: wantTrailers });
      if (wantTrailers) {
        stream.once('wantTrailers', () => {
          const t = up.trailers();
          stream.sendTrailers(t ? (stripHopByHop(t) as http2.OutgoingHttpHeaders) : {});
        });
      }
      const body = up.body;
      // An upstream stream that closed already (headers and trailers of an empty reply,
      // e.g. a gRPC error sent after its headers, read in one go) has had its 'end':
      // Node ends a closed HTTP/2 stream's readable side at once, consumer or not.
      // Waiting for it would hang the client until its deadline.
      if (body.readableEnded) {
        ended = true;
        stream.end();
      }
      body.on('data', (chunk: Buffer) => {
        count(chunk.length);
        if (!stream.write(chunk)) {
          body.pause();
          stream.once('drain', () => body.resume());
        }
      });
      body.once('end', () => {
        ended = true;
        stream.end();
      });
      body.once('close', () => {
        // The upstream reset mid-response: reset the client's stream too (never a clean end).
        if (!ended && !stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
      });
      stream.once('close', () => {
        if (!ended) up.discard();
        resolve(ended && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR);
      });
    });
  }
}

function bodyless(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304;
}
