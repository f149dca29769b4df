/**
 * The registry of live proxied connections: what `/connections` on the admin API and
 * `weft ztunnel-config connections` list, what least-connections balancing counts,
 * and what the policy watcher walks when authorization changes.
 */
import type { SpanRecord } from '../telemetry/types';
import type { WorkloadView } from '../registry/enrolment';
import type { ConnectionInfo } from './admin-types';
import { formatHostPort } from '../lib/address';
import type { ByteCounters } from '../hbone/pipe';

/** Istio's directions: outbound from a local client, inbound to a local destination. */
export type Direction = 'outbound' | 'inbound';

/** How the connection reaches (outbound) or reached (inbound) this proxy. */
export type ConnectionProtocol = 'HBONE' | 'TCP';

export interface ConnectionSource {
  ip: string;
  port: number;
  workload?: WorkloadView;
  /** Peer identity: the client certificate's (inbound HBONE) or the local workload's (outbound). */
  identity?: string;
}

export interface ConnectionDestination {
  ip: string;
  port: number;
  workload?: WorkloadView;
  identity?: string;
  /** `<namespace>/<name>` of the service when the client dialled a VIP. */
  service?: string;
  /** Service hostname, for metrics (`destination_service`). */
  serviceHost?: string;
  /** The tunnel's peer (`<pod IP>:15008`) for HBONE outbound. */
  hboneAddr?: string;
  /** `<namespace>/<name>` of the waypoint the connection goes (or was refused to go) through. */
  waypoint?: string;
}

export interface ConnectionInit {
  direction: Direction;
  protocol: ConnectionProtocol;
  src: ConnectionSource;
  dst: ConnectionDestination;
}

let nextId = 1;

export class TrackedConnection {
  readonly id = nextId++;
  readonly startedAt = Date.now();
  readonly direction: Direction;
  protocol: ConnectionProtocol;
  src: ConnectionSource;
  dst: ConnectionDestination;
  /** The pooled tunnel this connection rides, when it rides one. */
  tunnelId: number | undefined;
  /** Shared with the pipe, which adds to it per chunk. */
  readonly counters: ByteCounters = { received: 0, sent: 0 };
  /** Bytes already added to the metrics counters (they are fed deltas). */
  reported: ByteCounters = { received: 0, sent: 0 };
  /** Set when the connection was established upstream (counted as opened). */
  established = false;
  /** Closes the connection from outside (policy revoked, shutdown). */
  terminate: ((why: string) => void) | undefined;
  /**
   * The connection's trace (lifecycle.ts begin()): the CONNECT's when it carried a valid
   * traceparent, else a fresh one, sampled or not, so every access line and tap event
   * names it. Empty only between construction and begin().
   */
  traceId = '';
  /** The connection's span, when its trace is sampled (lifecycle.ts starts and ends it). */
  span: SpanRecord | undefined;

  constructor(init: ConnectionInit) {
    this.direction = init.direction;
    this.protocol = init.protocol;
    this.src = init.src;
    this.dst = init.dst;
  }
}

export class ConnectionRegistry {
  private readonly live = new Map<number, TrackedConnection>();
  /** Outbound connections per destination workload uid (least-connections balancing). */
  private readonly perDestination = new Map<string, number>();
  /** Which uid each counted connection is counted under. */
  private readonly countedAs = new Map<number, string>();
  private readonly emptyWaiters: Array<() => void> = [];

  add(init: ConnectionInit): TrackedConnection {
    const c = new TrackedConnection(init);
    this.live.set(c.id, c);
    this.count(c);
    return c;
  }

  /** Records the destination once it is chosen (outbound), keeping the per-destination count right. */
  setDestination(c: TrackedConnection, dst: ConnectionDestination): void {
    this.uncount(c);
    c.dst = dst;
    if (this.live.has(c.id)) this.count(c);
  }

  remove(c: TrackedConnection): void {
    if (!this.live.delete(c.id)) return;
    this.uncount(c);
    c.terminate = undefined;
    if (this.live.size === 0) for (const w of this.emptyWaiters.splice(0)) w();
  }

  /** Resolves once no connection is live (at once if none is): the end of a drain. */
  whenEmpty(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  private count(c: TrackedConnection): void {
    const uid = c.direction === 'outbound' ? c.dst.workload?.record.uid : undefined;
    if (uid === undefined) return;
    this.countedAs.set(c.id, uid);
    this.perDestination.set(uid, (this.perDestination.get(uid) ?? 0) + 1);
  }

  private uncount(c: TrackedConnection): void {
    const uid = this.countedAs.get(c.id);
    if (uid === undefined) return;
    this.countedAs.delete(c.id);
    const n = (this.perDestination.get(uid) ?? 0) - 1;
    if (n <= 0) this.perDestination.delete(uid);
    else this.perDestination.set(uid, n);
  }

  /** Live outbound connections to a workload; the ConnectionCounter for LEAST_CONN. */
  activeTo(workloadUid: string): number {
    return this.perDestination.get(workloadUid) ?? 0;
  }

  get size(): number {
    return this.live.size;
  }

  /** Live connections, oldest first. */
  all(): IterableIterator<TrackedConnection> {
    return this.live.values();
  }

  /** The admin API's `/connections` rows (admin-types.ts contract). */
  list(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const c of this.live.values()) out.push(connectionInfo(c));
    return out;
  }
}

/** `ns/name` of a workload. */
export function workloadName(w: WorkloadView | undefined): string | undefined {
  return w ? `${w.record.namespace}/${w.record.name}` : undefined;
}

/**
 * Bytes: `bytesReceived` came from the client (request direction), `bytesSent` went
 * back to it (response direction), as in Istio's tcp byte metrics.
 */
export function connectionInfo(c: TrackedConnection): ConnectionInfo {
  const info: ConnectionInfo = {
    id: String(c.id),
    direction: c.direction === 'outbound' ? 'outbound' : c.protocol === 'HBONE' ? 'inbound' : 'inbound-plaintext',
    protocol: c.protocol === 'HBONE' ? 'hbone' : c.direction === 'outbound' ? 'passthrough' : 'plaintext',
    sourceAddress: formatHostPort(c.src.ip, c.src.port),
    destinationAddress: formatHostPort(c.dst.ip, c.dst.port),
    bytesSent: c.counters.sent,
    bytesReceived: c.counters.received,
    openedAt: new Date(c.startedAt).toISOString(),
  };
  const sw = workloadName(c.src.workload);
  if (sw) info.sourceWorkload = sw;
  if (c.src.identity) info.sourceIdentity = c.src.identity;
  const dw = workloadName(c.dst.workload);
  if (dw) info.destinationWorkload = dw;
  if (c.dst.identity) info.destinationIdentity = c.dst.identity;
  if (c.dst.service) info.destinationService = c.dst.service;
  if (c.dst.waypoint) info.destinationWaypoint = c.dst.waypoint;
  if (c.tunnelId !== undefined) info.tunnelId = String(c.tunnelId);
  return info;
}
