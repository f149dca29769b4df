/**
 * Which AuthorizationPolicies and which PeerAuthentication mode apply to a workload:
 * MeshState's policy records indexed by namespace, and the selection rules (Istio's
 * scopes and precedence) over them. The records live in MeshState's stores; this
 * keeps them and its indexes in step.
 */
import { labelsMatch, type WorkloadView } from './enrolment';
import { NamespacedStore, compareText } from './indexes';
import {
  ROOT_NAMESPACE, type AuthorizationPolicyRecord, type Labels, type PeerAuthenticationMode, type PeerAuthenticationRecord,
} from './types';

export class PolicyIndex {
  private readonly policies: NamespacedStore<AuthorizationPolicyRecord>;
  private readonly peerAuths: NamespacedStore<PeerAuthenticationRecord>;

  constructor(policies: Map<string, AuthorizationPolicyRecord>, peerAuths: Map<string, PeerAuthenticationRecord>) {
    this.policies = new NamespacedStore(policies);
    this.peerAuths = new NamespacedStore(peerAuths);
  }

  putPolicy(key: string, p: AuthorizationPolicyRecord): void {
    this.policies.put(key, p);
  }

  deletePolicy(key: string): void {
    this.policies.delete(key);
  }

  putPeerAuth(key: string, p: PeerAuthenticationRecord): void {
    this.peerAuths.put(key, p);
  }

  deletePeerAuth(key: string): void {
    this.peerAuths.delete(key);
  }

  /** Drops the indexes (MeshState clears the records). */
  clear(): void {
    this.policies.clear();
    this.peerAuths.clear();
  }

  /**
   * Authorization policies that apply to `w`: GLOBAL ones (root namespace), NAMESPACE
   * ones of its namespace, and WORKLOAD_SELECTOR ones matching its labels — in its own
   * namespace, or in the root namespace where, as in Istio, a selector applies mesh-wide.
   * Sorted by namespace/name so evaluation order and logs are stable.
   */
  policiesFor(w: WorkloadView): AuthorizationPolicyRecord[] {
    const ns = w.record.namespace;
    const out: AuthorizationPolicyRecord[] = [];
    const consider = (policyNs: string) => {
      for (const p of this.policies.in(policyNs)) {
        // Bound with targetRefs: the waypoint enforces it (waypointPolicies), not the ztunnel.
        if (p.targetRefs) continue;
        const applies =
          (p.scope === 'GLOBAL' && policyNs === ROOT_NAMESPACE) ||
          (p.scope === 'NAMESPACE' && policyNs === ns) ||
          (p.scope === 'WORKLOAD_SELECTOR' && p.selector !== undefined &&
            Object.keys(p.selector).length > 0 && labelsMatch(p.selector, w.record.labels));
        if (applies) out.push(p);
      }
    };
    consider(ns);
    if (ns !== ROOT_NAMESPACE) consider(ROOT_NAMESPACE);
    return out.sort((a, b) => compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  }

  /**
   * Waypoint-bound policies of `namespace` (those with targetRefs), sorted by name.
   * The waypoint picks the ones naming the Service or its own Gateway.
   */
  waypointPolicies(namespace: string): AuthorizationPolicyRecord[] {
    return this.policies.in(namespace).filter((p) => p.targetRefs !== undefined)
      .sort((a, b) => compareText(a.name, b.name));
  }

  /**
   * The most specific PeerAuthentication wins: one in the workload's namespace whose
   * selector matches it, else a selector-less one of its namespace, else a
   * selector-less one of the root namespace (mesh-wide); PERMISSIVE when none. Two at
   * the same level that disagree resolve to STRICT: refusing plaintext is the safe
   * reading of a conflict.
   */
  peerAuthModeFor(w: WorkloadView): PeerAuthenticationMode {
    const ns = w.record.namespace;
    const own = this.peerAuths.in(ns);
    const selected = own.filter((p) => hasSelector(p.selector) && labelsMatch(p.selector!, w.record.labels));
    if (selected.length > 0) return strictest(selected);
    const namespaceWide = own.filter((p) => !hasSelector(p.selector));
    if (namespaceWide.length > 0) return strictest(namespaceWide);
    if (ns !== ROOT_NAMESPACE) {
      const mesh = this.peerAuths.in(ROOT_NAMESPACE).filter((p) => !hasSelector(p.selector));
      if (mesh.length > 0) return strictest(mesh);
    }
    return 'PERMISSIVE';
  }
}

function hasSelector(selector: Labels | undefined): boolean {
  return selector !== undefined && Object.keys(selector).length > 0;
}

function strictest(ps: PeerAuthenticationRecord[]): PeerAuthenticationMode {
  return ps.some((p) => p.mode === 'STRICT') ? 'STRICT' : 'PERMISSIVE';
}
