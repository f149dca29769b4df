/**
 * One kept-alive HTTP/1.1 connection to an upstream, one exchange at a time, written and
 * read by the waypoint itself: the request head is one string built from the headers
 * (no ClientRequest, no Agent), the response head goes through the strict parser of
 * http1-head.ts and its body through BodyDecoder into a Readable. An http.ClientRequest
 * per upstream request was ~22 % of the waypoint's CPU in the L7 benchmark.
 *
 * The connection is reusable once the request was written in full and the response read
 * in full (framed by length or chunks, HTTP/1.1, no `Connection: close`); anything else
 * (an error, an abort, a body cut, an early answer to a request still being sent) closes it.
 */
import { Readable, type Duplex } from 'node:stream';
import { BodyDecoder } from './http1-body';
import { HeadError, framingOf, isFieldValue, isToken, parseHead, type HeadLimits } from './http1-head';
import { AttemptError, type AttemptRequest, type UpstreamResponse } from './upstream';
import type { HeaderMap } from './types';

/** Node's defaults for a client: a response head up to 16 KiB, and no field count limit worth hitting first. */
const RESPONSE_LIMITS: HeadLimits = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 2000 };
/** Methods Node sends without a body and without `content-length: 0` when there is none. */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

interface Exchange {
  method: string;
  resolve(res: UpstreamResponse): void;
  reject(err: AttemptError): void;
  /** The head arrived (the promise is settled). */
  answered: boolean;
  requestDone: boolean;
  decoder?: BodyDecoder;
  body?: Readable;
  keepAlive: boolean;
  signal: AbortSignal;
  onAbort(): void;
}

export class UpstreamConnection {
  /** Requests this connection carried (the first one is not "reused"). */
  uses = 0;
  private buf: Buffer | undefined;
  private ex: Exchange | undefined;
  private closed = false;

  /**
   * @param sock the dialed stream (an HBONE stream or a TCP socket); Buffers only are written to it.
   * @param release called when an exchange finished and the connection can take the next.
   * @param label host:port for messages.
   */
  constructor(private readonly sock: Duplex, private readonly release: (c: UpstreamConnection) => void, private readonly label: string) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('end', () => this.onClose());
    sock.on('close', () => this.onClose());
    sock.on('error', () => this.onClose());
  }

  /** Whether the connection can take a request now. */
  get usable(): boolean {
    return !this.closed && !this.ex && !this.sock.destroyed && this.sock.writable;
  }

  destroy(): void {
    this.sock.destroy();
    this.onClose();
  }

  /** Sends one request; resolves with the response head (its body streams after). */
  request(a: AttemptRequest, authority: string): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const head = requestHead(a, authority);
      if (typeof head !== 'string') {
        // Nothing was written: the connection is as good as before and goes back to its
        // pool (held by no one, it would count against maxConnections until the upstream closed it).
        this.release(this);
        return reject(head);
      }
      this.uses++;
      const ex: Exchange = {
        method: a.method, resolve, reject, answered: false, requestDone: false, keepAlive: true, signal: a.signal,
        onAbort: () => this.fail(new AttemptError('aborted', 'attempt aborted')),
      };
      this.ex = ex;
      if (a.signal.aborted) return ex.onAbort();
      a.signal.addEventListener('abort', ex.onAbort, { once: true });
      const headBuf = Buffer.from(head, 'latin1');
      if (!a.body) {
        this.sock.write(headBuf);
        ex.requestDone = true;
        return;
      }
      this.sendBody(ex, a.body, headBuf, a.headers['content-length'] === undefined);
    });
  }

  /** Streams the request body; the head goes out with its first bytes (one write), or on its own a turn later. */
  private sendBody(ex: Exchange, body: Readable, headBuf: Buffer, chunked: boolean): void {
    let head: Buffer | undefined = headBuf;
    const flushHead = setImmediate(() => {
      if (head && this.ex === ex) this.sock.write(head);
      head = undefined;
    });
    const write = (parts: Buffer[]): boolean => {
      if (head) {
        parts.unshift(head);
        head = undefined;
        clearImmediate(flushHead);
      }
      return this.sock.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    };
    body.on('data', (chunk: Buffer) => {
      if (this.ex !== ex) return;
      if (chunk.length === 0) return;
      const ok = write(chunked ? [Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF] : [chunk]);
      if (!ok) {
        body.pause();
        this.sock.once('drain', () => body.resume());
      }
    });
    body.once('end', () => {
      if (this.ex !== ex) return;
      if (chunked) write([LAST_CHUNK]);
      else if (head) write([]);
      ex.requestDone = true;
      this.maybeRelease(ex);
    });
    body.once('error', (err) => {
      if (this.ex === ex) this.fail(new AttemptError('reset', `request body failed: ${err.message}`, { cause: err }));
    });
    // Cut without an error, or already failed while the connection was being dialed.
    const cut = () => {
      if (this.ex === ex && !ex.requestDone) this.fail(new AttemptError('reset', 'request body aborted'));
    };
    body.once('close', cut);
    if (body.destroyed) cut();
    // A request's body may be handed over paused (body.ts, direct): it flows from here.
    else body.resume();
  }

  private onData(d: Buffer): void {
    const ex = this.ex;
    if (!ex) {
      // Bytes with no request outstanding: the upstream is not speaking our protocol.
      this.destroy();
      return;
    }
    let buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    this.buf = undefined;
    try {
      while (buf.length > 0 && this.ex === ex) {
        if (!ex.decoder) {
          const head = parseHead(buf, 'response', RESPONSE_LIMITS);
          if (!head) {
            this.buf = buf;
            return;
          }
          buf = buf.subarray(head.size);
          // 1xx before the final answer (100 Continue): skipped; 101 is for upgrades, which do not come this way.
          if (head.status < 200) {
            if (head.status === 101) throw new HeadError(502, 'unexpected 101 Switching Protocols');
            continue;
          }
          const framing = framingOf(head, 'response', ex.method);
          const conn = head.headers.connection;
          ex.keepAlive = head.minor === 1 && framing.kind !== 'close' && !(typeof conn === 'string' && /(?:^|,)\s*close\s*(?:,|$)/i.test(conn));
          // Agreeing repeats ("3, 3") pass the parser; relayed as one value, which clients accept.
          if (framing.kind === 'length') head.headers['content-length'] = String(framing.length);
          ex.decoder = new BodyDecoder(framing, RESPONSE_LIMITS);
          this.answer(ex, head.status, head.headers);
          continue;
        }
        const used = ex.decoder.feed(buf, (chunk) => {
          if (!ex.body!.push(chunk)) this.sock.pause();
        });
        buf = buf.subarray(used);
        if (ex.decoder.done) this.endBody(ex);
        else if (buf.length > 0) break;
      }
      // Bytes after a complete response: nothing else was asked for.
      if (buf.length > 0 && this.ex !== ex) this.destroy();
    } catch (err) {
      const e = err as Error;
      this.fail(new AttemptError('reset', `${this.label} sent an invalid response: ${e.message}`, { cause: e }));
    }
  }

  private answer(ex: Exchange, status: number, headers: HeaderMap): void {
    ex.answered = true;
    const sock = this.sock;
    const body = new Readable({ read: () => { if (this.ex === ex) sock.resume(); } });
    ex.body = body;
    const decoder = ex.decoder!;
    ex.resolve({
      status, headers, body,
      endStream: false,
      trailers: () => (decoder.done ? decoder.trailers : undefined),
      discard: () => {
        // A body read in full (a small answer comes with its head) is dropped and the
        // connection kept; the rest of one still coming (a stream that may never end, a
        // client gone from a download) is cut with the connection, not drained.
        if (decoder.done) {
          ex.signal.removeEventListener('abort', ex.onAbort);
          body.resume();
        } else if (this.ex === ex) {
          this.fail(new AttemptError('aborted', 'response discarded'));
        }
      },
    });
    if (decoder.done) this.endBody(ex);
  }

  private endBody(ex: Exchange): void {
    if (ex.body!.readableEnded || ex.body!.destroyed) return;
    ex.body!.push(null);
    this.maybeRelease(ex);
  }

  /** Both directions done: the connection goes back to the pool, or closes. */
  private maybeRelease(ex: Exchange): void {
    if (this.ex !== ex || !ex.decoder?.done) return;
    if (!ex.requestDone) {
      // Answered before the request was sent in full: the rest cannot be skipped on a kept connection.
      this.ex = undefined;
      ex.signal.removeEventListener('abort', ex.onAbort);
      this.destroy();
      return;
    }
    this.ex = undefined;
    ex.signal.removeEventListener('abort', ex.onAbort);
    if (!ex.keepAlive) {
      this.destroy();
      return;
    }
    // Paused for a slow reader of the body just ended: the next exchange reads again.
    this.sock.resume();
    this.release(this);
  }

  /** The exchange failed: before the head, the attempt rejects; after it, the body is cut. */
  private fail(err: AttemptError): void {
    const ex = this.ex;
    this.ex = undefined;
    this.sock.destroy();
    this.closed = true;
    if (!ex) return;
    ex.signal.removeEventListener('abort', ex.onAbort);
    if (!ex.answered) ex.reject(err);
    else if (!ex.decoder?.done) ex.body?.destroy();
  }

  private onClose(): void {
    if (this.closed && !this.ex) return;
    this.closed = true;
    // The upstream ended its side ('end'): ours ends too. A half-open stream (an HBONE
    // stream is one) does not end itself, and nothing else would close it.
    this.sock.destroy();
    const ex = this.ex;
    if (!ex) return;
    if (ex.answered && ex.decoder?.untilClose && !this.buf) {
      ex.decoder.close();
      this.ex = undefined;
      ex.signal.removeEventListener('abort', ex.onAbort);
      ex.body!.push(null);
      return;
    }
    this.fail(new AttemptError('reset', `${this.label} closed the connection before a response`, { reusedConnection: this.uses > 1 && !ex.answered }));
  }
}

/** The request head as one string, or the AttemptError for a header that cannot be written. */
function requestHead(a: AttemptRequest, authority: string): string | AttemptError {
  let s = `${a.method} ${a.path} HTTP/1.1\r\nhost: ${authority}\r\n`;
  const h = a.headers;
  let hasLength = false;
  for (const name in h) {
    const v = h[name];
    if (v === undefined || name === 'host') continue;
    if (!isToken(name)) return new AttemptError('reset', `invalid header name ${JSON.stringify(name)}`);
    if (name === 'content-length') hasLength = true;
    if (typeof v === 'string') {
      if (!isFieldValue(v)) return new AttemptError('reset', `invalid value of header ${name}`);
      s += `${name}: ${v}\r\n`;
    } else {
      for (const one of v) {
        if (!isFieldValue(one)) return new AttemptError('reset', `invalid value of header ${name}`);
        s += `${name}: ${one}\r\n`;
      }
    }
  }
  // A body without a length goes chunked, whatever the method: an unframed GET body
  // would be read as the next request. No body: `content-length: 0` where a body is
  // expected (as Node's client does), nothing for GET and its kind.
  if (a.body && !hasLength) s += 'transfer-encoding: chunked\r\n';
  else if (!a.body && !hasLength && !NO_BODY_METHODS.has(a.method)) s += 'content-length: 0\r\n';
  if (!/^[\x21-\x7e]+$/.test(a.path) || !isToken(a.method) || !isFieldValue(authority)) {
    return new AttemptError('reset', 'invalid request line or authority');
  }
  return `${s}\r\n`;
}
