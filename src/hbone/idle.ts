/**
 * The idle timer of an HBONE connection, on both ends: the pool's tunnels (tunnel.ts)
 * and the server's sessions (session-guard.ts) are let go once they have carried
 * no stream for a while. One mechanism, so both ends count "idle" the same way: armed
 * when the connection is not busy, disarmed by a stream, re-checked when it fires.
 */
import { realClock, type Clock } from '../lib/clock';

export class IdleTimer {
  private handle: unknown;
  private stopped = false;

  constructor(
    private readonly ms: number,
    /** Streams open (or promised), or a state in which idleness does not count. */
    private readonly busy: () => boolean,
    /** Idle for `ms`: the owner closes the connection. */
    private readonly onIdle: () => void,
    private readonly clock: Clock = realClock,
  ) {}

  /** Starts counting `ms` from now, unless busy or stopped. Call when the last stream ends. */
  arm(): void {
    if (this.stopped || this.busy()) return;
    this.disarm();
    this.handle = this.clock.setTimeout(() => {
      this.handle = undefined;
      if (!this.stopped && !this.busy()) this.onIdle();
    }, this.ms);
  }

  /** A stream opened: not idle until `arm()` is called again. */
  disarm(): void {
    if (this.handle === undefined) return;
    this.clock.clearTimeout(this.handle);
    this.handle = undefined;
  }

  /** The connection closed: never fires again. */
  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  /** Is a countdown running? */
  get armed(): boolean {
    return this.handle !== undefined;
  }
}
