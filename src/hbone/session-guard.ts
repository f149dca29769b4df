/**
 * The per-session half of the HBONE server's limits (limits.ts): one guard per
 * accepted HTTP/2 session, holding its byte budget (inside the node's), its PING /
 * SETTINGS flood counters and its idle timer. The node-wide half (node budget,
 * pending-dial slots, handshakes, sessions per peer) is HboneNodeLimits, shared by
 * the node's HBONE servers; the guard is the session's key in its DialSlots.
 */
import * as http2 from 'node:http2';
import { perInterval, TokenBucket } from '../lib/token-bucket';
import { ByteBudget, type HboneLimits, type RefusalReason } from './limits';
import { IdleTimer } from './idle';

const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

export class SessionGuard {
  /** Parked bytes of this session's stalled streams, inside the node's budget. */
  readonly budget: ByteBudget;
  private openStreams = 0;
  private readonly idle: IdleTimer;
  private readonly pings: TokenBucket;
  private readonly settings: TokenBucket;

  constructor(
    private readonly session: http2.ServerHttp2Session,
    limits: HboneLimits,
    nodeBudget: ByteBudget,
    /** A limit closed the session (counted and logged by the owner). */
    private readonly onClosed: (reason: RefusalReason, detail: string) => void,
  ) {
    this.budget = new ByteBudget(limits.connectionBufferBytes, nodeBudget);
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
    stream.once('close', () => {
      this.openStreams--;
      this.idle.arm();
    });
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
  }
}
