/**
 * What HBONE (both ends: the client pool and the server) needs from the rest of Weft,
 * as narrow interfaces so whoever embeds it (the ztunnel, the waypoint) passes its
 * own parts in: the real ones in its app.ts, small in-process ones in tests. Nothing
 * here depends on the ztunnel.
 */
import type * as net from 'node:net';

/** HBONE's port (Istio's): mTLS + HTTP/2 CONNECT tunnels between mesh proxies. */
export const HBONE_PORT = 15008;

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

/** Where a TCP connection is opened. */
export interface DialTarget {
  host: string;
  port: number;
}

/**
 * Opens the TCP connection for a dial: `net.connect` by default. Tests wrap it to
 * record what a real DNAT would leave in conntrack; production could bind or mark here.
 */
export type SocketFactory = (target: DialTarget, purpose: { kind: 'hbone' | 'upstream'; originalDst: OriginalDst }) => net.Socket;
