/**
 * Service VIPs reaching the inbound plaintext listener (15006). The capture rules send
 * a non-mesh client's connection to a VIP there when the service has an enrolled
 * endpoint on this node (see generateCaptureRules), because after kube-proxy's DNAT the
 * node would never see the pod IP again. So the ztunnel does kube-proxy's job for these
 * connections: pick an endpoint uniformly among the healthy ones, map the port to the
 * target port, and either handle it as plaintext inbound (an enrolled pod here) or
 * forward it as plain TCP (anything else; a remote enrolled pod is captured and checked
 * by its own node's 15006). Pure, so the decision is tested without sockets.
 */
import type { CapturedServicePort } from '../iptables/rules';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { ServiceRecord } from '../registry/types';
import { canonicalIp, type HostPort } from '../lib/address';
import type { EndpointPicker } from '../mesh/load-balancer';
import { guardDestination, guardPort, type LoopGuard } from './loop-guard';
import { pickServiceEndpoint } from '../mesh/service-endpoint';

export type VipState = Pick<MeshState, 'serviceByVip' | 'endpoints'>;

/** The original destination is not a service VIP: the pod-IP path applies. */
export interface NotAServiceDecision {
  kind: 'not-a-service';
}

/** An enrolled endpoint on this node: authorize and deliver like any plaintext inbound. */
export interface LocalDecision {
  kind: 'local';
  service: ServiceRecord;
  destination: WorkloadView;
  /** Endpoint pod IP and target port. */
  target: HostPort;
}

/** Any other endpoint: plain TCP, no checks here. */
export interface ForwardDecision {
  kind: 'forward';
  service: ServiceRecord;
  destination: WorkloadView;
  target: HostPort;
  /** Why it is not handled here, for the debug log. */
  reason: string;
}

export interface VipRefuseDecision {
  kind: 'refuse';
  service: ServiceRecord;
  flag: 'NO_ROUTE' | 'NO_HEALTHY_UPSTREAM' | 'LOOP';
  reason: string;
}

export type VipDecision = NotAServiceDecision | LocalDecision | ForwardDecision | VipRefuseDecision;

/**
 * Where a plaintext connection to `dst` goes when `dst` is a service VIP. `lb` should
 * spread connections evenly (round robin), as kube-proxy's random choice does. The
 * VIP's port and the chosen endpoint pass the loop guard (loop-guard.ts) first.
 */
export function resolveVip(state: VipState, dst: HostPort, nodeName: string, lb: EndpointPicker, guard: LoopGuard): VipDecision {
  const service = state.serviceByVip(dst.ip);
  if (!service) return { kind: 'not-a-service' };
  const early = guardPort(dst, guard);
  if (early) return { kind: 'refuse', service, ...early };
  const pick = pickServiceEndpoint(state, service, dst.port, lb);
  if (!pick.ok) return { kind: 'refuse', service, flag: pick.flag, reason: pick.reason };
  const { destination, target } = pick;
  const late = guardDestination(target, guard);
  if (late) return { kind: 'refuse', service, ...late };
  if (destination.enrolled && destination.record.node === nodeName) {
    return { kind: 'local', service, destination, target };
  }
  const who = `${destination.record.namespace}/${destination.record.name}`;
  const reason = destination.record.node !== nodeName
    ? `endpoint ${who} is on node ${destination.record.node}, whose ztunnel captures it`
    : `endpoint ${who} is not in the mesh`;
  return { kind: 'forward', service, destination, target, reason };
}

/**
 * The service ports this node must capture for non-mesh clients: every VIP:port of a
 * service with at least one enrolled endpoint on `nodeName`. Health is ignored on
 * purpose: kube-proxy may still route to an endpoint the registry has just marked
 * unhealthy, and a rule too many only costs a hop through the ztunnel, while a rule
 * too few is a bypass. Every VIP of a dual-stack service counts: capture covers IPv4
 * and IPv6 alike (each family's rules take its own VIPs), and a VIP left out would let
 * a same-node client reach the pod through kube-proxy's DNAT uncaptured. Canonical text,
 * as the rules and iptables-save spell it.
 */
export function capturedServicePorts(state: Pick<MeshState, 'list' | 'endpoints'>, nodeName: string): CapturedServicePort[] {
  const out: CapturedServicePort[] = [];
  for (const service of state.list('service')) {
    const local = state.endpoints(service).some((w) => w.enrolled && w.record.node === nodeName);
    if (!local) continue;
    for (const vip of service.vips.map(canonicalIp)) {
      for (const p of service.ports) out.push({ vip, port: p.port });
    }
  }
  return out;
}
