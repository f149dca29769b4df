/**
 * The registry the API server's view implies: a pure function of the informer caches.
 * The controller recomputes it per tick and writes only the difference, which makes a
 * restart, a relist or a missed event converge the same way as a normal update.
 */
import { recordKey, type Kind, type RecordsByKind } from '../registry/types';
import { validateRecord } from '../registry/validate';
import type { K8sAuthorizationPolicy, K8sEndpointSlice, K8sNamespace, K8sNode, K8sPod, K8sService } from './k8s-types';
import {
  isSkip, namespaceRecord, nodeRecord, notReadyPods, policyRecord, serviceRecord, workloadRecord, type PolicyTranslation,
} from './translate';

/** The kinds the controller owns: records of these kinds that the API lacks are deleted. */
export const MIRRORED_KINDS = ['node', 'namespace', 'workload', 'service', 'policy'] as const satisfies readonly Kind[];
export type MirroredKind = typeof MIRRORED_KINDS[number];

export interface ApiView {
  nodes: K8sNode[];
  namespaces: K8sNamespace[];
  pods: K8sPod[];
  services: K8sService[];
  endpointSlices: K8sEndpointSlice[];
  policies: K8sAuthorizationPolicy[];
}

export interface DesiredEntry<K extends Kind = Kind> {
  kind: K;
  key: string;
  record: RecordsByKind[K];
  json: string;
}

export interface DesiredState {
  /** `kind\0key` → entry. */
  records: Map<string, DesiredEntry>;
  /** Things skipped for a reason worth a log line (not routine ones like a pod without IP). */
  warnings: string[];
  /** Per AuthorizationPolicy `ns/name`: accepted or why not. */
  policies: Map<string, { obj: K8sAuthorizationPolicy; result: PolicyTranslation }>;
}

export const entryId = (kind: Kind, key: string): string => `${kind}\0${key}`;

export function computeDesired(view: ApiView, opts: { clusterDomain: string }): DesiredState {
  const records = new Map<string, DesiredEntry>();
  const warnings: string[] = [];
  const add = <K extends Kind>(kind: K, record: RecordsByKind[K]): void => {
    let checked: RecordsByKind[K];
    try {
      checked = validateRecord(kind, record, { unknownKeys: 'reject' });
    } catch (err) {
      warnings.push((err as Error).message);
      return;
    }
    const key = recordKey(kind, checked);
    records.set(entryId(kind, key), { kind, key, record: checked, json: JSON.stringify(checked) } as DesiredEntry);
  };
  for (const n of view.nodes) {
    const r = nodeRecord(n);
    if (isSkip(r)) warnings.push(r.skip);
    else add('node', r);
  }
  for (const ns of view.namespaces) add('namespace', namespaceRecord(ns));
  const notReady = notReadyPods(view.endpointSlices);
  const podsByNs = new Map<string, K8sPod[]>();
  for (const p of view.pods) {
    const ns = p.metadata.namespace ?? '';
    if (!podsByNs.has(ns)) podsByNs.set(ns, []);
    podsByNs.get(ns)!.push(p);
    const r = workloadRecord(p, { notReady: notReady.has(p.metadata.uid ?? '') });
    if (!isSkip(r)) add('workload', r);
  }
  for (const s of view.services) {
    const t = serviceRecord(s, podsByNs.get(s.metadata.namespace ?? '') ?? [], opts.clusterDomain);
    warnings.push(...t.warnings);
    if (t.record) add('service', t.record);
  }
  const policies = new Map<string, { obj: K8sAuthorizationPolicy; result: PolicyTranslation }>();
  for (const p of view.policies) {
    const result = policyRecord(p);
    policies.set(`${p.metadata.namespace}/${p.metadata.name}`, { obj: p, result });
    if (result.ok) add('policy', result.record);
    else warnings.push(`AuthorizationPolicy ${p.metadata.namespace}/${p.metadata.name} is invalid and skipped: ${result.message}`);
  }
  return { records, warnings, policies };
}
