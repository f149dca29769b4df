/**
 * Connection-level backpressure for an HBONE session whose streams may stall.
 *
 * Node's http2 hands the connection-level window back to the peer as soon as bytes
 * arrive (nghttp2_session_consume_connection), so only the stream windows bound what a
 * peer may still send into streams whose destinations stopped reading: each stalled
 * stream may park its window plus the pipe's high-water marks. Istio's ztunnel (Rust
 * h2) releases connection capacity only when the application reads, so its 16 MiB
 * connection window is the bound; here SETTINGS_INITIAL_WINDOW_SIZE plays that part.
 * The stream window is shared out: with `n` open streams it is the largest of
 * streamWindow, streamWindow/2, /4, ... (never below `minWindow`) such that
 * n × (window + overhead) ≤ budget. A change applies to every open stream's window by
 * the difference (RFC 9113 §6.9.2, even below zero), so however many streams stall at
 * once, what they may park fits the connection's budget, and no well-behaved stream has
 * to be reset for it. One stream alone keeps the whole window (throughput).
 *
 * Lowering is sent at once; raising waits `raiseDelayMs` so streams that come and go
 * cost at most a SETTINGS frame or two a second (the peer counts SETTINGS floods).
 * The peer may use a lowered window's old value until it acknowledges the SETTINGS,
 * so `inForce`, what a stall reservation must cover, drops only on the ACK; a raise is
 * in force at once, so the streams stalled at that moment grow their reservations
 * first, and the raise waits while the budget cannot cover that.
 */
import { realClock, type Clock } from '../lib/clock';

export interface WindowShareOptions {
  /** Bytes the session's stalled streams may park (its buffer budget). */
  budget: number;
  /** The stream window when there is room for it (tuning.streamWindow). */
  maxWindow: number;
  /** Never advertise less (a window this small already costs throughput, not memory). */
  minWindow: number;
  /** What a stream may park besides its window: the pipe's high-water marks, both directions. */
  overhead: number;
}

/**
 * SETTINGS the session sends and Node lets go unacknowledged before it destroys the
 * session (ERR_HTTP2_MAX_PENDING_SETTINGS_ACK); limits.ts sets the server's option to it.
 */
export const MAX_OUTSTANDING_SETTINGS = 10;
/** What the window share keeps in flight at most: well below that, with the initial SETTINGS beside it. */
const SHARE_MAX_UNACKED = 4;

/** Default floor of a shared window: RFC 9113's initial 64 KiB. */
export const MIN_SHARED_WINDOW = 65_535;

/**
 * The window each of `streams` open streams gets: maxWindow halved until
 * streams × (window + overhead) ≤ budget, not below minWindow (beyond that the
 * budget's stall reservations decide, see limits.ts).
 */
export function sharedWindow(streams: number, o: WindowShareOptions): number {
  const floor = Math.min(o.minWindow, o.maxWindow);
  let w = o.maxWindow;
  while (w > floor && Math.max(1, streams) * (w + o.overhead) > o.budget) w = Math.floor(w / 2);
  return Math.max(w, floor);
}

/** Something holding budget sized by the window in force: refit to it when it changes; false when it could not grow. */
export interface Refittable {
  refit(): boolean;
}

/**
 * Sends SETTINGS_INITIAL_WINDOW_SIZE = `window`; `onAck` runs when the peer
 * acknowledges it. False when nothing was sent (the session is closing).
 */
export type SendWindow = (window: number, onAck: () => void) => boolean;

export class WindowShare {
  private streams = 0;
  /** The value sent last (what the peer will use once it has read everything). */
  private advertised: number;
  /** The value the peer acknowledged last. */
  private acked: number;
  /** Values sent and not yet acknowledged, oldest first (SETTINGS are acknowledged in order). */
  private readonly unacked: number[] = [];
  private raiseTimer: unknown;
  private stopped = false;
  private readonly holders = new Set<Refittable>();

  constructor(
    private readonly o: WindowShareOptions,
    private readonly send: SendWindow,
    private readonly clock: Clock = realClock,
    private readonly raiseDelayMs = 1000,
    /** SETTINGS in flight at once: below MAX_OUTSTANDING_SETTINGS with room for the initial one. */
    private readonly maxUnacked = SHARE_MAX_UNACKED,
  ) {
    this.advertised = o.maxWindow;
    this.acked = o.maxWindow;
  }

  /** The largest stream window the peer may be using now: what a stalled stream may still receive. */
  get inForce(): number {
    return Math.max(this.acked, ...this.unacked);
  }

  /** The window last advertised. */
  get window(): number {
    return this.advertised;
  }

  get openStreams(): number {
    return this.streams;
  }

  opened(): void {
    this.streams++;
    this.update();
  }

  closed(): void {
    this.streams = Math.max(0, this.streams - 1);
    this.update();
  }

  /** `h` is shrunk (refit) whenever the window in force drops; until forget(h). */
  hold(h: Refittable): void {
    this.holders.add(h);
  }

  forget(h: Refittable): void {
    this.holders.delete(h);
  }

  /** The session ended: no more SETTINGS, no timer. */
  stop(): void {
    this.stopped = true;
    this.cancelRaise();
    this.holders.clear();
  }

  private update(): void {
    if (this.stopped) return;
    const target = sharedWindow(this.streams, this.o);
    if (target < this.advertised) {
      this.cancelRaise();
      this.advertise(target);
    } else if (target > this.advertised) {
      this.raiseTimer ??= this.clock.setTimeout(() => {
        this.raiseTimer = undefined;
        if (this.stopped) return;
        const now = sharedWindow(this.streams, this.o);
        if (now > this.advertised) this.raise(now);
      }, this.raiseDelayMs);
    } else {
      this.cancelRaise();
    }
  }

  private cancelRaise(): void {
    if (this.raiseTimer === undefined) return;
    this.clock.clearTimeout(this.raiseTimer);
    this.raiseTimer = undefined;
  }

  /** A raise, once the stalled streams' reservations have grown to it; else tried again later. */
  private raise(window: number): void {
    if (this.unacked.length >= this.maxUnacked) return;
    this.unacked.push(window);
    const grown: Refittable[] = [];
    let fits = true;
    for (const h of this.holders) {
      if (!h.refit()) {
        fits = false;
        break;
      }
      grown.push(h);
    }
    this.unacked.pop();
    if (!fits) {
      for (const h of grown) h.refit();
      this.update();
      return;
    }
    this.advertise(window);
    // Not sent after all (the session is closing): give back what was grown.
    if (this.advertised !== window) for (const h of grown) h.refit();
  }

  private advertise(window: number): void {
    // Too many SETTINGS unacknowledged: the peer is slow or not answering. Sending more
    // changes nothing it must honour (inForce stays where it is); the next ACK retries.
    if (this.unacked.length >= this.maxUnacked) return;
    if (!this.send(window, () => this.onAck())) return;
    this.advertised = window;
    this.unacked.push(window);
  }

  private onAck(): void {
    if (this.stopped) return;
    const before = this.inForce;
    this.acked = this.unacked.shift() ?? this.acked;
    if (this.inForce < before) for (const h of this.holders) h.refit();
    // A change skipped while too many were in flight is sent now.
    this.update();
  }
}

/**
 * The largest write a pipe makes before it looks at the high-water mark: one read of
 * the side it copies from (a socket read is at most 64 KiB; a stream's chunk is at most
 * what one socket read of the session carried). The write that crosses the mark is
 * queued whole, so a stalled direction's queue is up to the mark plus this.
 */
export const CROSSING_WRITE_MAX = 64 * 1024;

/** What a paused direction's writer may hold: the mark, or more when the write that crossed it left more queued. */
export function queueBound(hwm: number, queued: number): number {
  return Math.max(hwm, queued);
}

/**
 * The two ends of a piped stream, read for what they hold: the stream's unread DATA
 * (readableLength) and its own write queue, the upstream socket's write queue. Read when
 * a direction stalls or the shared window changes, never per chunk.
 */
export interface PipedEnds {
  stream: { readonly readableLength: number; readonly writableLength: number };
  upstream: { readonly writableLength: number };
}

/**
 * What a stalled stream's received direction may park: the window in force, or more
 * when it already holds more, plus the upstream socket's queue. A lowered window does
 * not shrink what arrived under the old one (Node queues a paused stream's DATA; only
 * its WINDOW_UPDATE waits), and at the ACK every byte sent under the old window has
 * arrived (TCP keeps order), so the larger of the two is what the peer can have parked,
 * and a refit never counts less than that. The queue is the high-water mark, or more
 * (up to CROSSING_WRITE_MAX more): a paused direction's queue only shrinks, so what it
 * holds when the stall is reserved is its bound.
 */
export function stalledReceiveSize(share: Pick<WindowShare, 'inForce'>, ends: PipedEnds, hwm: number): () => number {
  return () => Math.max(share.inForce, ends.stream.readableLength) + queueBound(hwm, ends.upstream.writableLength);
}
