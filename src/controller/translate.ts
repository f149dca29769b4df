/**
 * Kubernetes objects → registry records. Pure: no I/O, no clock. Each function returns
 * undefined (with a reason for the log where useful) when the object has no registry
 * counterpart, so the caller's desired state simply lacks it and a stale record is deleted.
 * Istio's security.istio.io objects are translated in translate-istio.ts.
 */
import { isWeftError } from '../lib/errors';
import {
  ROOT_NAMESPACE, USE_WAYPOINT_LABEL,
  type AuthorizationPolicyRecord, type NamespaceRecord, type NodeRecord, type ServicePort, type ServiceRecord, type WorkloadRecord,
} from '../registry/types';
import { validateRecord } from '../registry/validate';
import type { K8sAuthorizationPolicy, K8sEndpointSlice, K8sNamespace, K8sNode, K8sPod, K8sService } from './k8s-types';

export type Skip = { skip: string };
export const isSkip = (v: unknown): v is Skip => typeof v === 'object' && v !== null && 'skip' in v;

export function nodeRecord(node: K8sNode): NodeRecord | Skip {
  const name = node.metadata.name ?? '';
  const address = node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  if (!address) return { skip: `node ${name} has no InternalIP address yet` };
  const out: NodeRecord = { name, address };
  const cidr = node.spec?.podCIDR ?? node.spec?.podCIDRs?.[0];
  if (cidr) out.podCidr = cidr;
  // Topology labels (zone, hostname) are what locality-aware consumers read, as in the lab.
  if (node.metadata.labels && Object.keys(node.metadata.labels).length > 0) out.labels = { ...node.metadata.labels };
  return out;
}

export function namespaceRecord(ns: K8sNamespace): NamespaceRecord {
  return { name: ns.metadata.name ?? '', labels: { ...(ns.metadata.labels ?? {}) } };
}

function podIps(pod: K8sPod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).filter(Boolean);
  if (ips.length === 0 && pod.status?.podIP) ips.push(pod.status.podIP);
  return ips;
}

/**
 * `notReady`: the pod is listed not-ready in some EndpointSlice. The pod's own Ready
 * condition covers most cases; the slices catch a pod the endpoints controller already
 * took out (e.g. terminating).
 */
export function workloadRecord(pod: K8sPod, opts: { notReady?: boolean } = {}): WorkloadRecord | Skip {
  const m = pod.metadata;
  const id = `pod ${m.namespace}/${m.name}`;
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { skip: `${id} has terminated (${phase})` };
  if (pod.spec?.hostNetwork) return { skip: `${id} uses hostNetwork` };
  const addresses = podIps(pod);
  if (addresses.length === 0) return { skip: `${id} has no IP yet` };
  if (!pod.spec?.nodeName) return { skip: `${id} is not scheduled` };
  const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const healthy = ready && phase === 'Running' && !m.deletionTimestamp && !opts.notReady;
  const out: WorkloadRecord = {
    uid: m.uid ?? `${m.namespace}/${m.name}`,
    name: m.name ?? '',
    namespace: m.namespace ?? '',
    node: pod.spec.nodeName,
    addresses,
    serviceAccount: pod.spec.serviceAccountName || 'default',
    labels: { ...(m.labels ?? {}) },
    status: healthy ? 'Healthy' : 'Unhealthy',
  };
  const ports = [...new Set((pod.spec.containers ?? []).flatMap((c) => (c.ports ?? [])
    .filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort)))].sort((a, b) => a - b);
  if (ports.length > 0) out.ports = ports;
  return out;
}

/** Pod uids listed not-ready in any of the slices. */
export function notReadyPods(slices: Iterable<K8sEndpointSlice>): Set<string> {
  const out = new Set<string>();
  for (const s of slices) {
    for (const ep of s.endpoints ?? []) {
      if (ep.targetRef?.kind !== 'Pod' || !ep.targetRef.uid) continue;
      // Per the API, a nil ready condition means unknown and is treated as ready.
      if (ep.conditions?.ready === false) out.add(ep.targetRef.uid);
    }
  }
  return out;
}

export interface ServiceTranslation {
  record?: ServiceRecord;
  skip?: string;
  warnings: string[];
}

/**
 * `pods`: the pods of the service's namespace, used to resolve a named targetPort.
 * The registry holds one numeric targetPort per port, so a name that resolves to
 * different numbers on different pods (or to none) drops that port with a warning.
 */
export function serviceRecord(svc: K8sService, pods: Iterable<K8sPod>, clusterDomain: string): ServiceTranslation {
  const m = svc.metadata;
  const id = `service ${m.namespace}/${m.name}`;
  const spec = svc.spec ?? {};
  if (spec.type === 'ExternalName') return { skip: `${id} is an ExternalName service`, warnings: [] };
  const warnings: string[] = [];
  const vips = (spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : [])).filter((ip) => ip && ip !== 'None');
  const selector = { ...(spec.selector ?? {}) };
  let selectedPods: K8sPod[] | undefined;
  // Only a named targetPort needs the pods: most services never pay for the scan.
  const selected = (): K8sPod[] => (selectedPods ??= [...pods].filter((p) => p.metadata.namespace === m.namespace &&
    Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v)));
  const ports: ServicePort[] = [];
  for (const p of spec.ports ?? []) {
    if ((p.protocol ?? 'TCP') !== 'TCP') continue;
    let target: number | undefined;
    if (p.targetPort === undefined) target = p.port;
    else if (typeof p.targetPort === 'number') target = p.targetPort;
    else if (/^\d+$/.test(p.targetPort)) target = Number(p.targetPort);
    else {
      const name = p.targetPort;
      const found = new Set(selected().flatMap((pod) => (pod.spec?.containers ?? []).flatMap((c) => (c.ports ?? [])
        .filter((cp) => cp.name === name).map((cp) => cp.containerPort))));
      if (found.size === 1) target = [...found][0];
      else {
        warnings.push(found.size === 0
          ? `${id} port ${p.port}: targetPort "${name}" names no container port of the selected pods; port skipped`
          : `${id} port ${p.port}: targetPort "${name}" resolves to different ports (${[...found].join(', ')}) on different pods; port skipped`);
        continue;
      }
    }
    const out: ServicePort = { port: p.port, targetPort: target! };
    if (p.name) out.name = p.name;
    if (p.appProtocol) out.appProtocol = p.appProtocol;
    ports.push(out);
  }
  const record: ServiceRecord = {
    name: m.name ?? '',
    namespace: m.namespace ?? '',
    hostname: `${m.name}.${m.namespace}.svc.${clusterDomain}`,
    vips,
    ports,
    selector,
  };
  // `none` is kept: it must override the namespace's label (MeshState.serviceWaypointName).
  const waypoint = m.labels?.[USE_WAYPOINT_LABEL];
  if (waypoint) record.waypoint = waypoint;
  return { record, warnings };
}

export type PolicyTranslation =
  | { ok: true; record: AuthorizationPolicyRecord }
  /** `candidate`: the record as far as it could be built, for the fail-closed stand-in. */
  | { ok: false; field: string; message: string; candidate: Record<string, unknown> };

/**
 * The CRD's spec: `action` (ALLOW|DENY), `rules` (the registry's rule shape), and
 * either `selector.matchLabels` (WORKLOAD_SELECTOR) or none (NAMESPACE; GLOBAL in
 * weft-system). An explicit `scope` overrides the derivation.
 */
export function policyRecord(obj: K8sAuthorizationPolicy): PolicyTranslation {
  const m = obj.metadata;
  const spec = obj.spec;
  const head = { name: m.name, namespace: m.namespace };
  if (typeof spec !== 'object' || spec === null) return { ok: false, field: 'spec', message: 'spec is required', candidate: head };
  // The selector as far as it reads: `matchLabels` of a selector that is otherwise
  // malformed still narrows a stand-in to (a superset of) the workloads meant.
  const sel = spec.selector as unknown;
  const selObj = typeof sel === 'object' && sel !== null && !Array.isArray(sel) ? sel as Record<string, unknown> : undefined;
  const selector = selObj?.matchLabels;
  const scope = spec.scope ?? (selector !== undefined ? 'WORKLOAD_SELECTOR' : m.namespace === ROOT_NAMESPACE ? 'GLOBAL' : 'NAMESPACE');
  // Built before any check, so every refusal below hands the stand-in the policy's own
  // scope and selector (policy-fallback.ts keeps them when they validate): a typo in a
  // selector-scoped DENY must not become a deny-all for the whole namespace.
  const standIn: Record<string, unknown> = { ...head, scope, action: spec.action };
  if (selector !== undefined) standIn.selector = selector;
  // Waypoint-bound: scope NAMESPACE, and the stand-in stays bound to the same targets.
  if (spec.targetRefs !== undefined) {
    standIn.targetRefs = spec.targetRefs;
    if (spec.scope === undefined) standIn.scope = 'NAMESPACE';
  }
  const known = new Set(['action', 'rules', 'selector', 'scope', 'targetRefs']);
  for (const k of Object.keys(spec)) {
    if (!known.has(k)) {
      return { ok: false, field: `spec.${k}`, message: `spec.${k} is not a field of AuthorizationPolicy (expected action, rules, selector, targetRefs, scope)`, candidate: standIn };
    }
  }
  if (sel !== undefined && (selObj === undefined || Object.keys(selObj).some((k) => k !== 'matchLabels'))) {
    return { ok: false, field: 'spec.selector', message: 'spec.selector must be {matchLabels: {...}}', candidate: standIn };
  }
  const candidate: Record<string, unknown> = { ...standIn, rules: spec.rules ?? [] };
  try {
    return { ok: true, record: validateRecord('policy', candidate, { unknownKeys: 'reject' }) };
  } catch (err) {
    if (!isWeftError(err, 'WEFT_REGISTRY_RECORD_INVALID')) throw err;
    const raw = String(err.details?.field ?? '');
    const field = raw === 'selector' ? 'spec.selector.matchLabels' : raw.startsWith('(') ? 'metadata' : `spec.${raw}`;
    let problem = err.message.replace(/^[^:]*: /, '').replace(/; fix the writer of this record$/, '');
    if (raw && problem.startsWith(raw)) problem = field + problem.slice(raw.length);
    return { ok: false, field, message: problem, candidate };
  }
}
