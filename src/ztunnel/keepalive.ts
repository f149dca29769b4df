/**
 * HTTP/2 PING keepalive (Istio: every 10 s, dead after 20 s without an answer). Both
 * ends of a tunnel run it: a peer that vanished without a FIN (node crash, network
 * partition) would otherwise hold the session, its streams and their pods'
 * connections forever.
 */
import type * as http2 from 'node:http2';
import type * as net from 'node:net';

/**
 * TCP keepalive's first probe after this much silence, on every proxied socket
 * (accepted, dialled to a pod, HBONE both ways). The kernel then probes every
 * net.ipv4.tcp_keepalive_intvl (75 s) up to tcp_keepalive_probes (9) times, so a
 * peer gone without a FIN is dropped after ~12 min instead of the kernel's ~2 h 11
 * min; a minute of silence costs one empty segment. HBONE tunnels also have PINGs
 * (dead after 20 s); idle pipes end at the idle timeout (pipe.ts).
 */
export const TCP_KEEPALIVE_DELAY_MS = 60_000;

/** Turns TCP keepalive on (safe on a socket not yet connected: applied at connect). */
export function tcpKeepalive(sock: net.Socket): void {
  sock.setKeepAlive(true, TCP_KEEPALIVE_DELAY_MS);
}

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
