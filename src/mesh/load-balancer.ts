/**
 * Endpoint choice for service VIPs. Round robin is the default (as kube-proxy spreads
 * connections); least-connections is opt-in per service (`loadBalancing: LEAST_CONN`)
 * and needs to know how many connections this proxy has open to each endpoint, which
 * the caller injects (the connection registry knows).
 */
import type { WorkloadView } from '../registry/enrolment';
import type { ServiceRecord, WaypointRecord } from '../registry/types';

export interface EndpointPicker {
  /** Chooses one of `candidates` (never empty, healthy only) for a new connection to `service`. */
  pick(service: ServiceRecord, candidates: readonly WorkloadView[]): WorkloadView;
  /**
   * Chooses one of a waypoint's ready pods (never empty) for a new connection a source
   * sends through it. Always round robin: a waypoint pod multiplexes many sources over
   * a few pooled tunnels, so a per-proxy connection count says little about its load.
   */
  pickWaypoint(waypoint: Pick<WaypointRecord, 'namespace' | 'name'>, candidates: readonly WorkloadView[]): WorkloadView;
}

/** Active connections this proxy has to a workload (by uid). */
export type ConnectionCounter = (workloadUid: string) => number;

/**
 * Round robin per service. Candidates arrive in no stable order (they come from a
 * set), so they are sorted by uid first: otherwise the cursor would not visit each
 * endpoint once per round.
 */
export class RoundRobin implements EndpointPicker {
  private readonly cursors = new Map<string, number>();

  pick(service: ServiceRecord, candidates: readonly WorkloadView[]): WorkloadView {
    return this.next(`${service.namespace}/${service.name}`, candidates);
  }

  pickWaypoint(waypoint: Pick<WaypointRecord, 'namespace' | 'name'>, candidates: readonly WorkloadView[]): WorkloadView {
    // Another key space than services': a Service and a Gateway may share a name.
    return this.next(`waypoint:${waypoint.namespace}/${waypoint.name}`, candidates);
  }

  private next(k: string, candidates: readonly WorkloadView[]): WorkloadView {
    const sorted = sortByUid(candidates);
    const n = this.cursors.get(k) ?? 0;
    // The cursor wraps well before it loses integer precision.
    this.cursors.set(k, (n + 1) % 1_000_000_007);
    return sorted[n % sorted.length]!;
  }

  /** Forgets a service's cursor (service deleted); optional hygiene. */
  forget(service: ServiceRecord): void {
    this.cursors.delete(`${service.namespace}/${service.name}`);
  }
}

/** Fewest active connections wins; ties go round robin so equal endpoints share the load. */
export class LeastConnections implements EndpointPicker {
  private readonly tieBreak = new RoundRobin();

  constructor(private readonly count: ConnectionCounter) {}

  pick(service: ServiceRecord, candidates: readonly WorkloadView[]): WorkloadView {
    let best = Infinity;
    let tied: WorkloadView[] = [];
    for (const c of candidates) {
      const n = this.count(c.record.uid);
      if (n < best) {
        best = n;
        tied = [c];
      } else if (n === best) {
        tied.push(c);
      }
    }
    return tied.length === 1 ? tied[0]! : this.tieBreak.pick(service, tied);
  }

  pickWaypoint(waypoint: Pick<WaypointRecord, 'namespace' | 'name'>, candidates: readonly WorkloadView[]): WorkloadView {
    return this.tieBreak.pickWaypoint(waypoint, candidates);
  }
}

/** Picks per the service's own `loadBalancing` setting. */
export class ServiceLoadBalancer implements EndpointPicker {
  private readonly roundRobin = new RoundRobin();
  private readonly leastConn: LeastConnections | undefined;

  /** Without a counter, LEAST_CONN services fall back to round robin. */
  constructor(count?: ConnectionCounter) {
    this.leastConn = count ? new LeastConnections(count) : undefined;
  }

  pick(service: ServiceRecord, candidates: readonly WorkloadView[]): WorkloadView {
    if (service.loadBalancing === 'LEAST_CONN' && this.leastConn) return this.leastConn.pick(service, candidates);
    return this.roundRobin.pick(service, candidates);
  }

  pickWaypoint(waypoint: Pick<WaypointRecord, 'namespace' | 'name'>, candidates: readonly WorkloadView[]): WorkloadView {
    return this.roundRobin.pickWaypoint(waypoint, candidates);
  }
}

function sortByUid(ws: readonly WorkloadView[]): readonly WorkloadView[] {
  if (ws.length < 2) return ws;
  return [...ws].sort((a, b) => (a.record.uid < b.record.uid ? -1 : a.record.uid > b.record.uid ? 1 : 0));
}
