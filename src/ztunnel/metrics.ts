/**
 * Istio-shaped TCP metrics (the names and labels dashboards built for Istio expect).
 * Labels never carry error text: failures map to a short fixed set of
 * `response_flags`. Byte counters are fed deltas when a connection ends and, for
 * live connections, at scrape time — never per chunk, which would put a label-set
 * hash in the copy loop.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { isWeftError } from '../lib/errors';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import { sweepGoneWorkloads } from '../mesh/metric-sweep';
import type { ConnectionRegistry, TrackedConnection } from './connections';
import { LABEL_NAMES, WorkloadSeries, workloadKey, type LabelName, type MetricLabels } from '../lib/metric-series';

/** The fixed vocabulary of `response_flags`. */
export type ResponseFlag =
  | '-'
  /** An authorization policy (or STRICT mTLS) refused it, at setup or later. */
  | 'DENY'
  /** The upstream (peer ztunnel or application) could not be reached. */
  | 'CONNECT'
  /** TLS handshake failed, or the peer had the wrong identity, or no certificate was available. */
  | 'TLS_FAILURE'
  | 'NO_HEALTHY_UPSTREAM'
  | 'NO_ROUTE'
  | 'LOOP'
  /**
   * The destination Service is bound to a waypoint that is missing or has no ready
   * pod: refused, never sent around it. (Istio's ztunnel reports its "unknown
   * waypoint" error as CONNECT; a flag of its own tells this outage apart.)
   */
  | 'NO_WAYPOINT'
  /** Not a valid HBONE CONNECT, or for a workload this node does not host. */
  | 'BAD_REQUEST'
  | 'UPSTREAM_RESET'
  | 'DOWNSTREAM_RESET'
  /** Closed by this proxy (shutdown). */
  | 'ABORTED';

export { LABEL_NAMES, type MetricLabels };

const UNKNOWN = 'unknown';

/** Maps any error the data path produces to a response flag. */
export function flagForError(err: unknown): ResponseFlag {
  if (isWeftError(err)) {
    switch (err.code) {
      case 'WEFT_HBONE_DENIED': return 'DENY';
      case 'WEFT_HBONE_IDENTITY_MISMATCH':
      case 'WEFT_CERT_UNAVAILABLE': return 'TLS_FAILURE';
      case 'WEFT_HBONE_BAD_REQUEST': return 'BAD_REQUEST';
      case 'WEFT_HBONE_LOOP': return 'LOOP';
      case 'WEFT_HBONE_CONNECT_FAILED': {
        const reason = String(err.details?.reason ?? '');
        return reason.startsWith('ERR_TLS') || reason.includes('CERT') || reason.startsWith('ERR_SSL') ? 'TLS_FAILURE' : 'CONNECT';
      }
      default: return 'CONNECT';
    }
  }
  return 'CONNECT';
}

export class ZtunnelMetrics {
  readonly opened: Counter<LabelName>;
  readonly closed: Counter<LabelName>;
  readonly failed: Counter<LabelName>;
  readonly sentBytes: Counter<LabelName>;
  readonly receivedBytes: Counter<LabelName>;
  /** Live connections closed because a policy change denied them (not an Istio metric). */
  readonly revoked: Counter<'listener'>;
  /** `forwarded` client addresses not believed (reason: malformed, unknown_workload, other_identity). */
  readonly forwardedIgnored: Counter<'reason'>;
  /** HBONE streams or sessions refused or closed by a protection limit (reason: a fixed set, see src/hbone/limits.ts). */
  readonly hboneRefused: Counter<'reason'>;
  /** Live proxied connections by direction (saturation; Istio has no name for it). */
  readonly live: Gauge<'direction'>;
  private readonly observed = new Set<ConnectionRegistry>();
  /** Label sets in use by workload, so a deleted workload's series can be removed. */
  private readonly series = new WorkloadSeries();
  /** Deleted workloads whose series wait for their last live connection to end. */
  private readonly pendingForget = new Set<string>();

  constructor(registry: Registry) {
    const labelNames = LABEL_NAMES as unknown as LabelName[];
    const flushLive = () => this.flushLive();
    this.opened = new Counter({
      name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened (established upstream).',
      labelNames, registers: [registry],
    });
    this.closed = new Counter({
      name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed after being opened.',
      labelNames, registers: [registry],
    });
    this.failed = new Counter({
      name: 'istio_tcp_connections_failed_total', help: 'TCP connections that were refused or could not be established.',
      labelNames, registers: [registry],
    });
    this.sentBytes = new Counter({
      name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent toward the client (response direction).',
      labelNames, registers: [registry], collect: flushLive,
    });
    this.receivedBytes = new Counter({
      name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client (request direction).',
      labelNames, registers: [registry], collect: flushLive,
    });
    this.revoked = new Counter({
      name: 'weft_ztunnel_connections_revoked_total',
      help: 'Live connections closed because changed authorization (policy, PeerAuthentication, labels) now denies them.',
      labelNames: ['listener'], registers: [registry],
    });
    this.forwardedIgnored = new Counter({
      name: 'weft_ztunnel_forwarded_ignored_total',
      help: 'HBONE streams whose `forwarded` client address was ignored (not an address of the peer\'s own identity, and the peer no waypoint bound to the destination); the peer address was used.',
      labelNames: ['reason'], registers: [registry],
    });
    this.hboneRefused = new Counter({
      name: 'weft_ztunnel_hbone_refused_total',
      help: 'HBONE streams or sessions refused or closed by a protection limit (memory budget, pending dials, floods, session caps).',
      labelNames: ['reason'], registers: [registry],
    });
    const observed = this.observed;
    this.live = new Gauge({
      name: 'weft_ztunnel_connections', help: 'Proxied connections open now, by direction (outbound from a local client, inbound to a local destination).',
      labelNames: ['direction'], registers: [registry],
      // Counted at scrape time: the data path pays nothing for it.
      collect(this: Gauge<'direction'>) {
        const n = { outbound: 0, inbound: 0 };
        for (const reg of observed) for (const c of reg.all()) n[c.direction]++;
        this.set({ direction: 'outbound' }, n.outbound);
        this.set({ direction: 'inbound' }, n.inbound);
      },
    });
  }

  /** Lets scrapes include bytes of connections still open. Idempotent. */
  observe(connections: ConnectionRegistry): void {
    this.observed.add(connections);
  }

  connectionOpened(c: TrackedConnection): void {
    const labels = labelsFor(c, '-');
    this.series.note(labels);
    this.opened.inc(labels);
  }

  /** An established connection ended; `flag` says how ('-' when cleanly). */
  connectionClosed(c: TrackedConnection, flag: ResponseFlag): void {
    const labels = labelsFor(c, flag);
    this.series.note(labels);
    this.closed.inc(labels);
    this.addBytes(c, labels);
    this.sweepPending(c);
  }

  /** A connection that never became established. */
  connectionFailed(c: TrackedConnection, flag: ResponseFlag): void {
    const labels = labelsFor(c, flag);
    this.series.note(labels);
    this.failed.inc(labels);
    this.addBytes(c, labels);
    this.sweepPending(c);
  }

  /**
   * Removes every series naming workload `namespace/name` (either end) from the Istio
   * counters. While a live connection still names it, removal waits for it to end:
   * its final counts would otherwise bring the series back for good.
   */
  forgetWorkload(namespace: string, name: string): void {
    const key = workloadKey(namespace, name);
    if (this.hasLive(key)) this.pendingForget.add(key);
    else this.removeSeries(key);
  }

  /**
   * Removes the series of workloads that leave `state` (deleted, or gone from a new
   * snapshot). Returns the unsubscribe function.
   */
  followState(state: MeshState): () => void {
    return sweepGoneWorkloads(state, () => this.series.workloads(), (namespace, name) => this.forgetWorkload(namespace, name));
  }

  private hasLive(key: string): boolean {
    for (const reg of this.observed) {
      for (const c of reg.all()) {
        for (const w of [c.src.workload, c.dst.workload]) {
          if (w && workloadKey(w.record.namespace, w.record.name) === key) return true;
        }
      }
    }
    return false;
  }

  /**
   * `ended` (already out of its registry) was the only change: only the workloads it
   * names can have lost their last live connection, so only those are looked up.
   */
  private sweepPending(ended: TrackedConnection): void {
    if (this.pendingForget.size === 0) return;
    for (const w of [ended.src.workload, ended.dst.workload]) {
      if (!w) continue;
      const key = workloadKey(w.record.namespace, w.record.name);
      if (!this.pendingForget.has(key) || this.hasLive(key)) continue;
      this.pendingForget.delete(key);
      this.removeSeries(key);
    }
  }

  private removeSeries(key: string): void {
    for (const labels of this.series.take(key)) {
      for (const counter of [this.opened, this.closed, this.failed, this.sentBytes, this.receivedBytes]) counter.remove(labels);
    }
  }

  private flushLive(): void {
    for (const reg of this.observed) {
      for (const c of reg.all()) if (c.established) this.addBytes(c, labelsFor(c, '-'));
    }
  }

  private addBytes(c: TrackedConnection, labels: MetricLabels): void {
    const dr = c.counters.received - c.reported.received;
    const ds = c.counters.sent - c.reported.sent;
    if (dr > 0) this.receivedBytes.inc(labels, dr);
    if (ds > 0) this.sentBytes.inc(labels, ds);
    c.reported = { received: c.counters.received, sent: c.counters.sent };
  }
}

function name(w: WorkloadView | undefined): string {
  return w?.record.name ?? UNKNOWN;
}

function ns(w: WorkloadView | undefined): string {
  return w?.record.namespace ?? UNKNOWN;
}

/** Istio's label set for one connection, from the side that reports it. */
export function labelsFor(c: TrackedConnection, flag: ResponseFlag): MetricLabels {
  return {
    reporter: c.direction === 'outbound' ? 'source' : 'destination',
    source_workload: name(c.src.workload),
    source_workload_namespace: ns(c.src.workload),
    source_principal: c.src.identity ?? UNKNOWN,
    destination_workload: name(c.dst.workload),
    destination_workload_namespace: ns(c.dst.workload),
    destination_principal: c.dst.identity ?? UNKNOWN,
    destination_service: c.dst.serviceHost ?? UNKNOWN,
    request_protocol: 'tcp',
    response_flags: flag,
    connection_security_policy: c.protocol === 'HBONE' ? 'mutual_tls' : UNKNOWN,
  };
}
