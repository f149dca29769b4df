/**
 * The waypoint's HTTP/2 flow control, both ways (the h2c front and the upstream
 * sessions): windows larger than Node's 64 KiB default, or throughput collapses
 * (reference §9), and how far a session's writes may run ahead of the stream beneath
 * so that it keeps reading while it sends (write-ahead.ts).
 *
 * Node's http2 stops reading while a write to its socket is pending. The waypoint's
 * sessions run over StreamSocket, whose writes are pending until the stream beneath
 * (an HBONE CONNECT stream, an upstream connection) has sent them; with bulk both ways
 * (a gRPC bidirectional stream, an upload answered by a download) and a peer that
 * also stops reading while it writes (any Node peer), both would wait for the other
 * for ever. Measured: 8 streams × 8 MB echoed through the waypoint over a CONNECT
 * stream got 0 bytes back (test/waypoint-h2-both-ways.test.ts). So a write completes at
 * once while what runs ahead stays within the peer's session window (what a peer
 * that reads can make us queue) and within the waypoint's budget for all its sessions
 * (what peers that never read can make it hold); beyond either, writes wait as before.
 */

/** Our stream window, advertised in SETTINGS. */
export const STREAM_WINDOW = 1024 * 1024;
/** Our session (connection) window, set with setLocalWindowSize. */
export const SESSION_WINDOW = 16 * 1024 * 1024;
/** What one session's writes may run ahead: a peer's session window, assumed like ours. */
export const AHEAD_PER_SESSION = SESSION_WINDOW;
/** What all the waypoint's sessions' writes may run ahead together. */
export const AHEAD_TOTAL = 64 * 1024 * 1024;
