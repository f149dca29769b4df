/**
 * The byte copy at the heart of the proxy: two duplexes (a TCP socket, or an HTTP/2
 * CONNECT stream) joined both ways, with
 *   - half-close both ways: FIN on one side becomes END_STREAM (or FIN) on the other,
 *     and the opposite direction keeps flowing;
 *   - resets both ways: a TCP RST or socket error becomes RST_STREAM, a RST_STREAM
 *     becomes a TCP RST (`resetAndDestroy`), as RFC 9113 §8.5 asks of a CONNECT proxy;
 *   - backpressure: a side is paused while the other has more than `highWaterMark`
 *     bytes queued, and resumed on its 'drain';
 *   - byte counting in both directions (plain integer adds: cheap per chunk).
 *
 * Streams' own write() starts returning false at 16 KiB, which would pause the reader
 * after every 64 KiB socket read; a larger threshold keeps both sides busy.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';

const { NGHTTP2_NO_ERROR } = http2.constants;

/** Default queued bytes on the writing side before the reading side is paused. */
export const DEFAULT_PIPE_HIGH_WATER_MARK = 1024 * 1024;

/**
 * Default idle timeout of every pipe: no byte either way for this long and both sides
 * are reset. One hour, as Envoy's TCP proxy: long enough for quiet database and
 * message-queue connections, short enough that a peer gone without a FIN (pod deleted,
 * node lost) does not hold a connection, its stream and its tracked record for ever
 * when TCP keepalive cannot tell (a peer whose address was reused answers probes).
 * Set process-wide at start-up by `configurePipes` (`--idle-timeout`).
 */
export const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;

const pipeDefaults = { idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS };

/** Sets the idle timeout of pipes created from now on (0 disables it). */
export function configurePipes(opts: { idleTimeoutMs: number }): void {
  if (!Number.isFinite(opts.idleTimeoutMs) || opts.idleTimeoutMs < 0) throw new RangeError(`idleTimeoutMs must be ≥ 0, got ${opts.idleTimeoutMs}`);
  pipeDefaults.idleTimeoutMs = opts.idleTimeoutMs;
}

/** Chunks at least this big are bulk transfer: their socket writes are batched per loop turn. */
const BATCH_MIN_CHUNK = 4096;

/** Bytes seen by the pipe. "Downstream" is the side that opened the connection. */
export interface ByteCounters {
  /** Downstream → upstream (the request direction; Istio's `received` bytes). */
  received: number;
  /** Upstream → downstream (the response direction; Istio's `sent` bytes). */
  sent: number;
}

/** How a pipe ended; `undefined` error means both sides closed cleanly. */
export interface PipeOutcome {
  error?: 'DOWNSTREAM_RESET' | 'UPSTREAM_RESET' | 'ABORTED';
  /** Only for logs (never for metric labels): what the side that failed said. */
  detail?: string;
}

export type PipeSide = net.Socket | http2.Http2Stream;

export interface PipeOptions {
  highWaterMark?: number;
  /** Counters to add to (e.g. a tracked connection's); a fresh object otherwise. */
  counters?: ByteCounters;
  /** Called once, after both sides have closed. */
  onDone?: (outcome: PipeOutcome, counters: ByteCounters) => void;
  /**
   * Told when a direction pauses for backpressure (`paused` true) and resumes (false).
   * Returning false to a pause refuses it: the bytes it would park do not fit a
   * memory budget, and the pipe is aborted instead (see limits.ts).
   */
  stall?: (direction: keyof ByteCounters, paused: boolean) => boolean;
  /** No byte either way this long aborts the pipe (ABORTED, "idle"); 0 never. Default: configurePipes'. */
  idleTimeoutMs?: number;
}

type Role = 'downstream' | 'upstream';

/**
 * A side's End, found from the side itself by the shared event handlers below: every
 * pipe's listeners are the same six functions, not closures per connection (with 5,000
 * idle connections those closures and their contexts were ~1 KB per connection on each
 * ztunnel, bench/heap-diff.ts).
 */
const kEnd = Symbol('weft pipe end');
type Side = PipeSide & { [kEnd]?: End };

class End {
  closed = false;
  /** Set when this side failed on its own (not because we reset it). */
  failed = false;
  /** Set when we reset this side ourselves: its close is then not its own failure. */
  resetByUs = false;
  detail: string | undefined;
  readonly isStream: boolean;
  /** The other side: where this side's bytes are written. */
  other!: End;
  /** This side's reading is paused until the other side drains. */
  paused = false;
  /** The other side's writes are corked until the next loop turn (batch). */
  corked = false;

  constructor(readonly d: PipeSide, readonly role: Role, readonly pipe: Pipe, readonly counter: keyof ByteCounters) {
    this.isStream = !(d instanceof net.Socket);
  }

  /** Aborts this side the way its protocol says "connection broken". */
  reset(): void {
    if (this.closed) return;
    this.resetByUs = true;
    if (this.isStream) resetStream(this.d as http2.Http2Stream);
    else {
      const s = this.d as net.Socket;
      if (s.destroyed) return;
      // resetAndDestroy needs a connected handle; fall back to destroy otherwise.
      if (!s.pending && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
  }
}

/**
 * RST_STREAM without a preceding END_STREAM. `stream.close(code)` would first end the
 * writable side (sending END_STREAM), so the peer would see a clean half-close before
 * the reset and could not turn it into a TCP RST any more (a socket whose write side
 * is shut down cannot be reset). destroy() skips the END_STREAM; Node then sends
 * RST_STREAM(INTERNAL_ERROR) — any non-zero code means "aborted" to the peer.
 */
export function resetStream(s: http2.Http2Stream): void {
  if (!s.destroyed) s.destroy(new Error('HBONE stream reset by the proxy'));
}

/**
 * The idle timeouts of all pipes with the same timeout, checked by one timer four
 * times per timeout instead of a timer per pipe, and instead of re-arming one per
 * chunk (which would cost in the copy loop): idle is noticed between `ms` and
 * 1.5 × `ms` after the last byte.
 */
class IdleSweep {
  private static readonly byTimeout = new Map<number, IdleSweep>();
  private readonly pipes = new Set<Pipe>();
  private readonly timer: NodeJS.Timeout;

  static add(p: Pipe, ms: number): IdleSweep {
    let sweep = IdleSweep.byTimeout.get(ms);
    if (!sweep) {
      sweep = new IdleSweep(ms);
      IdleSweep.byTimeout.set(ms, sweep);
    }
    sweep.pipes.add(p);
    return sweep;
  }

  private constructor(private readonly ms: number) {
    this.timer = setInterval(() => this.check(), Math.max(1, Math.floor(ms / 4)));
    this.timer.unref();
  }

  remove(p: Pipe): void {
    this.pipes.delete(p);
    if (this.pipes.size > 0) return;
    clearInterval(this.timer);
    // A pipe removed twice (by check(), then by its own finish) must not unregister a
    // newer sweep for the same timeout.
    if (IdleSweep.byTimeout.get(this.ms) === this) IdleSweep.byTimeout.delete(this.ms);
  }

  private check(): void {
    const now = Date.now();
    for (const p of this.pipes) {
      const total = p.counters.received + p.counters.sent;
      if (total !== p.idleSeen) {
        p.idleSeen = total;
        p.idleSince = now;
      } else if (now - p.idleSince >= this.ms) {
        this.remove(p);
        p.abort(`idle: no byte either way for ${Math.round((now - p.idleSince) / 1000)} s (idle timeout ${this.ms / 1000} s)`);
      }
    }
  }
}

/**
 * Joins `downstream` and `upstream`. Both must be connected (a socket) or answered
 * (a stream): from here on, bytes flow.
 */
export class Pipe {
  readonly counters: ByteCounters;
  private readonly down: End;
  private readonly up: End;
  /** @internal the writer's queue above which the reader pauses. */
  readonly hwm: number;
  private finished = false;
  /** @internal */
  aborted = false;
  private abortDetail: string | undefined;
  private readonly onDone: PipeOptions['onDone'];
  /** @internal */
  readonly stall: PipeOptions['stall'];
  private idle: IdleSweep | undefined;
  /** @internal IdleSweep's: the byte count last seen and since when. */
  idleSeen = -1;
  /** @internal */
  idleSince = 0;

  constructor(downstream: PipeSide, upstream: PipeSide, opts: PipeOptions = {}) {
    this.counters = opts.counters ?? { received: 0, sent: 0 };
    this.down = new End(downstream, 'downstream', this, 'received');
    this.up = new End(upstream, 'upstream', this, 'sent');
    this.down.other = this.up;
    this.up.other = this.down;
    this.hwm = opts.highWaterMark ?? DEFAULT_PIPE_HIGH_WATER_MARK;
    this.onDone = opts.onDone;
    this.stall = opts.stall;
    for (const e of [this.down, this.up]) {
      const d = e.d as Side;
      d[kEnd] = e;
      d.on('data', onData);
      d.on('drain', onDrain);
      d.on('end', onEnd);
      d.on('error', onError);
      // Node emits 'aborted' when the peer reset a stream that was still readable.
      if (e.isStream) d.on('aborted', onAborted);
      // 'close' comes once: on(), not once(), which would wrap it per connection.
      d.on('close', onClose);
    }
    // A side may have been paused (pauseOnConnect) or already be in flowing mode.
    downstream.resume();
    upstream.resume();
    const idle = opts.idleTimeoutMs ?? pipeDefaults.idleTimeoutMs;
    if (idle > 0) {
      this.idleSeen = this.counters.received + this.counters.sent;
      this.idleSince = Date.now();
      this.idle = IdleSweep.add(this, idle);
    }
  }

  /** Resets both sides (policy revoked, shutdown, over budget). The outcome reports ABORTED, with `detail`. */
  abort(detail?: string): void {
    if (this.finished) return;
    this.aborted = true;
    this.abortDetail ??= detail;
    this.down.reset();
    this.up.reset();
  }

  get done(): boolean {
    return this.finished;
  }

  /** @internal onClose's: both sides closed, the outcome reported once. */
  maybeFinish(): void {
    if (this.finished || !this.down.closed || !this.up.closed) return;
    this.finished = true;
    this.idle?.remove(this);
    this.idle = undefined;
    const outcome: PipeOutcome = {};
    if (this.aborted) {
      outcome.error = 'ABORTED';
      if (this.abortDetail) outcome.detail = this.abortDetail;
    } else if (this.down.failed) {
      outcome.error = 'DOWNSTREAM_RESET';
      if (this.down.detail) outcome.detail = this.down.detail;
    } else if (this.up.failed) {
      outcome.error = 'UPSTREAM_RESET';
      if (this.up.detail) outcome.detail = this.up.detail;
    }
    this.onDone?.(outcome, this.counters);
  }
}

// The shared listeners: `this` is the side that emitted, its End is side[kEnd].

/**
 * Writes into a socket are batched per event-loop turn: HTTP/2 over TLS delivers
 * ~8 KiB pieces (16 KiB frames cut by 16 KiB TLS records), and one write syscall per
 * piece costs more than the copy itself. Small chunks (interactive traffic) are not
 * held back, so latency is unchanged; HTTP/2 streams batch on their own.
 */
function onData(this: Side, chunk: Buffer): void {
  const from = this[kEnd]!;
  const to = from.other;
  const pipe = from.pipe;
  pipe.counters[from.counter] += chunk.length;
  const dst = to.d;
  if (dst.destroyed || dst.writableEnded) return;
  if (!to.isStream && !from.corked && chunk.length >= BATCH_MIN_CHUNK) {
    from.corked = true;
    dst.cork();
    setImmediate(uncork, from);
  }
  dst.write(chunk);
  if (!from.paused && dst.writableLength > pipe.hwm) {
    if (pipe.stall && !pipe.stall(from.counter, true)) {
      pipe.abort(`over the memory budget for stalled streams (${from.counter === 'received' ? 'the destination' : 'the client'} is not reading)`);
      return;
    }
    from.paused = true;
    this.pause();
  }
}

function uncork(from: End): void {
  from.corked = false;
  from.other.d.uncork();
}

/** The side drained: the other side, paused for it, reads again. */
function onDrain(this: Side): void {
  const from = this[kEnd]!.other;
  if (!from.paused) return;
  from.paused = false;
  from.pipe.stall?.(from.counter, false);
  from.d.resume();
}

/**
 * FIN / END_STREAM: half-close the other side's write direction only. For a stream,
 * wait one turn: a peer that sends END_STREAM right before RST_STREAM means "aborted",
 * and a FIN sent first would make the reset impossible.
 */
function onEnd(this: Side): void {
  const from = this[kEnd]!;
  const dst = from.other.d;
  if (!from.isStream) return endUnlessReset(this as net.Socket, dst);
  setImmediate(halfCloseUnlessReset, this as http2.Http2Stream, dst);
}

function halfCloseUnlessReset(src: http2.Http2Stream, dst: PipeSide): void {
  const rst = src.rstCode;
  if (rst === undefined || rst === NGHTTP2_NO_ERROR) halfClose(dst);
}

function onError(this: Side, err: NodeJS.ErrnoException): void {
  const self = this[kEnd]!;
  if (self.resetByUs) return;
  self.failed = true;
  self.detail ??= err.code ?? err.message;
}

function onAborted(this: Side): void {
  const self = this[kEnd]!;
  if (!self.resetByUs) self.failed = true;
}

function onClose(this: Side): void {
  const self = this[kEnd]!;
  const other = self.other;
  const d = self.d;
  if (self.closed) return;
  self.closed = true;
  if (self.resetByUs) {
    // Our own reset, caused by the other side or by abort(): nothing to propagate.
  } else {
    const rst = self.isStream ? (d as http2.Http2Stream).rstCode : undefined;
    if (rst !== undefined && rst !== NGHTTP2_NO_ERROR) {
      self.failed = true;
      self.detail ??= `RST_STREAM ${rst}`;
    } else if (!d.readableEnded && !self.failed) {
      // Closed before the peer's FIN / END_STREAM without an error: e.g. its
      // session or socket was destroyed underneath it. Not a clean end.
      self.failed = true;
      self.detail ??= 'closed before end of stream';
    }
  }
  if (self.failed && !self.pipe.aborted) other.reset();
  else if (!other.closed && !other.resetByUs && !other.d.writableEnded && !other.d.destroyed) {
    // This side is gone cleanly; make sure the other side's write direction ends too.
    other.d.end();
  }
  self.pipe.maybeFinish();
}

/**
 * A socket's 'end' is not always a FIN: when a RST arrives while bytes are still
 * unread, libuv reads those bytes, sees POLLHUP and reports end-of-stream without
 * reading the error (uv__stream_io's POLLHUP short-circuit). A client that writes and
 * resets at once — or any reset while the pipe lags behind — would then reach the
 * other side as a clean half-close. A zero-length write tells them apart: it succeeds
 * on a half-closed socket and fails (ECONNRESET / EPIPE) on a reset one, and that
 * failure arrives as the socket's 'error', which the pipe already turns into a reset.
 */
function endUnlessReset(src: net.Socket, dst: PipeSide): void {
  if (src.destroyed || src.writableEnded) return halfClose(dst);
  src.write(Buffer.alloc(0), (err) => { if (!err) halfClose(dst); });
}

function halfClose(d: PipeSide): void {
  if (!d.destroyed && !d.writableEnded) d.end();
}
