/**
 * The HTTP/1.1 front end's fast path: one connection (an HBONE CONNECT stream) read and
 * written by the waypoint itself: the strict head parser of http1-head.ts, the body
 * through BodyDecoder, the response head written as one Buffer with its first body
 * bytes. No http.Server, IncomingMessage, ServerResponse nor StreamSocket: with them the
 * HTTP/1 server machinery was the largest part of the waypoint's CPU per request.
 *
 * It serves the common case only: HTTP/1.1 requests with a Host, without Upgrade or
 * Expect, framed by Content-Length or chunked. Anything else (a head it refuses, HTTP/1.0,
 * a WebSocket upgrade, `Expect: 100-continue`, too many or too large headers) is handed,
 * with the bytes not yet consumed, to the Node-based front end (http1.ts) at a message
 * boundary, which then serves the connection to its end: its behaviour (and its strict
 * llhttp refusals) stays the reference for every rare case. A request accepted here is
 * one llhttp's strict mode accepts too (the parser is at least as strict).
 *
 * Requests on one connection are served one after another, so pipelined requests are
 * answered in order; bytes read ahead wait in a bounded buffer.
 */
import { STATUS_CODES } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { LogLimiter } from '../lib/log-limiter';
import { handleExchange, report, type Downstream, type ExchangeDeps } from './exchange';
import { BodyDecoder } from './http1-body';
import { HeadError, framingOf, isFieldValue, isToken, parseHead, type HeadLimits, type ParsedHead } from './http1-head';
import type { UpstreamResponse } from './upstream';
import type { HeaderMap, StreamContext } from './types';

/** Read-ahead kept while a request is served; beyond it the stream is paused. */
const MAX_READ_AHEAD = 64 * 1024;
const CRLF = Buffer.from('\r\n');

/** Hands a connection (and the bytes read but not consumed) to the Node-based front end. */
export type Handover = (stream: Duplex, prefix: Buffer, ctx: StreamContext) => void;

function bodyless(method: string, status: number): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Whether the fast path serves this head; otherwise the connection is handed over. */
function servable(h: ParsedHead): boolean {
  const x = h.headers;
  const cl = x['content-length'];
  // Repeated Host or Content-Length fields, CONNECT (authority-form): the Node path refuses or closes.
  return h.minor === 1 && h.method !== 'CONNECT' && typeof x.host === 'string' && !x.host.includes(',') &&
    (cl === undefined || !(cl as string).includes(',')) && x.upgrade === undefined && x.expect === undefined;
}

export class Http1FastFront {
  private readonly limiter = new LogLimiter();
  private readonly limits: HeadLimits;

  constructor(private readonly deps: ExchangeDeps, private readonly handover: Handover) {
    this.limits = { maxHeaderBytes: deps.config.maxHeaderBytes, maxHeaderCount: deps.config.maxHeaderCount };
  }

  serve(stream: Duplex, ctx: StreamContext): void {
    new Http1ServerConn(this, stream, ctx).start();
  }

  /** @internal */ get exchangeDeps(): ExchangeDeps { return this.deps; }
  /** @internal */ get headLimits(): HeadLimits { return this.limits; }
  /** @internal */ handOver(stream: Duplex, prefix: Buffer, ctx: StreamContext): void { this.handover(stream, prefix, ctx); }

  /** @internal A refusal: one rate-limited warning. */
  refusal(reason: string, ctx: StreamContext): void {
    const suppressed = this.limiter.take(reason);
    if (suppressed === undefined) return;
    this.deps.logger.warn({ reason, source: ctx.source.address, source_identity: ctx.source.identity, suppressed }, 'refused an HTTP/1 request');
  }
}

/** One request in flight on a connection. */
interface Current {
  method: string;
  decoder: BodyDecoder;
  body: Readable;
  gone: AbortController;
  /** The response was written in full. */
  finished: boolean;
  /** A response head went out (a refusal can no longer be sent). */
  started: boolean;
  refused?: number;
  closeAfter: boolean;
}

class Http1ServerConn {
  private buf: Buffer = Buffer.alloc(0);
  private cur: Current | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The timer running is the headers timeout of a head partly read. */
  private headTimer = false;
  private done = false;
  /** Answers wait to drain: no further request is served (pipelined ones would buffer their answers without bound). */
  private draining = false;
  private readonly onData = (d: Buffer) => this.data(d);
  private readonly onDrain = () => {
    this.draining = false;
    if (this.done) return;
    this.stream.resume();
    this.armTimer();
    this.pump();
  };
  private readonly onEnd = () => this.peerEnded();
  private readonly onClose = () => this.closed();

  constructor(private readonly front: Http1FastFront, private readonly stream: Duplex, private readonly ctx: StreamContext) {}

  start(): void {
    this.stream.on('data', this.onData);
    this.stream.on('end', this.onEnd);
    this.stream.on('close', this.onClose);
    this.armTimer();
    this.stream.resume();
  }

  private data(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    this.pump();
  }

  /** Consumes what the buffer holds: the current body, then the next head (if nothing is in flight). */
  private pump(): void {
    while (!this.done && !this.draining) {
      const cur = this.cur;
      if (cur) {
        if (!cur.decoder.done && this.buf.length > 0) {
          let used: number;
          try {
            used = cur.decoder.feed(this.buf, (chunk) => {
              if (!cur.body.push(chunk)) this.stream.pause();
            });
          } catch (err) {
            this.bodyRefused(cur, err as HeadError);
            return;
          }
          this.buf = this.buf.subarray(used);
          if (cur.decoder.done) cur.body.push(null);
        }
        // The next message waits for this one's response; read-ahead is bounded.
        if (this.buf.length > MAX_READ_AHEAD) this.stream.pause();
        if (!cur.finished || !cur.decoder.done) return;
        this.cur = undefined;
        if (cur.closeAfter) {
          this.finish(true);
          return;
        }
        if (this.stream.writableNeedDrain) {
          // A client that does not read its answers gets no more served until it does (as Node's server).
          this.draining = true;
          this.stream.pause();
          this.stream.once('drain', this.onDrain);
          return;
        }
        this.stream.resume();
        this.armTimer();
        continue;
      }
      if (this.buf.length === 0) return;
      let head: ParsedHead | undefined;
      try {
        head = parseHead(this.buf, 'request', this.front.headLimits);
      } catch {
        // Refused here: the Node front end refuses it in its words (400/431, logged and counted).
        this.toNode();
        return;
      }
      if (!head) {
        this.armTimer();
        return;
      }
      if (!servable(head)) {
        this.toNode();
        return;
      }
      let framing;
      try {
        framing = framingOf(head, 'request');
      } catch {
        this.toNode();
        return;
      }
      this.buf = this.buf.subarray(head.size);
      this.begin(head, new BodyDecoder(framing, this.front.headLimits));
    }
  }

  private toNode(): void {
    this.detach();
    this.front.handOver(this.stream, this.buf, this.ctx);
  }

  private detach(): void {
    this.done = true;
    this.clearTimer();
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onClose);
    this.stream.off('drain', this.onDrain);
    this.stream.pause();
  }

  private begin(head: ParsedHead, decoder: BodyDecoder): void {
    this.clearTimer();
    const stream = this.stream;
    const body = new Readable({ read: () => { if (this.cur === cur && !this.done) stream.resume(); } });
    const conn = head.headers.connection;
    const cur: Current = {
      method: head.method, decoder, body, gone: new AbortController(), finished: false, started: false,
      closeAfter: typeof conn === 'string' && /(?:^|,)\s*close\s*(?:,|$)/i.test(conn),
    };
    this.cur = cur;
    if (decoder.done) body.push(null);
    let written = 0;
    const down: Downstream = {
      protocol: 'http1', ctx: this.ctx, method: head.method, authority: head.headers.host as string, target: head.target,
      headers: head.headers, body, gone: cur.gone.signal, hasBody: !decoder.done,
      sendLocal: (status, headers, text) => {
        if (cur.started || this.done) return;
        const buf = Buffer.from(text);
        const h: Record<string, string | number> = { ...headers };
        const none = bodyless(cur.method, status);
        if (!none) {
          h['content-length'] = buf.length;
          if (buf.length && h['content-type'] === undefined) h['content-type'] = 'text/plain';
        }
        if (cur.closeAfter) h.connection = 'close';
        written += none ? 0 : buf.length;
        this.respond(cur, status, h, none || buf.length === 0 ? undefined : buf, true);
      },
      sendUpstream: (up, headers) => this.stream_(cur, up, headers, (n) => { written += n; }),
      responseBytes: () => written,
      refused: () => cur.refused,
    };
    void handleExchange(this.front.exchangeDeps, down);
  }

  /** Writes a whole response (head and an optional body) at once. */
  private respond(cur: Current, status: number, headers: Record<string, string | number | string[] | undefined>, body: Buffer | undefined, end: boolean): void {
    cur.started = true;
    const head = Buffer.from(headText(status, headers), 'latin1');
    this.stream.write(body ? Buffer.concat([head, body]) : head);
    if (end) this.responded(cur);
  }

  /** The response is out: the next request may start. */
  private responded(cur: Current): void {
    cur.finished = true;
    if (!cur.decoder.done) {
      // A body nobody reads any more (a direct answer, an early upstream answer): drained
      // so the next request's head can be found after it.
      cur.body.resume();
    }
    if (this.cur === cur) queueMicrotask(() => this.pump());
  }

  /** Streams an upstream response; resolves false when it was cut before its end. */
  private stream_(cur: Current, up: UpstreamResponse, headers: HeaderMap, count: (n: number) => void): Promise<boolean> {
    if (this.done) {
      up.discard();
      return Promise.resolve(false);
    }
    if (cur.closeAfter) headers.connection = 'close';
    if (bodyless(cur.method, up.status)) {
      if (up.status === 204 || up.status < 200) delete headers['content-length'];
      up.discard();
      this.respond(cur, up.status, headers, undefined, true);
      return Promise.resolve(true);
    }
    const chunked = headers['content-length'] === undefined;
    if (chunked) headers['transfer-encoding'] = 'chunked';
    cur.started = true;
    let head: Buffer | undefined = Buffer.from(headText(up.status, headers), 'latin1');
    const stream = this.stream;
    const write = (parts: Buffer[]): boolean => {
      if (head) {
        parts.unshift(head);
        head = undefined;
      }
      return stream.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    };
    return new Promise((resolve) => {
      const body = up.body;
      let ended = false;
      const onGone = () => {
        if (ended) return;
        up.discard();
        resolve(false);
      };
      cur.gone.signal.addEventListener('abort', onGone, { once: true });
      body.on('data', (chunk: Buffer) => {
        if (chunk.length === 0 || this.done) return;
        count(chunk.length);
        const ok = write(chunked ? [Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF] : [chunk]);
        if (!ok) {
          body.pause();
          stream.once('drain', () => body.resume());
        }
      });
      body.once('end', () => {
        ended = true;
        cur.gone.signal.removeEventListener('abort', onGone);
        if (this.done) return resolve(false);
        if (chunked) {
          // Trailers cross a chunked response only.
          const t = up.trailers();
          write([Buffer.from(`0\r\n${t ? fieldLines(t) : ''}\r\n`, 'latin1')]);
        } else if (head) {
          write([]);
        }
        this.responded(cur);
        resolve(true);
      });
      // The upstream cut the response: cut the client too, so it sees a truncated reply, not a complete one.
      body.once('close', () => {
        if (ended) return;
        cur.gone.signal.removeEventListener('abort', onGone);
        this.finish(false);
        resolve(false);
      });
    });
  }

  /** A request body with bad framing after its head was handed over: 400 if nothing was answered yet, then close. */
  private bodyRefused(cur: Current, err: HeadError): void {
    this.front.refusal(`body: ${err.message}`, this.ctx);
    cur.refused = 400;
    cur.body.destroy(new Error(`request body refused: ${err.message}`));
    if (!cur.started && !this.done) {
      cur.started = true;
      const text = 'bad request\n';
      this.stream.write(Buffer.from(headText(400, { 'content-type': 'text/plain', 'content-length': text.length, connection: 'close' }) + text, 'latin1'));
    }
    this.finish(true);
  }

  /**
   * The client half-closed: as Node's server (no httpAllowHalfOpen), a request in flight
   * is abandoned (its upstream attempt cancelled, flag DC) and the connection ended.
   */
  private peerEnded(): void {
    this.finish(true);
  }

  private closed(): void {
    if (this.done && !this.cur) return;
    this.finish(false);
  }

  /** Ends the connection: gracefully (`end`, what was written is delivered) or cut. */
  private finish(graceful: boolean): void {
    const cur = this.cur;
    this.cur = undefined;
    if (!this.done) {
      this.detach();
      if (graceful) {
        this.stream.end();
        this.stream.once('finish', () => this.stream.destroy());
      } else {
        this.stream.destroy();
      }
    }
    if (cur) {
      if (!cur.decoder.done) cur.body.destroy();
      if (!cur.finished) cur.gone.abort();
    }
  }

  /** Waiting for a head: the keep-alive timeout when nothing came yet, else the headers timeout (408). */
  private armTimer(): void {
    const partial = this.buf.length > 0;
    // The headers timeout runs from a head's first byte: re-armed per read, a head sent a line at a time would never time out.
    if (partial && this.headTimer) return;
    this.clearTimer();
    this.headTimer = partial;
    const cfg = this.front.exchangeDeps.config;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.headTimer = false;
      if (this.cur || this.done) return;
      if (partial || this.buf.length > 0) {
        this.front.refusal('headers timeout', this.ctx);
        reportRefusal(this.front.exchangeDeps, this.ctx, 408);
        const text = 'request timeout\n';
        this.stream.write(Buffer.from(headText(408, { 'content-type': 'text/plain', 'content-length': text.length, connection: 'close' }) + text, 'latin1'));
      }
      this.finish(true);
    }, partial ? cfg.headersTimeoutMs : cfg.keepAliveTimeoutMs);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.headTimer = false;
  }
}

/** The status line and header lines; names that are not tokens and values with control characters are left out. */
function headText(status: number, headers: Record<string, string | number | string[] | undefined>): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${fieldLines(headers)}\r\n`;
}

function fieldLines(headers: Record<string, string | number | string[] | undefined>): string {
  let s = '';
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || !isToken(name)) continue;
    if (Array.isArray(v)) {
      for (const one of v) if (isFieldValue(one)) s += `${name}: ${one}\r\n`;
    } else {
      const text = String(v);
      if (isFieldValue(text)) s += `${name}: ${text}\r\n`;
    }
  }
  return s;
}

/** The access-log line and observer call of a request refused before routing (flag DPE). */
function reportRefusal(deps: ExchangeDeps, ctx: StreamContext, status: number): void {
  report(deps, {
    protocol: 'http1', grpc: false, method: '-', authority: '-', path: '-',
    status, durationMs: 0, attempts: 0, traceId: '-', sourceAddress: ctx.source.address, sourceIdentity: ctx.source.identity, destinationService: ctx.destination.service,
    responseFlag: 'DPE', requestBytes: 0, responseBytes: 0,
  });
}
