/**
 * HTTP/2 tuning shared by both ends of an HBONE tunnel. Node's defaults (64 KiB
 * windows on both the stream and the connection, 16 KiB frames, 10 MB of session
 * memory) cap a single stream far below the link: the windows must be raised with
 * BOTH `settings.initialWindowSize` (per stream, advertised to the peer) and
 * `session.setLocalWindowSize()` (the connection window, which SETTINGS cannot set).
 */
import type * as http2 from 'node:http2';
import { WeftError } from '../lib/errors';

export interface HboneTuning {
  /** Per-stream receive window (Istio: 4 MiB). */
  streamWindow: number;
  /** Per-connection receive window (Istio: 16 MiB). */
  connectionWindow: number;
  /** Largest DATA frame we accept (Istio: 1 MiB). */
  maxFrameSize: number;
  /** nghttp2's per-session memory budget in MB (its own allocations and queued frames; not bytes parked in JS, see limits.ts); too low rejects streams with ENHANCE_YOUR_CALM. */
  maxSessionMemoryMb: number;
  /** Bytes queued on a pipe's writing side before its reading side is paused. */
  pipeHighWaterMark: number;
  /**
   * The kernel send buffer of each HBONE socket, as given to SO_SNDBUFFORCE (the kernel
   * doubles it for its bookkeeping): doubled, it must hold the peer's connection window,
   * so a write never waits and the session never stops reading (send-buffer.ts). By
   * default sendBufferFor(connectionWindow); 0 leaves the kernel's.
   */
  sendBuffer: number;
}

const MiB = 1024 * 1024;
/** Istio's connection window, and ours. */
const CONNECTION_WINDOW = 16 * MiB;

export const DEFAULT_HBONE_TUNING: Readonly<HboneTuning> = Object.freeze({
  streamWindow: 4 * MiB,
  connectionWindow: CONNECTION_WINDOW,
  maxFrameSize: 1 * MiB,
  maxSessionMemoryMb: 64,
  // Below the plain-TCP pipes' 1 MiB: every stream whose pod stops reading queues up
  // to this much before the memory budget is consulted (limits.ts), so 300 such
  // streams at once cost 300 × this; 256 KiB measured as fast in `npm run bench:hbone`.
  pipeHighWaterMark: 256 * 1024,
  sendBuffer: sendBufferFor(CONNECTION_WINDOW),
});

/**
 * What a peer whose connection window is `window` can make us queue towards it while it
 * does not read: the window, and a tenth for what the window does not count (frame
 * headers, HEADERS, PING and SETTINGS ACKs; under 1 % with bulk DATA) and the kernel's
 * per-packet overhead (about 1 % with full-size segments). Both the HBONE send buffer
 * and the waypoint's write-ahead are sized by it, the peer's window assumed to be ours.
 */
export function peerInFlight(window: number): number {
  return Math.ceil(1.1 * window);
}

/** The SO_SNDBUFFORCE value that holds peerInFlight(window) once the kernel has doubled it. */
export function sendBufferFor(window: number): number {
  return Math.ceil(peerInFlight(window) / 2);
}

const LIMITS: Record<keyof HboneTuning, [number, number]> = {
  // RFC 9113 bounds: windows ≤ 2^31-1, frames 2^14 .. 2^24-1.
  streamWindow: [65_535, 2 ** 31 - 1],
  connectionWindow: [65_535, 2 ** 31 - 1],
  maxFrameSize: [16_384, 2 ** 24 - 1],
  maxSessionMemoryMb: [1, 65_536],
  pipeHighWaterMark: [1024, 1024 * MiB],
  // setsockopt takes an int, which the kernel doubles.
  sendBuffer: [0, 2 ** 30 - 1],
};

/** Merges `partial` over the defaults; a value out of range names its field. */
export function hboneTuning(partial: Partial<HboneTuning> = {}): Readonly<HboneTuning> {
  // The send buffer follows the connection window unless it is given.
  const window = partial.connectionWindow ?? DEFAULT_HBONE_TUNING.connectionWindow;
  const least = typeof window === 'number' ? sendBufferFor(window) : 0;
  if (partial.sendBuffer === undefined && least > LIMITS.sendBuffer[1]) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid HBONE tuning connectionWindow=${window}: the send buffer it needs (${least}) is more than a socket takes; `
      + 'set a smaller connectionWindow, or sendBuffer: 0 to leave the kernel\'s');
  }
  const t = boundedIntegers('HBONE tuning', DEFAULT_HBONE_TUNING, LIMITS, { ...partial, sendBuffer: partial.sendBuffer ?? least });
  if (t.sendBuffer !== 0 && t.sendBuffer < least) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid HBONE tuning sendBuffer=${t.sendBuffer}: with connectionWindow=${t.connectionWindow} it must be at least ${least} `
      + '(doubled by the kernel, it must hold a peer\'s connection window, else bulk both ways can stall a connection), or 0 to leave the kernel\'s');
  }
  return t;
}

/**
 * The one validator of the HBONE option groups (tuning here, limits in
 * limits.ts): every field an integer within its bounds, unknown fields refused,
 * each refusal naming the field. Returns a frozen copy with only known keys.
 */
export function boundedIntegers<T extends object>(what: string, defaults: Readonly<T>, bounds: Record<keyof T, [number, number]>, partial: Partial<T>): Readonly<T> {
  const out = { ...defaults } as T;
  for (const [k, v] of Object.entries(partial) as [keyof T & string, unknown][]) {
    if (v === undefined) continue;
    const limits = bounds[k];
    if (!limits) throw new WeftError('WEFT_CONFIG_INVALID', `unknown ${what} field ${JSON.stringify(k)}; known: ${Object.keys(bounds).join(', ')}`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < limits[0] || v > limits[1]) {
      throw new WeftError('WEFT_CONFIG_INVALID', `invalid ${what} ${k}=${JSON.stringify(v)}: must be an integer between ${limits[0]} and ${limits[1]}`);
    }
    (out as Record<string, unknown>)[k] = v;
  }
  return Object.freeze(out);
}

/** SETTINGS we advertise (both ends). */
export function localSettings(t: HboneTuning, extra: http2.Settings = {}): http2.Settings {
  return {
    initialWindowSize: t.streamWindow,
    maxFrameSize: t.maxFrameSize,
    enablePush: false,
    ...extra,
  };
}

/** Raises the connection-level receive window, once the session has its native handle. */
export function applyConnectionWindow(session: http2.Http2Session, t: HboneTuning): void {
  const apply = () => {
    if (!session.destroyed) session.setLocalWindowSize(t.connectionWindow);
  };
  if ((session as { connecting?: boolean }).connecting) session.once('connect', apply);
  else apply();
}
