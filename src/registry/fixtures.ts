/**
 * Record builders with sensible defaults, for tests, the lab and the bench. Each takes
 * the fields that matter to the caller and fills in the rest, so a test states only
 * what it is about.
 */
import { GATEWAY_NAME_LABEL } from '../gateway/types';
import {
  DATAPLANE_MODE_AMBIENT,
  DATAPLANE_MODE_LABEL,
  DATAPLANE_MODE_NONE,
  type AuthorizationPolicyRecord,
  type HTTPRouteRecord,
  type Labels,
  type NamespaceRecord,
  type NodeRecord,
  type PeerAuthenticationRecord,
  type ServiceRecord,
  type TrafficPolicyRecord,
  type WaypointRecord,
  type WorkloadRecord,
} from './types';

export function nodeRecord(name: string, address: string, extra: Partial<NodeRecord> = {}): NodeRecord {
  return { name, address, ...extra };
}

export function namespaceRecord(name: string, labels: Labels = {}): NamespaceRecord {
  return { name, labels };
}

/** A namespace enrolled in the mesh (`weft.io/dataplane-mode=ambient`). */
export function ambientNamespace(name: string, labels: Labels = {}): NamespaceRecord {
  return { name, labels: { [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_AMBIENT, ...labels } };
}

export function workloadRecord(
  w: Pick<WorkloadRecord, 'namespace' | 'name' | 'node'> & Partial<WorkloadRecord>,
): WorkloadRecord {
  return {
    uid: `${w.namespace}/${w.name}`,
    addresses: [],
    serviceAccount: 'default',
    labels: {},
    status: 'Healthy',
    ...w,
  };
}

export function serviceRecord(
  s: Pick<ServiceRecord, 'namespace' | 'name'> & Partial<ServiceRecord>,
): ServiceRecord {
  return {
    hostname: `${s.name}.${s.namespace}.svc.cluster.local`,
    vips: [],
    ports: [{ port: 80, targetPort: 8080 }],
    selector: { app: s.name },
    ...s,
  };
}

export function policyRecord(
  p: Pick<AuthorizationPolicyRecord, 'namespace' | 'name'> & Partial<AuthorizationPolicyRecord>,
): AuthorizationPolicyRecord {
  return { scope: 'NAMESPACE', action: 'ALLOW', rules: [], ...p };
}

export function peerAuthRecord(
  p: Pick<PeerAuthenticationRecord, 'namespace' | 'name'> & Partial<PeerAuthenticationRecord>,
): PeerAuthenticationRecord {
  return { mode: 'STRICT', ...p };
}

/** A waypoint of the kind `weft waypoint add` writes: serving services, service account = its name. */
export function waypointRecord(w: Pick<WaypointRecord, 'namespace' | 'name'> & Partial<WaypointRecord>): WaypointRecord {
  return { serviceAccount: w.name, for: 'service', ...w };
}

/** One pod of a waypoint: labelled with its Gateway's name, never enrolled itself. */
export function waypointPod(
  wp: Pick<WaypointRecord, 'namespace' | 'name' | 'serviceAccount'>,
  w: Pick<WorkloadRecord, 'name' | 'node'> & Partial<WorkloadRecord>,
): WorkloadRecord {
  return workloadRecord({
    namespace: wp.namespace,
    serviceAccount: wp.serviceAccount,
    ...w,
    labels: { [GATEWAY_NAME_LABEL]: wp.name, [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE, ...w.labels },
  });
}

/** An HTTPRoute attached to Service `service` of the route's namespace, with one rule sending everything to `backends`. */
export function httpRouteRecord(
  r: Pick<HTTPRouteRecord, 'namespace' | 'name'> & Partial<HTTPRouteRecord>,
  service: string,
  backends: { name: string; port: number; weight?: number }[] = [{ name: service, port: 80 }],
): HTTPRouteRecord {
  return {
    creationTimestamp: '2026-11-30T12:00:00Z',
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: service }],
      hostnames: [],
      rules: [{
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
        filters: [],
        backendRefs: backends.map((b) => ({ group: '', kind: 'Service', name: b.name, port: b.port, weight: b.weight ?? 1, filters: [] })),
      }],
    },
    ...r,
  };
}

/** A TrafficPolicy on `services` (default: one named like the policy) with the given sections; no section means every default. */
export function trafficPolicyRecord(
  r: Pick<TrafficPolicyRecord, 'namespace' | 'name'> & Partial<Omit<TrafficPolicyRecord, 'spec'>>,
  services: string[] = [r.name],
  sections: Omit<TrafficPolicyRecord['spec'], 'targetRefs'> = {},
): TrafficPolicyRecord {
  return {
    creationTimestamp: '2026-11-30T12:00:00Z',
    ...r,
    spec: { targetRefs: services.map((name) => ({ group: '', kind: 'Service', name })), ...sections },
  };
}
