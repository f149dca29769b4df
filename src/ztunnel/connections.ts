/**
 * The registry of live proxied connections: what `/connections` on the admin API and
 * `weft ztunnel-config connections` list, what least-connections balancing counts,
 * and what the policy watcher walks when authorization changes.
 */
import type { WorkloadView } from '../registry/enrolment';
import { formatHostPort } from './address';
import type { ByteCounters } from './pipe';

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

  constructor(init: ConnectionInit) {
    this.direction = init.direction;
    this.protocol = init.protocol;
    this.src = init.src;
    this.dst = init.dst;
  }
}

/** JSON shape of one connection for the admin API. */
export interface ConnectionSnapshot {
  id: number;
  direction: Direction;
  protocol: ConnectionProtocol;
  src: { addr: string; workload?: string; identity?: string };
  dst: { addr: string; workload?: string; identity?: string; service?: string; hboneAddr?: string };
  tunnel?: number;
  bytesReceived: number;
  bytesSent: number;
  startedAt: string;
  ageMs: number;
}

export class ConnectionRegistry {
  private readonly live = new Map<number, TrackedConnection>();
  /** Outbound connections per destination workload uid (least-connections balancing). */
  private readonly perDestination = new Map<string, number>();
  /** Which uid each counted connection is counted under. */
  private readonly countedAs = new Map<number, string>();

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

  list(): ConnectionSnapshot[] {
    const now = Date.now();
    const out: ConnectionSnapshot[] = [];
    for (const c of this.live.values()) out.push(snapshot(c, now));
    return out;
  }
}

function wl(w: WorkloadView | undefined): string | undefined {
  return w ? `${w.record.namespace}/${w.record.name}` : undefined;
}

function snapshot(c: TrackedConnection, now: number): ConnectionSnapshot {
  const s: ConnectionSnapshot = {
    id: c.id,
    direction: c.direction,
    protocol: c.protocol,
    src: { addr: formatHostPort(c.src.ip, c.src.port) },
    dst: { addr: formatHostPort(c.dst.ip, c.dst.port) },
    bytesReceived: c.counters.received,
    bytesSent: c.counters.sent,
    startedAt: new Date(c.startedAt).toISOString(),
    ageMs: now - c.startedAt,
  };
  const sw = wl(c.src.workload);
  if (sw) s.src.workload = sw;
  if (c.src.identity) s.src.identity = c.src.identity;
  const dw = wl(c.dst.workload);
  if (dw) s.dst.workload = dw;
  if (c.dst.identity) s.dst.identity = c.dst.identity;
  if (c.dst.service) s.dst.service = c.dst.service;
  if (c.dst.hboneAddr) s.dst.hboneAddr = c.dst.hboneAddr;
  if (c.tunnelId !== undefined) s.tunnel = c.tunnelId;
  return s;
}
