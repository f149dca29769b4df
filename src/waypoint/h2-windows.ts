/**
 * The waypoint's HTTP/2 windows, both ways (the h2c front and the upstream sessions):
 * larger than Node's 64 KiB default, or throughput collapses (reference §9).
 */

/** Our stream window, advertised in SETTINGS. */
export const STREAM_WINDOW = 1024 * 1024;
/** Our session (connection) window, set with setLocalWindowSize. */
export const SESSION_WINDOW = 16 * 1024 * 1024;
