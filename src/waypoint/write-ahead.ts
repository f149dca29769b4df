/**
 * How far the waypoint's HTTP/2 sessions' writes may run ahead of the streams beneath
 * them (StreamSocket's `writeAhead`), so that a session keeps reading while it sends.
 *
 * Node's http2 stops reading while a write to its socket is pending. The waypoint's
 * sessions run over StreamSocket, whose writes are pending until the stream beneath
 * (an HBONE CONNECT stream, an upstream connection) has sent them; with bulk both ways
 * (a gRPC bidirectional stream, an upload answered by a download) and a peer that also
 * stops reading while it writes (any Node peer), each waits for the other to read.
 * Measured: 8 streams × 8 MB echoed through the waypoint over a CONNECT stream got 0
 * bytes back (test/waypoint-h2-both-ways.test.ts, each session's side). So a write
 * completes at once while what runs ahead stays within
 *   - per session, the peer's session window and a tenth for framing (HEADERS, frame
 *     headers, PING and SETTINGS ACKs are not counted by the window): what a peer that
 *     reads can make us queue, its window assumed like ours;
 *   - in all, four such sessions: what peers that never read can make the waypoint hold.
 * Past either, writes wait for the stream beneath, as before.
 */
import { peerInFlight } from '../hbone/settings';
import { SESSION_WINDOW } from './h2-windows';

const AHEAD_PER_SESSION = peerInFlight(SESSION_WINDOW);
const AHEAD_TOTAL = 4 * AHEAD_PER_SESSION;
/**
 * How long an ended socket waits for what ran ahead before it is destroyed anyway:
 * Node ends a session's socket the same way whether it closes or destroys the session,
 * so StreamSocket cannot tell a close worth waiting for from a destroy. As long as the
 * HBONE keepalive takes to call a peer that reads nothing dead.
 */
const DRAIN_ON_END_MS = 30_000;

/** Bytes written ahead of the streams beneath, per session and in all. */
export class WriteAhead {
  private used = 0;

  constructor(readonly perSession = AHEAD_PER_SESSION, readonly total = AHEAD_TOTAL, readonly drainOnEndMs = DRAIN_ON_END_MS) {}

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
