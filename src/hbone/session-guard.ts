/**
 * The per-session half of the HBONE server's limits (limits.ts): one guard per
 * accepted HTTP/2 session, holding its byte budget (inside the node's), its PING /
 * SETTINGS flood counters, its idle timer and its shared stream window (window-share.ts). The node-wide half (node budget,
 * pending-dial slots, handshakes, sessions per peer) is HboneNodeLimits, shared by
 * the node's HBONE servers; the guard is the session's key in its DialSlots.
 */
import * as http2 from 'node:http2';
import { perInterval, TokenBucket } from '../lib/token-bucket';
import { ByteBudget, StallReservation, type HboneLimits, type RefusalReason } from './limits';
import { IdleTimer } from './idle';
import type { HboneTuning } from './settings';
import { CROSSING_WRITE_MAX, MIN_SHARED_WINDOW, queueBound, stalledReceiveSize, WindowShare, type PipedEnds } from './window-share';

const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

export class SessionGuard {
  /** Parked bytes of this session's stalled streams, inside the node's budget. */
  readonly budget: ByteBudget;
  /** The stream window shared out so that every open stream may stall within the budget. */
  readonly window: WindowShare;
  private openStreams = 0;
  private readonly idle: IdleTimer;
  private readonly pings: TokenBucket;
  private readonly settings: TokenBucket;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    limits: HboneLimits,
    private readonly tuning: Pick<HboneTuning, 'streamWindow' | 'pipeHighWaterMark'>,
    nodeBudget: ByteBudget,
    /** A limit closed the session (counted and logged by the owner). */
    private readonly onClosed: (reason: RefusalReason, detail: string) => void,
  ) {
    this.budget = new ByteBudget(limits.connectionBufferBytes, nodeBudget);
    this.window = new WindowShare({
      // Never above the node's (HboneNodeLimits caps it): the window must fit what can really be parked.
      budget: limits.connectionBufferBytes,
      maxWindow: tuning.streamWindow,
      minWindow: MIN_SHARED_WINDOW,
      // A stalled stream parks its upstream socket's queue and, the other way, its own
      // write queue: up to the high-water mark each, plus the write that crossed it.
      overhead: 2 * (tuning.pipeHighWaterMark + CROSSING_WRITE_MAX),
    }, (initialWindowSize, onAck) => {
      if (session.destroyed || session.closed) return false;
      try {
        session.settings({ initialWindowSize }, (err) => { if (!err) onAck(); });
        return true;
      } catch {
        // Node refuses SETTINGS on a session it is tearing down: called from a stream's
        // 'close', a throw would be uncaught. (Too many unacknowledged would destroy the
        // session instead; window-share.ts stays below maxOutstandingSettings, limits.ts.)
        return false;
      }
    });
    this.pings = new TokenBucket(perInterval(limits.pingsPer10s, 10_000));
    this.settings = new TokenBucket(perInterval(limits.settingsPer10s, 10_000));
    // nghttp2 detects these floods only once its queue of unsent ACKs overflows, and
    // then drops the connection without a GOAWAY; counting them here ends the session
    // earlier and tells the peer why (GOAWAY ENHANCE_YOUR_CALM).
    session.on('ping', () => {
      if (!this.pings.tryTake()) this.calm('ping_flood', `more than ${limits.pingsPer10s} PING frames in 10 s`);
    });
    session.on('remoteSettings', () => {
      if (!this.settings.tryTake()) this.calm('settings_flood', `more than ${limits.settingsPer10s} SETTINGS frames in 10 s`);
    });
    this.idle = new IdleTimer(limits.sessionIdleTimeoutMs, () => this.openStreams > 0 || session.destroyed, () => {
      this.onClosed('idle_session', `no stream for ${limits.sessionIdleTimeoutMs} ms`);
      // A graceful GOAWAY(NO_ERROR): the peer's pool opens a new session when needed.
      session.close();
    });
    session.once('close', () => this.stop());
    this.idle.arm();
  }

  /** Counts a stream for the idle timer until it closes. */
  streamOpened(stream: http2.ServerHttp2Stream): void {
    this.openStreams++;
    this.idle.disarm();
    this.window.opened();
    // 'close' comes once per stream; one listener for all of them (once() and a closure
    // per stream would stay with every idle stream).
    stream.on('close', this.onStreamClosed);
  }

  private readonly onStreamClosed = (): void => {
    this.openStreams--;
    this.window.closed();
    this.idle.arm();
  };

  /**
   * The budget hook of a stream piped to an upstream socket: a stalled received
   * direction reserves the window the peer may still fill plus the upstream's queue
   * (the high-water mark, or the write that crossed it), shrunk when the shared window
   * drops but never below what the stream already holds (its unread DATA); the sent
   * direction the stream's own queue, likewise (window-share.ts stalledReceiveSize).
   */
  stallReservation(ends: PipedEnds): StallReservation {
    const hwm = this.tuning.pipeHighWaterMark;
    const r: StallReservation = new StallReservation(this.budget, {
      received: stalledReceiveSize(this.window, ends, hwm),
      sent: () => queueBound(hwm, ends.stream.writableLength),
    }, () => this.window.forget(r));
    this.window.hold(r);
    return r;
  }

  /** Ends the session with GOAWAY(ENHANCE_YOUR_CALM); its streams are reset. */
  calm(reason: RefusalReason, detail: string): void {
    const s = this.session;
    if (s.destroyed) return;
    this.onClosed(reason, detail);
    // destroy(err, code) sends GOAWAY with that code, stops reading, then closes the
    // socket. (A bare destroy(code) would be read as destroy(NO_ERROR) by Node.)
    s.destroy(new Error(`HBONE session closed: ${detail}`), NGHTTP2_ENHANCE_YOUR_CALM);
  }

  stop(): void {
    this.idle.stop();
    this.window.stop();
  }
}
