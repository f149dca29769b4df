/**
 * HTTP/2 PING keepalive (Istio: every 10 s, dead after 20 s without an answer). Both
 * ends of a tunnel run it: a peer that vanished without a FIN (node crash, network
 * partition) would otherwise hold the session, its streams and their pods'
 * connections forever.
 */
import type * as http2 from 'node:http2';

export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Called once when a PING went unanswered for timeoutMs; the caller destroys the session. */
  onDead: (unansweredForMs: number) => void;
}

export class Keepalive {
  private timer: NodeJS.Timeout | undefined;
  private sentAt = 0;

  constructor(private readonly session: http2.Http2Session, private readonly opts: KeepaliveOptions) {
    this.timer = setInterval(() => this.tick(), opts.intervalMs);
    // Never keeps the process alive on its own.
    this.timer.unref();
    session.once('close', () => this.stop());
  }

  private tick(): void {
    const s = this.session;
    if (s.destroyed || s.closed) return this.stop();
    const now = Date.now();
    if (this.sentAt !== 0) {
      if (now - this.sentAt >= this.opts.timeoutMs) {
        this.stop();
        this.opts.onDead(now - this.sentAt);
      }
      return;
    }
    this.sentAt = now;
    // ping() returns false (and never calls back) when too many are outstanding;
    // sentAt then stays set and the deadline applies all the same.
    s.ping((err) => {
      if (!err) this.sentAt = 0;
    });
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
