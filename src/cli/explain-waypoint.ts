/**
 * `weft explain` for a connection that goes through a waypoint: the hop the source
 * ztunnel makes (which waypoint, which pod, which identity, or why it refuses), the
 * waypoint's L7 choice (a hook: the route explanation lives with the route code in
 * src/gateway and is passed in), and what each endpoint's ztunnel then sees — the
 * WAYPOINT's identity as the peer (reference §7, §11), with a warning for every
 * L4 policy whose answer changes because of that.
 */
import { formatHostPort } from '../lib/address';
import { matchPolicy } from '../ztunnel/authorization';
import { HBONE_PORT } from '../hbone/contracts';
import { defaultHboneDialTarget } from '../ztunnel/contracts';
import { OUTBOUND_PORT } from '../mesh/ports';
import { servicePortFor, usableEndpoint } from '../mesh/service-endpoint';
import type { WaypointBinding, WaypointDecision } from '../ztunnel/waypoint-route';
import type { MeshState, WorkloadView } from '../registry/state';
import type { ServiceRecord, WaypointRecord } from '../registry/types';
import { authorizationAt } from './explain-authz';
import { workloadRef, type PathExplanation, type SourceExplanation, type WorkloadRef } from './explain-model';

/** What the L7 explainer is asked: the request's VIP:port as the waypoint receives it. */
export interface WaypointL7Context {
  state: MeshState;
  source: WorkloadView;
  waypoint: WaypointRecord;
  service: ServiceRecord;
  /** The service port dialled (the VIP's, before any target-port translation). */
  port: number;
}

/** The waypoint's L7 decision, as the route code explains it. */
export interface WaypointL7Explanation {
  /** Printed line by line under the waypoint step (route, rule, match, backend, filters, why). */
  summary: string[];
  /** Structured detail for `-o json|yaml`. */
  detail?: unknown;
  /**
   * Where the chosen rule sends the request; default: the service itself on the port
   * dialled (no route attached). Each backend's endpoints get an authorization step.
   */
  backends?: Array<{ service: ServiceRecord; port: number }>;
  /** With empty `backends`: the waypoint answers itself (404, a redirect, 500, 503). */
  direct?: { status: number; reason: string };
}

/** The hook `weft explain` calls for the L7 part (src/gateway provides it). */
export type WaypointL7Explainer = (ctx: WaypointL7Context) => WaypointL7Explanation;

export interface WaypointExplanation {
  /** `<namespace>/<name>`. */
  waypoint: string;
  binding: WaypointBinding;
  /** True when the connection was addressed to a pod (its workload waypoint), not to a Service VIP. */
  podAddressed: boolean;
  /**
   * `<namespace>/<name>` of the Service dialled when it has no waypoint and the chosen
   * endpoint's workload waypoint takes the connection (as Istio's ztunnel does).
   */
  endpointOf?: string;
  /** The identity the source expects and every endpoint sees. */
  identity: string;
  pod: WorkloadRef;
  readyPods: number;
  /** `<waypoint pod IP>:15008`. */
  hboneAddress: string;
  /** The original VIP:port (or pod IP:port): the CONNECT `:authority`. */
  authority: string;
  /** The source ztunnel's hop, in words. */
  route: string;
  identities: { source: string; destination: string };
  /** The route explanation, when an explainer was given. */
  l7?: WaypointL7Explanation;
  /** Said when no explainer was given. */
  l7Note?: string;
  /** L4 policies at the endpoints whose answer differs for the waypoint's identity and the source's. */
  policyWarnings: string[];
}

export const L7_NOT_EVALUATED = 'the waypoint chooses the backend by the HTTPRoutes/GRPCRoutes attached to the service; '
  + 'not evaluated here, so the service\'s own endpoints are shown (what it does when no route attaches)';

export const ENDPOINT_WAYPOINT = 'the service has no waypoint; its chosen endpoint\'s workload waypoint takes the connection as addressed to that endpoint '
  + '(Istio\'s ztunnel does the same), so no HTTPRoute or GRPCRoute of the service applies there';

export const POD_ADDRESSED = 'addressed to a pod, so no HTTPRoute or GRPCRoute applies (routes attach to Services: Gateway API MeshFrontend); '
  + 'the waypoint applies its L7 handling and sends the request to that pod as addressed';

/** The waypoint step and one path per endpoint the waypoint may reach. */
export function explainWaypoint(
  state: MeshState, d: WaypointDecision, source: SourceExplanation, l7?: WaypointL7Explainer,
): { waypoint: WaypointExplanation; paths: PathExplanation[] } {
  const hop = defaultHboneDialTarget(d.pod);
  const wp: WaypointExplanation = {
    waypoint: `${d.waypoint.namespace}/${d.waypoint.name}`,
    binding: d.binding,
    podAddressed: d.workload !== undefined && d.service === undefined,
    ...(d.workload !== undefined && d.service !== undefined ? { endpointOf: `${d.service.namespace}/${d.service.name}` } : {}),
    identity: d.identity,
    pod: workloadRef(d.pod),
    readyPods: d.readyPods,
    hboneAddress: formatHostPort(hop.host, hop.port),
    authority: formatHostPort(d.target.ip, d.target.port),
    route: `${d.source.record.node}'s ztunnel captures it on ${OUTBOUND_PORT} and opens mTLS HTTP/2 CONNECT to `
      + `${formatHostPort(hop.host, hop.port)} (waypoint pod ${d.pod.record.namespace}/${d.pod.record.name} on ${d.pod.record.node}, `
      + `${d.readyPods === 1 ? 'its only ready pod' : `one of ${d.readyPods} ready pods, round robin`})`,
    identities: { source: d.source.identity, destination: d.identity },
    policyWarnings: [],
  };
  const paths: PathExplanation[] = [];
  const warned = new Set<string>();
  if (d.workload) {
    // Addressed to a pod: no route applies (MeshFrontend); the waypoint sends it to that pod as addressed.
    wp.l7Note = d.service ? ENDPOINT_WAYPOINT : POD_ADDRESSED;
    paths.push(upstreamPath(state, wp, d, d.workload, d.target, source));
    if (d.workload.enrolled) warnPolicies(state, d, d.workload, d.target, source.ip, warned, wp.policyWarnings);
    return { waypoint: wp, paths };
  }
  let backends = [{ service: d.service, port: d.target.port }];
  if (l7) {
    wp.l7 = l7({ state, source: d.source, waypoint: d.waypoint, service: d.service, port: d.target.port });
    if (wp.l7.backends) backends = wp.l7.backends;
  } else {
    wp.l7Note = L7_NOT_EVALUATED;
  }
  if (backends.length === 0 && wp.l7?.direct) {
    const { status, reason } = wp.l7.direct;
    paths.push({
      kind: 'answer', plaintext: false, outcome: status < 400 ? 'allowed' : 'refused', refusal: { flag: `HTTP ${status}`, reason },
      route: `waypoint pod ${wp.pod.namespace}/${wp.pod.name} answers ${status} itself: nothing is sent upstream`,
    });
  }
  for (const b of backends) {
    const name = `${b.service.namespace}/${b.service.name}`;
    const sp = servicePortFor(b.service, b.port);
    if (!sp.ok) {
      paths.push(refused(wp, sp.flag, `the waypoint cannot send to ${name}: ${sp.reason}`));
      continue;
    }
    const eps = state.endpoints(b.service).filter(usableEndpoint).sort((x, y) => (x.record.uid < y.record.uid ? -1 : 1));
    if (eps.length === 0) {
      paths.push(refused(wp, 'NO_HEALTHY_UPSTREAM', `the waypoint answers 503: service ${name} has no healthy endpoint`));
      continue;
    }
    for (const ep of eps) {
      const target = { ip: ep.record.addresses[0]!, port: sp.port.targetPort };
      paths.push(upstreamPath(state, wp, d, ep, target, source));
      if (ep.enrolled) warnPolicies(state, d, ep, target, source.ip, warned, wp.policyWarnings);
    }
  }
  return { waypoint: wp, paths };
}

function refused(wp: WaypointExplanation, flag: string, reason: string): PathExplanation {
  return { kind: 'refuse', plaintext: false, outcome: 'refused', refusal: { flag, reason }, route: `waypoint pod ${wp.pod.namespace}/${wp.pod.name} refuses it` };
}

/** The waypoint's upstream hop to one endpoint, and what that endpoint's ztunnel decides. */
function upstreamPath(
  state: MeshState, wp: WaypointExplanation, d: WaypointDecision, ep: WorkloadView, target: { ip: string; port: number }, source: SourceExplanation,
): PathExplanation {
  const endpoint = `${ep.record.namespace}/${ep.record.name}`;
  const to = formatHostPort(target.ip, target.port);
  const pod = `waypoint pod ${wp.pod.namespace}/${wp.pod.name}`;
  if (!ep.enrolled) {
    return {
      kind: 'waypoint', endpoint, target: to, plaintext: true, outcome: 'allowed',
      route: `${pod} connects to ${to} in plain TCP: the endpoint is not in the mesh`,
      noPolicy: `destination ${endpoint} is not in the mesh: no Weft policy applies to it`,
    };
  }
  const hbone = defaultHboneDialTarget(ep);
  // The destination ztunnel believes `forwarded` from the bound waypoint, so the source
  // address its policy sees is the original client's; the peer identity is the waypoint's.
  const authorization = authorizationAt(state, ep, target, source, d.identity, `inbound HBONE (${HBONE_PORT})`);
  return {
    kind: 'waypoint', endpoint, target: to, plaintext: false,
    route: `${pod} opens mTLS HTTP/2 CONNECT to ${formatHostPort(hbone.host, hbone.port)} (${ep.record.node}'s ztunnel) `
      + `with the waypoint's certificate, forwarded for=${source.ip}`,
    authority: to, hboneAddress: formatHostPort(hbone.host, hbone.port),
    identities: { source: d.identity, destination: ep.identity },
    authorization, outcome: authorization.allowed ? 'allowed' : 'denied',
  };
}

/**
 * A policy whose answer is not the same for the source's identity and the waypoint's
 * is one written for the connection without a waypoint (Istio users' pain, §7): say
 * what now happens. Each policy once.
 */
function warnPolicies(
  state: MeshState, d: WaypointDecision, ep: WorkloadView, target: { ip: string; port: number }, srcIp: string, warned: Set<string>, out: string[],
): void {
  const req = (identity: string) => ({ source: { identity, ip: srcIp }, destination: { workload: ep, ip: target.ip, port: target.port } });
  const wpRef = `${d.waypoint.namespace}/${d.waypoint.name}`;
  for (const p of state.policiesFor(ep)) {
    const key = `${p.namespace}/${p.name}`;
    if (warned.has(key)) continue;
    const bySource = matchPolicy(p, req(d.source.identity)).matched;
    const byWaypoint = matchPolicy(p, req(d.identity)).matched;
    if (bySource === byWaypoint) continue;
    warned.add(key);
    if (p.action === 'ALLOW' && bySource) {
      out.push(`ALLOW policy ${key} admits the source's identity ${d.source.identity}, but behind waypoint ${wpRef} `
        + `the destination sees the waypoint's identity ${d.identity}, which it does not admit: add principal ${d.identity} `
        + `(or serviceAccount ${d.waypoint.namespace}/${d.waypoint.serviceAccount}) to it if it should admit the source's traffic through the waypoint`);
    } else if (p.action === 'DENY' && bySource) {
      out.push(`DENY policy ${key} matches the source's identity ${d.source.identity}, but behind waypoint ${wpRef} `
        + `the destination sees ${d.identity}: this DENY does not stop the source's traffic through the waypoint`);
    } else if (p.action === 'DENY') {
      out.push(`DENY policy ${key} matches the waypoint's identity ${d.identity}: every connection through waypoint ${wpRef} to ${key.split('/')[0]} endpoints it selects is denied`);
    }
    // ALLOW matching only the waypoint: the intended pattern (admit the waypoint), nothing to say.
  }
}
