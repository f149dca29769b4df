/**
 * The ports of Istio's ztunnel, which Weft keeps. Shared: the ztunnel listens on
 * them, and every part that picks a destination port (the ztunnel, the waypoint,
 * `weft explain`) refuses one of them as a target.
 */
import { HBONE_PORT } from '../hbone/contracts';

/** Istio's ztunnel ports (and HBONE_PORT, in src/hbone/contracts.ts); a workload's own port with one of these numbers is never a target. */
export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
export const ADMIN_PORT = 15000;
export const METRICS_PORT = 15020;
export const READINESS_PORT = 15021;
/**
 * Every port a ztunnel listens on. A connection is never proxied to one of them,
 * whatever the address: the destination would be a ztunnel (this one, looping, or a
 * peer's, reached around its mTLS), never an application (see loop-guard.ts).
 */
export const PROXY_PORTS: ReadonlySet<number> = new Set([
  OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, HBONE_PORT, ADMIN_PORT, METRICS_PORT, READINESS_PORT,
]);
