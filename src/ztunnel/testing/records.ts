/** Registry record builders for tests and benchmarks (short, with sane defaults). */
import type {
  AuthorizationPolicyRecord, NamespaceRecord, NodeRecord, PeerAuthenticationRecord, ServiceRecord, WorkloadRecord,
} from '../../registry/types';

export function nodeRecord(name: string, address: string): NodeRecord {
  return { name, address };
}

export function ambientNamespace(name: string): NamespaceRecord {
  return { name, labels: { 'weft.io/dataplane-mode': 'ambient' } };
}

export function plainNamespace(name: string): NamespaceRecord {
  return { name, labels: {} };
}

export function workloadRecord(p: {
  name: string; namespace: string; node: string; ip: string; sa?: string; labels?: Record<string, string>; healthy?: boolean;
}): WorkloadRecord {
  return {
    uid: `${p.namespace}/${p.name}`,
    name: p.name,
    namespace: p.namespace,
    node: p.node,
    addresses: [p.ip],
    serviceAccount: p.sa ?? p.name,
    labels: p.labels ?? { app: p.name },
    status: p.healthy === false ? 'Unhealthy' : 'Healthy',
  };
}

export function serviceRecord(p: {
  name: string; namespace: string; vip: string; port: number; targetPort: number; selector: Record<string, string>;
  loadBalancing?: ServiceRecord['loadBalancing'];
}): ServiceRecord {
  const s: ServiceRecord = {
    name: p.name,
    namespace: p.namespace,
    hostname: `${p.name}.${p.namespace}.svc.cluster.local`,
    vips: [p.vip],
    ports: [{ port: p.port, targetPort: p.targetPort }],
    selector: p.selector,
  };
  if (p.loadBalancing) s.loadBalancing = p.loadBalancing;
  return s;
}

export function policyRecord(p: Omit<AuthorizationPolicyRecord, 'scope'> & { scope?: AuthorizationPolicyRecord['scope'] }): AuthorizationPolicyRecord {
  return { scope: 'NAMESPACE', ...p };
}

export function peerAuth(namespace: string, mode: PeerAuthenticationRecord['mode'], name = 'default'): PeerAuthenticationRecord {
  return { name, namespace, mode };
}
