/**
 * The source ztunnel's waypoint hop: whether a connection to a Service VIP must go
 * through the Service's waypoint, or one addressed to a pod through the pod's
 * workload waypoint, and to which of the waypoint's pods. Pure (shared by the
 * outbound listener and `weft explain`).
 *
 * Istio's rule (reference §11): a VIP whose Service is bound to a waypoint is sent
 * over HBONE to a waypoint pod's `:15008` with the ORIGINAL VIP:port as `:authority`
 * (the waypoint routes by it: GAMMA routes attach to the Service), expecting the
 * waypoint's identity and presenting the source workload's certificate. Where Istio
 * then falls back to the endpoint when the waypoint is missing (its L7 policy silently
 * skipped, §12), Weft refuses: a bound Service is reached through its waypoint or not
 * at all.
 *
 * Pod-addressed traffic (reference §11, step 2; Istio's `istio.io/waypoint-for`): a
 * pod bound to a waypoint (its own weft.io/use-waypoint label, else its namespace's)
 * whose waypoint serves workloads (`for: workload` or `all`) is reached through that
 * waypoint, `:authority` the original pod IP:port; so is such a pod chosen as the
 * endpoint of a Service that has no waypoint (`:authority` its IP and target port); a waypoint for services only does
 * not take it (Gateway API's MeshFrontend rule: routes belong to the Service), so it
 * goes direct. Missing or not ready: refused, as for services.
 */
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import { GATEWAY_NAME_LABEL } from '../gateway/types';
import { formatIdentity } from '../lib/identity';
import { USE_WAYPOINT_LABEL, type ServiceRecord, type WaypointRecord } from '../registry/types';
import { formatHostPort, type HostPort } from '../lib/address';
import { HBONE_PORT } from '../hbone/contracts';
import type { EndpointPicker } from '../mesh/load-balancer';
import { guardAddress, type LoopGuard } from './loop-guard';
import { servicePortFor, usableEndpoint } from '../mesh/service-endpoint';

export type WaypointState = Pick<MeshState, 'trustDomain' | 'serviceWaypointName' | 'waypoint' | 'waypointPods'>;

/** Where a binding comes from: the Service's (or pod's) own label wins over its namespace's. */
export type WaypointBinding = 'service' | 'workload' | 'namespace';

/** Tunnel over HBONE to a ready waypoint pod; the waypoint picks the endpoint (or takes the pod addressed). */
interface WaypointHopBase {
  kind: 'waypoint';
  source: WorkloadView;
  waypoint: WaypointRecord;
  binding: WaypointBinding;
  /** The waypoint pod the tunnel goes to (`<pod IP>:15008`). */
  pod: WorkloadView;
  /** The identity the waypoint pod must present: spiffe://<td>/ns/<waypoint ns>/sa/<waypoint service account>. */
  identity: string;
  /** The original VIP:port (NOT translated to a target port) or pod IP:port: the CONNECT `:authority`. */
  target: HostPort;
  /** Ready pods the round robin chose among (for `weft explain`). */
  readyPods: number;
}

/**
 * Either the Service whose VIP was dialled (its own waypoint), or the pod the
 * connection goes to through that pod's workload waypoint: addressed to the pod, or
 * (`service` set) the endpoint chosen for a Service without a waypoint of its own.
 */
export type WaypointDecision =
  | WaypointHopBase & { service: ServiceRecord; workload?: undefined }
  | WaypointHopBase & { workload: WorkloadView; service?: ServiceRecord };

/** The Service is bound, but the waypoint cannot take the connection: closed, never bypassed. */
export interface WaypointRefusal {
  kind: 'refuse';
  flag: 'NO_WAYPOINT' | 'NO_ROUTE' | 'LOOP';
  reason: string;
  /** `<namespace>/<name>` of the waypoint the Service is bound to. */
  waypoint: string;
}

/** No waypoint applies: route to the endpoint as usual. `note` says why a binding was not followed. */
export interface NoWaypoint {
  kind: 'direct';
  note?: string;
}

export type WaypointHop = WaypointDecision | WaypointRefusal | NoWaypoint;

const DIRECT: NoWaypoint = { kind: 'direct' };

/** The waypoint's own identity: what its pods' certificates carry. */
export function waypointIdentity(trustDomain: string, w: Pick<WaypointRecord, 'namespace' | 'serviceAccount'>): string {
  return formatIdentity({ trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount });
}

/** A waypoint that takes traffic addressed to Services (Istio's `istio.io/waypoint-for`, default `service`). */
export function servesServices(w: Pick<WaypointRecord, 'for'>): boolean {
  return w.for === 'service' || w.for === 'all';
}

/** A waypoint that takes traffic addressed to its workloads' pod IPs (`for: workload` or `all`). */
export function servesWorkloads(w: Pick<WaypointRecord, 'for'>): boolean {
  return w.for === 'workload' || w.for === 'all';
}

/** True when `w` is a pod of waypoint `ns/name` (its Gateway's name label, in its namespace). */
export function isPodOfWaypoint(w: WorkloadView, waypoint: Pick<WaypointRecord, 'namespace' | 'name'>): boolean {
  return w.record.namespace === waypoint.namespace && w.record.labels[GATEWAY_NAME_LABEL] === waypoint.name;
}

/**
 * The waypoint hop for a connection from `source` to `service`'s VIP `vip`. Only an
 * enrolled source's connections are sent to a waypoint: the ztunnel never captures
 * anything else (a non-mesh client reaches the endpoints without any proxy — `note`
 * says so for `weft explain`). Checks, in order:
 *   - no binding, or `none`: direct;
 *   - the source is a pod of that waypoint: direct (a waypoint never routes to itself;
 *     waypoint pods are not enrolled, so this is defence in depth);
 *   - the source is not enrolled: direct, with a note;
 *   - the Service has no such port (NO_ROUTE) or maps it to a proxy port (LOOP);
 *   - the waypoint record is missing: NO_WAYPOINT;
 *   - the waypoint serves only workloads or nothing (`for`): direct, with a note;
 *   - no pod of the waypoint is Healthy, has an address and runs as the waypoint's
 *     service account (a pod that does not could never present the identity the
 *     source expects): NO_WAYPOINT;
 *   - the chosen pod's address is this node's own (LOOP): a bad record, never dialled.
 */
export function waypointHop(
  state: WaypointState, source: WorkloadView | undefined, service: ServiceRecord, vip: HostPort, lb: EndpointPicker, guard: LoopGuard,
): WaypointHop {
  const name = state.serviceWaypointName(service);
  if (name === undefined) return DIRECT;
  const ref = `${service.namespace}/${name}`;
  const svc = `${service.namespace}/${service.name}`;
  if (source && isPodOfWaypoint(source, { namespace: service.namespace, name })) {
    return { kind: 'direct', note: `the source is a pod of waypoint ${ref}: a waypoint is never routed to itself` };
  }
  if (!source || !source.enrolled) {
    return { kind: 'direct', note: `service ${svc} is bound to waypoint ${ref}, but the source is not in the mesh: no ztunnel captures its traffic, so it reaches the endpoint without the waypoint` };
  }
  const port = servicePortFor(service, vip.port);
  if (!port.ok) return { kind: 'refuse', flag: port.flag, reason: port.reason, waypoint: ref };
  const binding: WaypointBinding = service.waypoint !== undefined && service.waypoint !== '' ? 'service' : 'namespace';
  const bound = binding === 'service'
    ? `service ${svc} is bound to waypoint ${ref} (its ${USE_WAYPOINT_LABEL} label)`
    : `service ${svc} is bound to waypoint ${ref} (label ${USE_WAYPOINT_LABEL} of namespace ${service.namespace})`;
  const waypoint = state.waypoint(service.namespace, name);
  if (!waypoint) {
    return {
      kind: 'refuse', flag: 'NO_WAYPOINT', waypoint: ref,
      reason: `${bound}, which does not exist; refused rather than bypassing it. `
        + `Create it (weft waypoint add ${ref}) or set ${USE_WAYPOINT_LABEL}=none on the ${binding}`,
    };
  }
  if (!servesServices(waypoint)) {
    return { kind: 'direct', note: `${bound}, but that waypoint is for ${waypoint.for} traffic, not services: the service is reached directly` };
  }
  const pod = readyPod(state, waypoint, bound, ref, lb, guard, `Check weft waypoints -n ${service.namespace}`);
  if (pod.kind === 'refuse') return pod;
  return { kind: 'waypoint', source, service, waypoint, binding, pod: pod.pod, identity: pod.identity, target: { ip: vip.ip, port: vip.port }, readyPods: pod.readyPods };
}

/**
 * The waypoint hop for a connection from `source` addressed to the pod `destination`
 * at `dst` (its IP and the port dialled), or, with `via`, to the endpoint
 * `destination` at `dst` (its IP and target port) chosen for a VIP of `via`, a Service
 * without a waypoint: Istio's ztunnel sends that to the endpoint's workload waypoint
 * too, `:authority` the endpoint's address (reference §11, step 2). Checks, in order:
 *   - the pod is bound to no waypoint (or `none`): direct;
 *   - the source is a pod of that waypoint: direct (never routed to itself);
 *   - the source is not enrolled: direct, with a note (no ztunnel captures it);
 *   - the waypoint record is missing: NO_WAYPOINT;
 *   - the waypoint serves services only, or nothing: direct, with a note (MeshFrontend);
 *   - no pod of the waypoint is ready as its identity: NO_WAYPOINT; a pod on a
 *     self address: LOOP (as for services).
 * Proxy ports and this node's addresses were refused before (loop-guard.ts).
 */
export function workloadWaypointHop(
  state: WaypointState, source: WorkloadView | undefined, destination: WorkloadView, dst: HostPort, lb: EndpointPicker, guard: LoopGuard,
  via?: ServiceRecord,
): WaypointHop {
  const name = destination.waypoint;
  if (name === undefined) return DIRECT;
  const ns = destination.record.namespace;
  const ref = `${ns}/${name}`;
  const pod = `${ns}/${destination.record.name}`;
  const at = formatHostPort(dst.ip, dst.port);
  // How the refusals and notes name the connection: a pod address, or a Service's endpoint.
  const to = via ? `service ${via.namespace}/${via.name} has no waypoint of its own; its endpoint ${at} was chosen` : `${at} is a pod address`;
  if (source && isPodOfWaypoint(source, { namespace: ns, name })) {
    return { kind: 'direct', note: `the source is a pod of waypoint ${ref}: a waypoint is never routed to itself` };
  }
  if (!source || !source.enrolled) {
    return { kind: 'direct', note: `pod ${pod} is bound to waypoint ${ref}, but the source is not in the mesh: no ztunnel captures its traffic, so it reaches the pod without the waypoint` };
  }
  const own = destination.record.labels[USE_WAYPOINT_LABEL];
  const binding: WaypointBinding = own !== undefined && own !== '' ? 'workload' : 'namespace';
  const bound = binding === 'workload'
    ? `pod ${pod} is bound to waypoint ${ref} (its ${USE_WAYPOINT_LABEL} label)`
    : `pod ${pod} is bound to waypoint ${ref} (label ${USE_WAYPOINT_LABEL} of namespace ${ns})`;
  const waypoint = state.waypoint(ns, name);
  if (!waypoint) {
    return {
      kind: 'refuse', flag: 'NO_WAYPOINT', waypoint: ref,
      reason: `${to} and ${bound}, which does not exist; refused rather than bypassing it. `
        + `Create it (weft waypoint add ${ref}) or set ${USE_WAYPOINT_LABEL}=none on the ${binding === 'workload' ? 'pod' : 'namespace'}`,
    };
  }
  if (!servesWorkloads(waypoint)) {
    if (via) {
      return { kind: 'direct', note: `${to}: ${bound}, which is for ${waypoint.for} traffic, not workloads, so the endpoint is reached directly` };
    }
    return {
      kind: 'direct',
      note: `${at} is a pod address: the waypoint ${ref} its ${binding === 'workload' ? 'pod' : 'namespace'} names is for ${waypoint.for} traffic: it routes `
        + 'traffic addressed to a service, not to a pod (Gateway API MeshFrontend), so it is reached directly; a waypoint for workload or all traffic takes it',
    };
  }
  const chosen = readyPod(state, waypoint, `${to} and ${bound}`, ref, lb, guard, `Check weft waypoints -n ${ns}`);
  if (chosen.kind === 'refuse') return chosen;
  return {
    kind: 'waypoint', source, workload: destination, waypoint, binding, pod: chosen.pod, identity: chosen.identity,
    target: { ip: dst.ip, port: dst.port }, readyPods: chosen.readyPods, ...(via ? { service: via } : {}),
  };
}

/** One ready pod of `waypoint` (round robin) and the identity it must present, or why none can take the connection. */
function readyPod(
  state: WaypointState, waypoint: WaypointRecord, bound: string, ref: string, lb: EndpointPicker, guard: LoopGuard, hint: string,
): WaypointRefusal | { kind: 'pod'; pod: WorkloadView; identity: string; readyPods: number } {
  const identity = waypointIdentity(state.trustDomain, waypoint);
  const pods = state.waypointPods(waypoint);
  const ready = pods.filter((p) => usableEndpoint(p) && p.identity === identity);
  if (ready.length === 0) {
    return { kind: 'refuse', flag: 'NO_WAYPOINT', waypoint: ref, reason: `${bound}, which has no ready pod (${podSummary(pods, identity)}); refused rather than bypassing it. ${hint}` };
  }
  const pod = lb.pickWaypoint(waypoint, ready);
  const addr = guardAddress({ ip: pod.record.addresses[0]!, port: HBONE_PORT }, guard);
  if (addr) return { kind: 'refuse', flag: addr.flag, waypoint: ref, reason: `waypoint pod ${pod.record.namespace}/${pod.record.name}: ${addr.reason}` };
  return { kind: 'pod', pod, identity, readyPods: ready.length };
}

/** Why no pod is ready, counted, so the refusal points at the cause. */
function podSummary(pods: readonly WorkloadView[], identity: string): string {
  if (pods.length === 0) return 'no pod at all: is it deployed?';
  let unhealthy = 0;
  let noAddress = 0;
  let otherIdentity = 0;
  for (const p of pods) {
    if (p.record.status !== 'Healthy') unhealthy++;
    else if (p.record.addresses.length === 0) noAddress++;
    else if (p.identity !== identity) otherIdentity++;
  }
  const parts = [`${pods.length} pod${pods.length === 1 ? '' : 's'}`];
  if (unhealthy) parts.push(`${unhealthy} not Healthy`);
  if (noAddress) parts.push(`${noAddress} without an address`);
  if (otherIdentity) parts.push(`${otherIdentity} not running as ${identity}`);
  return parts.join(', ');
}
