/**
 * What the ztunnel's data path needs from the rest of Weft, as narrow interfaces so
 * each listener is built from injected parts (the real ones in app.ts, small
 * in-process ones in tests).
 */
import type * as net from 'node:net';
import type { WorkloadView } from '../registry/enrolment';
import { HBONE_PORT, type DialTarget, type OriginalDst } from '../hbone/contracts';

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

/** Reads conntrack in production (src/ztunnel/original-dst.ts); a table in tests. */
export interface OriginalDstSource {
  lookup(socket: net.Socket): Promise<OriginalDst>;
}

/**
 * Where to dial a destination workload's HBONE: `<pod IP>:15008`, as Istio does — the
 * destination node's DNAT delivers it to that node's ztunnel, which then knows which
 * workload certificate to present. Overridable so loopback tests need no iptables.
 */
export type HboneDialTarget = (destination: WorkloadView) => DialTarget;

export const defaultHboneDialTarget: HboneDialTarget = (w) => ({ host: w.record.addresses[0]!, port: HBONE_PORT });
