/**
 * The HTTP/1.1 front end: one `http.Server` (never listening) fed each stream with
 * `emit('connection', socket)`, so keep-alive, pipelining order, and parsing are Node's.
 *
 * Smuggling defences: Node's strict parser (no `insecureHTTPParser`: Content-Length
 * with Transfer-Encoding, duplicate differing Content-Lengths, bad chunk framing,
 * obs-fold and bare LF are refused with 400 and the connection closed), a header size
 * limit (431), and a header count limit Node does not enforce by itself (it truncates):
 * the server keeps one header more than allowed, so a request that has it exceeded the
 * limit and is refused with 431 instead of being forwarded with headers silently lost.
 */
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../lib/log';
import { LogLimiter } from '../lib/log-limiter';
import { handleExchange, report, type Downstream, type ExchangeDeps } from './exchange';
import { first } from './headers';
import type { StreamSocket } from './stream-socket';
import type { UpstreamResponse } from './upstream';
import type { HeaderMap, StreamContext } from './types';
import { handleUpgrade } from './websocket';

/** Statuses whose responses never carry a body, nor framing headers. */
function bodyless(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
}

export class Http1Front {
  readonly server: http.Server;
  private readonly contexts = new WeakMap<Duplex, StreamContext>();
  /** Responses the parser's refusal answered while their exchange was under way. */
  private readonly refused = new WeakMap<http.ServerResponse, number>();
  private readonly limiter = new LogLimiter();
  private readonly logger: Logger;

  constructor(private readonly deps: ExchangeDeps) {
    const cfg = deps.config;
    this.logger = deps.logger;
    this.server = http.createServer({
      maxHeaderSize: cfg.maxHeaderBytes,
      insecureHTTPParser: false,
      keepAliveTimeout: cfg.keepAliveTimeoutMs,
      headersTimeout: cfg.headersTimeoutMs,
      // Bodies may stream for long (uploads); the per-route timeouts bound the exchange.
      requestTimeout: 0,
      // Checked in onRequest instead (same 400), so the refusal is logged and counted.
      requireHostHeader: false,
    });
    this.server.maxHeadersCount = cfg.maxHeaderCount + 1;
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const ctx = this.contexts.get(req.socket);
      if (!ctx) return socket.destroy();
      if (this.tooManyHeaders(req)) return refuseRaw(socket, 431, 'too many request headers');
      void handleUpgrade(this.deps, ctx, req, socket, head);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
  }

  /** Serves one stream (already wrapped) as HTTP/1.1 for `ctx`. */
  serve(sock: StreamSocket, ctx: StreamContext): void {
    this.contexts.set(sock, ctx);
    this.server.emit('connection', sock);
  }

  private tooManyHeaders(req: http.IncomingMessage): boolean {
    return req.rawHeaders.length / 2 > this.deps.config.maxHeaderCount;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ctx = this.contexts.get(req.socket);
    if (!ctx) {
      res.destroy();
      return;
    }
    if (req.headers.host === undefined && req.httpVersion === '1.1') {
      this.refusal('no host header', ctx);
      reportRefusal(this.deps, ctx, 400, req);
      res.shouldKeepAlive = false;
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('an HTTP/1.1 request needs a Host header\n');
      return;
    }
    if (this.tooManyHeaders(req)) {
      this.refusal('too many headers', ctx);
      reportRefusal(this.deps, ctx, 431, req);
      res.shouldKeepAlive = false;
      res.writeHead(431, { 'content-type': 'text/plain', connection: 'close' }).end(`more than ${this.deps.config.maxHeaderCount} request headers\n`);
      req.resume();
      return;
    }
    // Only `chunked` is a transfer coding the waypoint forwards (it re-frames the body);
    // anything else would be read differently by some hop (RFC 9112 §6.1: 501).
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      this.refusal('unsupported transfer-encoding', ctx);
      reportRefusal(this.deps, ctx, 501, req);
      res.shouldKeepAlive = false;
      res.writeHead(501, { 'content-type': 'text/plain', connection: 'close' }).end('only the chunked transfer coding is accepted\n');
      return;
    }
    const gone = new AbortController();
    res.on('close', () => { if (!res.writableFinished) gone.abort(); });
    let written = 0;
    const down: Downstream = {
      protocol: 'http1', ctx, method: req.method ?? 'GET', authority: first(req.headers.host) ?? '', target: req.url ?? '/',
      headers: req.headers, body: req, gone: gone.signal,
      hasBody: req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0,
      sendLocal: (status, headers, body) => {
        if (res.headersSent || res.destroyed) return;
        const buf = Buffer.from(body);
        const h: Record<string, string | number> = { ...headers };
        if (!bodyless(down.method, status)) {
          h['content-length'] = buf.length;
          if (buf.length && h['content-type'] === undefined) h['content-type'] = 'text/plain';
        }
        res.writeHead(status, h);
        written += buf.length;
        res.end(bodyless(down.method, status) ? undefined : buf);
      },
      sendUpstream: (up, headers) => this.stream(down.method, up, headers, res, (n) => { written += n; }),
      responseBytes: () => written,
      refused: () => this.refused.get(res),
    };
    void handleExchange(this.deps, down);
  }

  private stream(method: string, up: UpstreamResponse, headers: HeaderMap, res: http.ServerResponse, count: (n: number) => void): Promise<boolean> {
    return new Promise((resolve) => {
      if (bodyless(method, up.status)) {
        if (up.status === 204 || up.status < 200) delete headers['content-length'];
        up.discard();
        res.writeHead(up.status, headers as http.OutgoingHttpHeaders).end();
        res.once('finish', () => resolve(true));
        res.once('close', () => resolve(res.writableFinished));
        return;
      }
      res.writeHead(up.status, headers as http.OutgoingHttpHeaders);
      let ended = false;
      const body = up.body;
      body.on('data', (chunk: Buffer) => {
        count(chunk.length);
        if (!res.write(chunk)) {
          body.pause();
          res.once('drain', () => body.resume());
        }
      });
      body.once('end', () => {
        ended = true;
        const trailers = up.trailers();
        // Trailers only cross a chunked response (no Content-Length); Node drops them otherwise.
        if (trailers && headers['content-length'] === undefined) res.addTrailers(trailers as http.OutgoingHttpHeaders);
        res.end();
      });
      // The upstream cut the response: cut the client too, so it sees a truncated reply, not a complete one.
      body.once('close', () => { if (!ended) res.destroy(); });
      res.once('finish', () => resolve(true));
      res.once('close', () => {
        if (!ended) up.discard();
        resolve(res.writableFinished);
      });
    });
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const ctx = this.contexts.get(socket);
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'HPE_HEADERS_TIMEOUT' ? 408 : 400;
    this.refusal(`${err.code ?? 'parse error'}`, ctx);
    const res = (socket as { _httpMessage?: http.ServerResponse })._httpMessage;
    // A request already handed over is reported by its exchange; this is one the parser refused outright.
    if (ctx && !res) reportRefusal(this.deps, ctx, status);
    // A body that turns out malformed (bad chunk framing) fails after its head was
    // handed over: its upstream attempt is cut, and the client still gets the 400 if
    // no response has started.
    // Node does not end the request it already emitted: without this its body would
    // never end nor fail, and the upstream attempt fed from it would hang open.
    const failRequest = () => {
      if (res && !res.req.destroyed) res.req.destroy(new Error(`request body refused: ${err.code ?? 'parse error'}`));
      socket.destroy();
    };
    if (res && !res.headersSent && !res.destroyed) {
      this.refused.set(res, status);
      res.shouldKeepAlive = false;
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end('bad request\n');
      // After the 400 is written: destroying the request destroys its socket.
      res.once('finish', failRequest);
      res.once('close', failRequest);
      return;
    }
    if (res) return failRequest();
    refuseRaw(socket, status, tooLarge ? 'request headers too large' : 'bad request');
  }

  private refusal(reason: string, ctx: StreamContext | undefined): void {
    const suppressed = this.limiter.take(reason);
    if (suppressed === undefined) return;
    this.logger.warn({ reason, source: ctx?.source.address, source_identity: ctx?.source.identity, suppressed }, 'refused an HTTP/1 request');
  }
}

/** The access-log line and observer call of a request refused before routing (flag DPE). */
function reportRefusal(deps: ExchangeDeps, ctx: StreamContext, status: number, req?: http.IncomingMessage): void {
  report(deps, {
    protocol: 'http1', grpc: false, method: req?.method ?? '-', authority: first(req?.headers.host) ?? '-', path: req?.url?.split('?')[0] ?? '-',
    status, durationMs: 0, attempts: 0, traceId: '-', sourceAddress: ctx.source.address, sourceIdentity: ctx.source.identity, destinationService: ctx.destination.service,
    responseFlag: 'DPE', requestBytes: 0, responseBytes: 0,
  });
}

/** Writes a minimal response on a raw connection and closes it. */
export function refuseRaw(socket: Duplex, status: number, text: string): void {
  if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
    const body = `${text}\n`;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  } else {
    socket.destroy();
  }
  socket.once('finish', () => socket.destroy());
}
