/**
 * What the ztunnel's data path needs from the rest of Weft, as narrow interfaces so
 * each listener is built from injected parts (the real ones in app.ts, small
 * in-process ones in tests).
 */
import type * as net from 'node:net';
import type { WorkloadView } from '../registry/enrolment';

/** Istio's ztunnel ports; a workload's own port with one of these numbers is never a target. */
export const OUTBOUND_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
export const HBONE_PORT = 15008;
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

/** A workload's certificate as the certificate manager hands it out (one definition, in the CA module). */
import type { WorkloadCert } from '../ca/cert-state';
export type { WorkloadCert };

/** The certificate manager, seen from the data path (src/ca/cert-manager.ts implements it). */
export interface CertSource {
  /** Resolves to a valid certificate, fetching one if needed; rejects with WEFT_CERT_UNAVAILABLE. */
  get(identity: string): Promise<WorkloadCert>;
  /** The cached certificate, if one is valid now; lets the hot path skip a promise. */
  current(identity: string): WorkloadCert | undefined;
  /** PEM bundle of the mesh roots peers must chain to. */
  readonly rootsPem: string;
  /** Emitted with the identity whose certificate was replaced (rotation). */
  on(event: 'updated', listener: (identity: string) => void): unknown;
  off?(event: 'updated', listener: (identity: string) => void): unknown;
}

/** Destination of a captured connection before the node's DNAT rewrote it. */
export interface OriginalDst {
  ip: string;
  port: number;
}

/** Reads conntrack in production (src/ztunnel/original-dst.ts); a table in tests. */
export interface OriginalDstSource {
  lookup(socket: net.Socket): Promise<OriginalDst>;
}

/** Where a TCP connection is opened. */
export interface DialTarget {
  host: string;
  port: number;
}

/**
 * Where to dial a destination workload's HBONE: `<pod IP>:15008`, as Istio does — the
 * destination node's DNAT delivers it to that node's ztunnel, which then knows which
 * workload certificate to present. Overridable so loopback tests need no iptables.
 */
export type HboneDialTarget = (destination: WorkloadView) => DialTarget;

export const defaultHboneDialTarget: HboneDialTarget = (w) => ({ host: w.record.addresses[0]!, port: HBONE_PORT });

/**
 * Opens the TCP connection for a dial: `net.connect` by default. Tests wrap it to
 * record what a real DNAT would leave in conntrack; production could bind or mark here.
 */
export type SocketFactory = (target: DialTarget, purpose: { kind: 'hbone' | 'upstream'; originalDst: OriginalDst }) => net.Socket;
