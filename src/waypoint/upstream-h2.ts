/**
 * HTTP/2 (h2c) upstream for h2c and gRPC downstreams: one session per upstream key over
 * a dialed connection (HBONE stream or TCP socket) wrapped in a StreamSocket, multiplexing
 * every request to that endpoint. A session that closes or receives GOAWAY is forgotten;
 * the next request dials afresh. A session that carried the Service's
 * `maxRequestsPerConnection` streams (TrafficPolicy connectionPool) is forgotten too and
 * closed gracefully (its streams finish); `maxConnections` needs no enforcing: one
 * session per endpoint.
 */
import * as http2 from 'node:http2';
import { SESSION_WINDOW, STREAM_WINDOW } from './h2-windows';
import type { WriteAhead } from './write-ahead';
import { StreamSocket } from './stream-socket';
import { AttemptError, hostPort, upstreamKey, type AttemptRequest, type UpstreamClient, type UpstreamResponse } from './upstream';
import type { HeaderMap, UpstreamDialer, UpstreamTarget } from './types';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface H2UpstreamOptions {
  dialer: UpstreamDialer;
  /** A session without streams for this long is closed, ms. */
  idleMs: number;
  /** Header list bytes accepted in responses. */
  maxHeaderListSize: number;
  /** Lets the sessions keep reading while they send (write-ahead.ts). */
  writeAhead?: WriteAhead;
}

export class H2Upstream implements UpstreamClient {
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();
  /** Streams opened per session, counted only under a maxRequestsPerConnection. */
  private readonly streamCounts = new WeakMap<http2.ClientHttp2Session, number>();
  private open = 0;

  constructor(private readonly opts: H2UpstreamOptions) {}

  /** Sessions held now, also those no longer taking requests (goaway, used up) until they close. */
  get connections(): number {
    return this.open;
  }

  private session(target: UpstreamTarget): Promise<http2.ClientHttp2Session> {
    const key = upstreamKey(target);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const p = this.opts.dialer.dial(target).then((d) => {
      const sock = new StreamSocket(d, { remoteAddress: target.host, remotePort: target.port, writeAhead: this.opts.writeAhead });
      const session = http2.connect(`http://${hostPort(target)}`, {
        createConnection: () => sock,
        settings: { initialWindowSize: STREAM_WINDOW, maxHeaderListSize: this.opts.maxHeaderListSize },
      });
      this.open++;
      session.once('close', () => { this.open--; });
      const forget = () => {
        if (this.sessions.get(key) === p) this.sessions.delete(key);
      };
      session.on('close', forget);
      session.on('goaway', forget);
      session.on('error', forget);
      session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW));
      session.setTimeout(this.opts.idleMs, () => {
        forget();
        session.close();
      });
      return session;
    }, (err: unknown) => {
      this.sessions.delete(key);
      throw new AttemptError('connect', `connection to ${hostPort(target)} failed: ${(err as Error)?.message ?? err}`, { cause: err });
    });
    this.sessions.set(key, p);
    return p;
  }

  async request(target: UpstreamTarget, a: AttemptRequest): Promise<UpstreamResponse> {
    const session = await this.session(target);
    if (a.signal.aborted) throw new AttemptError('aborted', 'attempt aborted');
    const perConnection = a.pool?.maxRequestsPerConnection;
    if (perConnection !== undefined) this.countStream(target, session, perConnection);
    const headers: http2.OutgoingHttpHeaders = { ...(a.headers as http2.OutgoingHttpHeaders) };
    delete headers.host;
    headers[':method'] = a.method;
    headers[':path'] = a.path;
    headers[':authority'] = a.authority;
    headers[':scheme'] = 'http';
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: !a.body });
    } catch (err) {
      // The session went away between lookup and use (GOAWAY, closed): a connection error.
      this.sessions.delete(upstreamKey(target));
      throw new AttemptError('reset', `session to ${hostPort(target)} unusable: ${(err as Error).message}`, { cause: err, reusedConnection: true });
    }
    return new Promise((resolve, reject) => {
      let settled = false;
      let trailers: HeaderMap | undefined;
      const onAbort = () => {
        if (!settled) {
          settled = true;
          reject(new AttemptError('aborted', 'attempt aborted'));
        }
        if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
      };
      if (a.signal.aborted) return onAbort();
      a.signal.addEventListener('abort', onAbort, { once: true });
      stream.on('trailers', (t) => { trailers = stripPseudo(t); });
      stream.on('error', () => {});
      stream.on('close', () => {
        a.signal.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        const refused = stream.rstCode === NGHTTP2_REFUSED_STREAM;
        reject(new AttemptError(refused ? 'connect' : 'reset', `${hostPort(target)} reset the stream before a response (code ${stream.rstCode})`, { reusedConnection: true }));
      });
      stream.on('response', (h, flags) => {
        settled = true;
        const status = Number(h[':status']);
        const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0 || stream.endAfterHeaders;
        resolve({
          status,
          headers: stripPseudo(h),
          body: stream,
          endStream,
          trailers: () => trailers,
          discard: () => {
            a.signal.removeEventListener('abort', onAbort);
            if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
          },
        });
      });
      if (a.body) {
        a.body.on('error', () => { if (!stream.destroyed) stream.close(NGHTTP2_CANCEL); });
        a.body.pipe(stream);
      }
    });
  }

  /** The stream about to open is the session's last: later requests get a new session; this one closes when its streams end. */
  private countStream(target: UpstreamTarget, session: http2.ClientHttp2Session, max: number): void {
    const n = (this.streamCounts.get(session) ?? 0) + 1;
    this.streamCounts.set(session, n);
    if (n < max) return;
    // Forgotten now, so no request after this one picks it (at worst a newer session is
    // forgotten too, costing one extra dial).
    this.sessions.delete(upstreamKey(target));
    // After this request's stream is opened (synchronously, by the caller), so it is not refused.
    setImmediate(() => { if (!session.closed) session.close(); });
  }

  close(): void {
    for (const p of this.sessions.values()) p.then((s) => s.destroy(), () => {});
    this.sessions.clear();
  }
}

function stripPseudo(h: http2.IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) out[k] = v;
  return out;
}
