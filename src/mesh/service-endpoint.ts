/**
 * VIP:port → one endpoint and its target port: the one choice the ztunnel's outbound
 * listener (15001, mesh clients), its inbound plaintext listener (15006, non-mesh
 * clients of a VIP captured on this node) and the waypoint (after its routes chose
 * the backend) make, so all refuse the same cases with the same words.
 */
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { ServicePort, ServiceRecord } from '../registry/types';
import type { HostPort } from '../lib/address';
import { PROXY_PORTS } from '../mesh/ports';
import type { EndpointPicker } from './load-balancer';

/** An endpoint traffic may be sent to: healthy, with an address. */
export function usableEndpoint(w: WorkloadView): boolean {
  return w.record.status === 'Healthy' && w.record.addresses.length > 0;
}

export type ServiceEndpointPick =
  | { ok: true; destination: WorkloadView; target: HostPort }
  | { ok: false; flag: 'NO_ROUTE' | 'NO_HEALTHY_UPSTREAM' | 'LOOP'; reason: string };

export type ServicePortCheck =
  | { ok: true; port: ServicePort }
  | { ok: false; flag: 'NO_ROUTE' | 'LOOP'; reason: string };

/**
 * The service port a VIP:port connection is for, refused when the service does not
 * expose it or maps it onto a proxy port. Also checked before a connection is sent to
 * a waypoint: the waypoint would refuse the same, one hop later and less clearly.
 */
export function servicePortFor(service: ServiceRecord, port: number): ServicePortCheck {
  const name = `${service.namespace}/${service.name}`;
  const sp = service.ports.find((p) => p.port === port);
  if (!sp) {
    return { ok: false, flag: 'NO_ROUTE', reason: `service ${name} has no port ${port} (ports: ${service.ports.map((p) => p.port).join(', ') || 'none'})` };
  }
  if (PROXY_PORTS.has(sp.targetPort)) {
    return { ok: false, flag: 'LOOP', reason: `refused to prevent a loop: service ${name} port ${sp.port} targets proxy port ${sp.targetPort}` };
  }
  return { ok: true, port: sp };
}

export function pickServiceEndpoint(state: Pick<MeshState, 'endpoints'>, service: ServiceRecord, port: number, lb: EndpointPicker): ServiceEndpointPick {
  return pickFromEndpoints(service, port, () => state.endpoints(service).filter(usableEndpoint), lb);
}

/**
 * The same choice from a list of usable endpoints the caller already has (the
 * waypoint listed them to check readiness while choosing a backend); `healthy` is
 * called only when the port is valid.
 */
export function pickFromEndpoints(service: ServiceRecord, port: number, healthyOf: () => readonly WorkloadView[], lb: EndpointPicker): ServiceEndpointPick {
  const sp = servicePortFor(service, port);
  if (!sp.ok) return sp;
  const healthy = healthyOf();
  if (healthy.length === 0) return { ok: false, flag: 'NO_HEALTHY_UPSTREAM', reason: `service ${service.namespace}/${service.name} has no healthy endpoint` };
  const destination = lb.pick(service, healthy);
  return { ok: true, destination, target: { ip: destination.record.addresses[0]!, port: sp.port.targetPort } };
}
