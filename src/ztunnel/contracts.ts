/**
 * What the ztunnel's data path needs from the rest of Weft, as narrow interfaces so
 * each listener is built from injected parts (the real ones in app.ts, small
 * in-process ones in tests).
 */
import type * as net from 'node:net';
import type { WorkloadView } from '../registry/enrolment';
import { HBONE_PORT, type DialTarget, type OriginalDst } from '../hbone/contracts';

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
