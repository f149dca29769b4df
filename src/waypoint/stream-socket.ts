/**
 * A socket-shaped Duplex over any Duplex (an HBONE CONNECT Http2Stream, a TCP socket),
 * so Node's HTTP machinery can run over it: `http.Server` fed with
 * `server.emit('connection', s)`, `http.Agent`'s `createConnection`, and
 * `http2.connect(url, {createConnection})` / `http2.createServer()` likewise.
 *
 * Why a wrapper and not the stream itself (reference §11): a raw Http2Stream handed to
 * the HTTP/1 server or client corrupts the first bytes when string chunks are written in
 * a batch; Buffers pass intact. Here every write reaches the inner stream as one Buffer
 * (strings are decoded by the Writable side, batches concatenated). The HTTP machinery
 * also calls socket methods a stream lacks (`setKeepAlive`, `setNoDelay`, `setTimeout`,
 * `ref`, `unref`, `destroySoon`) and reads `remoteAddress`/`remotePort` for logs; those
 * are provided, the addresses settable from the HBONE context (the original client, not
 * the tunnel's peer).
 *
 * Bytes already read from the inner stream (protocol sniffing) can be handed back as
 * `prefix`; they are delivered before anything else.
 */
import { Duplex } from 'node:stream';
import type { WriteAhead } from './write-ahead';

export interface StreamSocketOptions {
  /** Bytes read ahead (sniffing) to deliver first. */
  prefix?: Buffer;
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
  /**
   * For an HTTP/2 session on top: a write completes at once while this budget lets it
   * run ahead of the inner stream; otherwise when the inner stream's write does
   * (write-ahead.ts says why).
   */
  writeAhead?: WriteAhead;
}

interface MaybeSocket {
  setNoDelay?(noDelay?: boolean): unknown;
  setKeepAlive?(enable?: boolean, delay?: number): unknown;
  ref?(): unknown;
  unref?(): unknown;
}

export class StreamSocket extends Duplex {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  remoteFamily: string | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  /** Node's http client checks this before writing; a wrapped stream is connected from the start. */
  readonly connecting = false;
  bytesRead = 0;
  bytesWritten = 0;
  /** Idle timeout armed by setTimeout (ms; 0 = none), as net.Socket's `timeout`. */
  timeout = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly inner: Duplex;
  private readonly writeAhead: WriteAhead | undefined;
  /** Bytes written ahead and not yet written by the inner stream; their sizes in order (write callbacks come in order). */
  private ahead = 0;
  private readonly aheadSizes: number[] = [];
  /** _final's callback, held until what ran ahead is written: 'finish' must still mean "the inner stream has it all". */
  private finalCb: ((err?: Error | null) => void) | undefined;
  /** Destroys the socket if what ran ahead is not written in time after the end (write-ahead.ts DRAIN_ON_END_MS). */
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(inner: Duplex, opts: StreamSocketOptions = {}) {
    // The HTTP layers decide half-close themselves; the inner stream carries FIN/END_STREAM as is.
    super({ allowHalfOpen: true, decodeStrings: true });
    this.inner = inner;
    this.remoteAddress = opts.remoteAddress;
    this.remotePort = opts.remotePort;
    this.remoteFamily = opts.remoteAddress?.includes(':') ? 'IPv6' : opts.remoteAddress ? 'IPv4' : undefined;
    this.localAddress = opts.localAddress;
    this.localPort = opts.localPort;
    this.writeAhead = opts.writeAhead;
    if (opts.prefix && opts.prefix.length > 0) {
      this.bytesRead += opts.prefix.length;
      this.push(opts.prefix);
    }
    inner.on('data', (chunk: Buffer) => {
      this.bytesRead += chunk.length;
      this.touch();
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    // A stream reset or closed underneath ends this socket too (no 'end' comes then).
    // After a clean end, bytes still queued here are delivered first.
    inner.on('close', () => {
      if (this.destroyed) return;
      if (!inner.readableEnded) this.destroy();
      else if (this.readableEnded) this.destroy();
      else this.once('end', () => this.destroy());
    });
    // The inner stream may be paused by a sniffer that read ahead of us.
    inner.pause();
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.forward(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    // One Buffer per batch: the batched write is what corrupts a raw Http2Stream.
    this.forward(Buffer.concat(chunks.map((c) => c.chunk)), cb);
  }

  private forward(buf: Buffer, cb: (err?: Error | null) => void): void {
    this.bytesWritten += buf.length;
    this.touch();
    if (this.writeAhead?.take(this.ahead, buf.length)) {
      this.ahead += buf.length;
      this.aheadSizes.push(buf.length);
      // Done now; an inner write that fails or is dropped still ends this socket, through
      // the inner stream's 'error' or 'close' (both handled in the constructor).
      this.inner.write(buf, this.onAheadWritten);
      cb();
    } else {
      this.inner.write(buf, cb);
    }
  }

  /** The inner stream wrote (or dropped, destroyed) the oldest write that ran ahead. */
  private readonly onAheadWritten = (err?: Error | null): void => {
    const n = this.aheadSizes.shift();
    if (n === undefined) return;
    this.ahead -= n;
    this.writeAhead!.give(n);
    const cb = this.finalCb;
    // A failed write ends the wait too, with its error: 'finish' is not for lost bytes.
    if (!cb || (this.ahead > 0 && !err)) return;
    this.finalCb = undefined;
    this.clearDrainTimer();
    cb(err ?? null);
  };

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end();
    // 'finish' is what destroySoon and Node's session close wait for before destroying
    // the inner stream: with writes still ahead, it waits for them.
    if (this.ahead === 0) return cb();
    this.finalCb = cb;
    this.drainTimer = setTimeout(() => this.destroy(), this.writeAhead!.drainOnEndMs);
    this.drainTimer.unref();
  }

  private clearDrainTimer(): void {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.clearTimer();
    // What ran ahead goes back now, whether or not the inner stream still calls back.
    this.writeAhead?.give(this.ahead);
    this.ahead = 0;
    this.aheadSizes.length = 0;
    this.finalCb = undefined;
    this.clearDrainTimer();
    if (!this.inner.destroyed) this.inner.destroy(err ?? undefined);
    cb(err);
  }

  /** net.Socket's idle timeout: 'timeout' after `ms` without bytes either way (0 disarms). */
  setTimeout(ms: number, cb?: () => void): this {
    this.timeout = ms;
    // net.Socket's contract: 0 with a callback removes that callback (Node's http client
    // relies on it when a kept-alive socket goes back to the pool).
    if (cb) {
      if (ms === 0) this.removeListener('timeout', cb);
      else this.once('timeout', cb);
    }
    this.clearTimer();
    if (ms > 0 && !this.destroyed) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.emit('timeout');
      }, ms);
      this.timer.unref();
    }
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    (this.inner as MaybeSocket).setNoDelay?.(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    (this.inner as MaybeSocket).setKeepAlive?.(enable, delay);
    return this;
  }

  ref(): this {
    (this.inner as MaybeSocket).ref?.();
    return this;
  }

  unref(): this {
    (this.inner as MaybeSocket).unref?.();
    return this;
  }

  /** Ends the write side, then destroys once written (what Node's HTTP server calls after `Connection: close`). */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  /** net.Socket#address(), for code that logs it. */
  address(): { address?: string; port?: number; family?: string } {
    return { address: this.localAddress, port: this.localPort, family: this.remoteFamily };
  }

  private touch(): void {
    this.timer?.refresh();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
