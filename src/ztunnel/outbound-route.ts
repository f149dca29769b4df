/**
 * Where a captured outbound connection goes: pure, so it can be tested exhaustively
 * and reused by `weft explain`.
 *
 * The ztunnel's own sockets are not kube-proxied (its traffic never passes the
 * capture or service rules), so a service VIP is resolved here to one healthy
 * endpoint and its target port, whether the connection is then tunnelled or not —
 * unless the Service is bound to a waypoint (waypoint-route.ts): then a mesh source's
 * connection goes to a waypoint pod, which picks the endpoint, or is refused.
 * Traffic addressed to a pod IP never goes through a waypoint for services only
 * (Gateway API's MeshFrontend rule: routes attach to the Service, not to its pods);
 * it goes through the pod's waypoint when that one serves workloads, and so does a
 * Service's connection whose chosen endpoint is such a pod (when the Service has no
 * waypoint of its own), as Istio's ztunnel does.
 */
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { ServiceRecord } from '../registry/types';
import { formatHostPort, type HostPort } from '../lib/address';
import type { EndpointPicker } from '../mesh/load-balancer';
import { guardDestination, guardPort, type GuardRefusal, type LoopGuard } from './loop-guard';
import { pickServiceEndpoint } from '../mesh/service-endpoint';
import { waypointHop, workloadWaypointHop, type WaypointDecision, type WaypointState } from './waypoint-route';

export type { WaypointDecision } from './waypoint-route';

export type RouteState = Pick<MeshState, 'workloadByAddress' | 'serviceByVip' | 'endpoints'> & WaypointState;

export interface OutboundRequest {
  /** The captured client's address (the source pod IP). */
  sourceIp: string;
  /** The original destination, from conntrack. */
  dst: HostPort;
}

/** Tunnel over HBONE to the destination workload's node. */
export interface HboneDecision {
  kind: 'hbone';
  source: WorkloadView;
  destination: WorkloadView;
  /** The identity the destination must present (its workload's). */
  identity: string;
  /** Pod IP and target port: the CONNECT `:authority`. */
  target: HostPort;
  service?: ServiceRecord;
  /** Why a waypoint binding was not followed (pod-IP destination, waypoint `for`), for the debug log and `weft explain`. */
  waypointNote?: string;
}

/** Plain TCP to `ip:port` (the chosen endpoint and target port for a VIP). */
export interface PassthroughDecision {
  kind: 'passthrough';
  ip: string;
  port: number;
  source?: WorkloadView;
  destination?: WorkloadView;
  service?: ServiceRecord;
  /** Why the connection is not tunnelled, for the debug log and `weft explain`. */
  reason: string;
  waypointNote?: string;
}

/** Closed without dialling anything. */
export interface RefuseDecision {
  kind: 'refuse';
  /** Short, fixed token for metrics (`response_flags`). */
  flag: 'LOOP' | 'NO_HEALTHY_UPSTREAM' | 'NO_ROUTE' | 'NO_WAYPOINT';
  reason: string;
  source?: WorkloadView;
  service?: ServiceRecord;
  /** `<namespace>/<name>` of the waypoint the service is bound to, when the refusal is about it. */
  waypoint?: string;
}

export type OutboundDecision = HboneDecision | WaypointDecision | PassthroughDecision | RefuseDecision;

/**
 * `guard` holds this node's own addresses and the proxy ports: both the original
 * destination and the endpoint finally dialled are checked against it (loop-guard.ts),
 * before anything else, whoever the source is.
 */
export function routeOutbound(state: RouteState, req: OutboundRequest, lb: EndpointPicker, guard: LoopGuard): OutboundDecision {
  const source = state.workloadByAddress(req.sourceIp);
  const dstText = formatHostPort(req.dst.ip, req.dst.port);
  const service = state.serviceByVip(req.dst.ip);
  // A VIP's own address is never dialled (its endpoint is, and is checked below), so
  // only its port counts here; VIPs may sit on a node interface (IPVS's kube-ipvs0).
  const early = service ? guardPort(req.dst, guard) : guardDestination(req.dst, guard);
  if (early) return refusal(early, source, service);

  let destination: WorkloadView | undefined;
  let target: HostPort;
  let waypointNote: string | undefined;
  if (service) {
    const hop = waypointHop(state, source, service, req.dst, lb, guard);
    if (hop.kind === 'waypoint') return hop;
    if (hop.kind === 'refuse') return { kind: 'refuse', flag: hop.flag, reason: hop.reason, source, service, waypoint: hop.waypoint };
    waypointNote = hop.note;
    const pick = pickServiceEndpoint(state, service, req.dst.port, lb);
    if (!pick.ok) return { kind: 'refuse', flag: pick.flag, source, service, reason: pick.reason };
    destination = pick.destination;
    target = pick.target;
    const late = guardDestination(target, guard);
    if (late) return refusal(late, source, service);
    // No waypoint of the Service's own: the chosen endpoint's workload waypoint takes it, as in Istio.
    const podHop = workloadWaypointHop(state, source, destination, target, lb, guard, service);
    if (podHop.kind === 'waypoint') return podHop;
    if (podHop.kind === 'refuse') return { kind: 'refuse', flag: podHop.flag, reason: podHop.reason, source, service, waypoint: podHop.waypoint };
    if (podHop.note !== undefined) waypointNote = waypointNote === undefined ? podHop.note : `${waypointNote}; ${podHop.note}`;
  } else {
    destination = state.workloadByAddress(req.dst.ip);
    target = req.dst;
    if (destination) {
      const hop = workloadWaypointHop(state, source, destination, req.dst, lb, guard);
      if (hop.kind === 'waypoint') return hop;
      if (hop.kind === 'refuse') return { kind: 'refuse', flag: hop.flag, reason: hop.reason, source, waypoint: hop.waypoint };
      waypointNote = hop.note;
    }
  }

  const base = waypointNote === undefined ? { source, destination, service } : { source, destination, service, waypointNote };
  if (!destination) {
    return { kind: 'passthrough', ip: target.ip, port: target.port, ...base, reason: `${dstText} is not a mesh workload or service` };
  }
  if (!source || !source.enrolled) {
    return {
      kind: 'passthrough', ip: target.ip, port: target.port, ...base,
      reason: source ? `source ${wlName(source)} is not in the mesh` : `source ${req.sourceIp} is not a known workload`,
    };
  }
  if (!destination.enrolled) {
    return { kind: 'passthrough', ip: target.ip, port: target.port, ...base, reason: `destination ${wlName(destination)} is not in the mesh` };
  }
  const decision: HboneDecision = { kind: 'hbone', source, destination, identity: destination.identity, target };
  if (service) decision.service = service;
  if (waypointNote !== undefined) decision.waypointNote = waypointNote;
  return decision;
}

function refusal(r: GuardRefusal, source: WorkloadView | undefined, service: ServiceRecord | undefined): RefuseDecision {
  return { kind: 'refuse', flag: r.flag, source, service, reason: r.reason };
}

function wlName(w: WorkloadView): string {
  return `${w.record.namespace}/${w.record.name}`;
}
