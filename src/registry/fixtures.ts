/**
 * Record builders with sensible defaults, for tests, the lab and the bench. Each takes
 * the fields that matter to the caller and fills in the rest, so a test states only
 * what it is about.
 */
import {
  DATAPLANE_MODE_AMBIENT,
  DATAPLANE_MODE_LABEL,
  type AuthorizationPolicyRecord,
  type Labels,
  type NamespaceRecord,
  type NodeRecord,
  type PeerAuthenticationRecord,
  type ServiceRecord,
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
