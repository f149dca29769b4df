/**
 * How far the waypoint's HTTP/2 sessions' writes may run ahead of the streams beneath
 * them (StreamSocket's writeAhead): per session the peer's session window, and a total
 * for all sessions (h2-windows.ts says why, and why these bounds).
 */
import { AHEAD_PER_SESSION, AHEAD_TOTAL } from './h2-windows';

/** Bytes written ahead of the streams beneath, per session and in all. */
export class WriteAhead {
  private used = 0;

  constructor(readonly perSession = AHEAD_PER_SESSION, readonly total = AHEAD_TOTAL) {}

  /** Bytes ahead now, all sessions. */
  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` for a session that has `ahead` bytes ahead already; false when either bound would be passed. */
  take(ahead: number, bytes: number): boolean {
    if (ahead + bytes > this.perSession || this.used + bytes > this.total) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}
