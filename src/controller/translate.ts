/**
 * Kubernetes objects → registry records. Pure: no I/O, no clock. Each function returns
 * undefined (with a reason for the log where useful) when the object has no registry
 * counterpart, so the caller's desired state simply lacks it and a stale record is deleted.
 */
import { isWeftError } from '../lib/errors';
import {
  ROOT_NAMESPACE, USE_WAYPOINT_LABEL,
  type AuthorizationPolicyRecord, type NamespaceRecord, type NodeRecord, type PeerAuthenticationRecord,
  type ServicePort, type ServiceRecord, type WorkloadRecord,
} from '../registry/types';
import type { StringRule } from '../registry/checks';
import { L7_HEADER_VALUE, L7_STRING_FIELDS, validateRecord } from '../registry/validate';
import {
  ISTIO_ROOT_NAMESPACE, type K8sAuthorizationPolicy, type K8sEndpointSlice, type K8sPeerAuthentication, type K8sNamespace, type K8sNode, type K8sPod,
  type K8sService,
} from './k8s-types';

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

/**
 * Istio's AuthorizationPolicy (security.istio.io) → the registry's policy: the rules
 * through istioPolicyRules, an absent action is ALLOW (Istio's default), the rest as
 * for the security.weft.io CRD. A rule Weft cannot enforce makes the policy invalid,
 * with the action and selector as far as they read for the fail-closed stand-in, as
 * any other invalid policy; so does one in Istio's root namespace (istioRootRefusal).
 * Shared by the controller and `weft apply` on the lab.
 */
export function istioPolicyRecord(given: K8sAuthorizationPolicy, opts: IstioRootOptions = {}): PolicyTranslation {
  // Bound to Services or waypoints by targetRefs, a root-namespace policy is about
  // those objects of its own namespace (as in Istio): only the others are mesh-wide.
  const bound = given.spec?.targetRef !== undefined || given.spec?.targetRefs !== undefined;
  const obj = bound ? given : inWeftRoot(given, opts);
  const spec = obj.spec;
  if (typeof spec !== 'object' || spec === null) return policyRecord(obj);
  const action = spec.action ?? 'ALLOW';
  const { targetRef: _ref, targetRefs: _refs, provider: _provider, ...rest } = spec;
  const refs = istioTargetRefs(spec, obj.metadata.namespace);
  const rules = istioPolicyRules(spec.rules, { waypoint: refs.ok && refs.refs !== undefined });
  const root = istioRootRefusal(obj.metadata.namespace, 'AuthorizationPolicy', opts);
  const custom = action === 'CUSTOM'
    ? { field: 'spec.action', message: 'spec.action CUSTOM delegates to an external authorizer (spec.provider), which Weft does not have; use ALLOW, DENY or AUDIT' }
    : undefined;
  const boundTo = refs.ok && refs.refs !== undefined ? { targetRefs: refs.refs, scope: 'NAMESPACE' } : {};
  if (!rules.ok || root || !refs.ok || custom) {
    const why = custom ?? (!refs.ok ? refs : !rules.ok ? rules : root!);
    // CUSTOM denies where its authorizer would: the stand-in is a DENY, never an ALLOW.
    const head = policyRecord({ ...obj, spec: { ...rest, ...boundTo, action: custom ? 'DENY' : action, rules: [] } });
    return { ok: false, field: why.field, message: why.message, candidate: head.ok ? { ...head.record } : head.candidate };
  }
  return policyRecord({ ...obj, spec: { ...rest, ...boundTo, action, ...(spec.rules !== undefined ? { rules: rules.rules } : {}) } });
}

/**
 * Istio's `targetRef` / `targetRefs` → the registry's targetRefs: a Service (group "")
 * or a waypoint's Gateway (gateway.networking.k8s.io) of the policy's own namespace.
 * `refs` undefined: the policy has neither (a selector or namespace-wide policy).
 */
function istioTargetRefs(spec: Record<string, unknown>, namespace: string | undefined):
  { ok: true; refs?: { kind: 'Service' | 'Gateway'; name: string }[] } | { ok: false; field: string; message: string } {
  if (spec.targetRef !== undefined && spec.targetRefs !== undefined) {
    return { ok: false, field: 'spec.targetRef', message: 'spec.targetRef and spec.targetRefs are both set; use targetRefs only' };
  }
  const field = spec.targetRef !== undefined ? 'spec.targetRef' : 'spec.targetRefs';
  const raw = spec.targetRef !== undefined ? [spec.targetRef] : spec.targetRefs;
  if (raw === undefined) return { ok: true };
  if (!Array.isArray(raw) || raw.length === 0) return { ok: false, field, message: `${field} must be a non-empty list of {group, kind, name}` };
  if (spec.selector !== undefined) {
    return { ok: false, field: 'spec.selector', message: `spec.selector and ${field} are both set; a policy is bound either to workloads (selector) or to Services and waypoints (targetRefs)` };
  }
  const refs: { kind: 'Service' | 'Gateway'; name: string }[] = [];
  for (const [i, r] of raw.entries()) {
    const p = spec.targetRef !== undefined ? field : `${field}[${i}]`;
    if (typeof r !== 'object' || r === null) return { ok: false, field: p, message: `${p} must be an object {group, kind, name}` };
    const ref = r as Record<string, unknown>;
    const group = ref.group ?? '';
    const ok = (ref.kind === 'Service' && group === '') || (ref.kind === 'Gateway' && group === 'gateway.networking.k8s.io');
    if (!ok) {
      return { ok: false, field: p, message: `${p} is ${JSON.stringify({ group, kind: ref.kind ?? null })}; Weft binds AuthorizationPolicy to a Service (group "") or a waypoint Gateway (group gateway.networking.k8s.io)` };
    }
    if (ref.namespace !== undefined && ref.namespace !== namespace) {
      return { ok: false, field: `${p}.namespace`, message: `${p}.namespace must be the policy's own namespace ${namespace ?? ''} (or left out)` };
    }
    if (typeof ref.name !== 'string' || ref.name === '') return { ok: false, field: `${p}.name`, message: `${p}.name is required` };
    refs.push({ kind: ref.kind as 'Service' | 'Gateway', name: ref.name });
  }
  return { ok: true, refs };
}

export interface IstioRootOptions {
  /**
   * Istio's root namespace (the controller's --istio-root-namespace): its mesh-wide
   * objects are translated as if in Weft's root namespace, as Istio reads them. Left
   * out (`weft apply` on the lab, which has no Istio), objects in istio-system are
   * refused (istioRootRefusal).
   */
  istioRootNamespace?: string;
}

/**
 * A mesh-wide object of Istio's root namespace moved into Weft's (weft-system), where
 * the registry reads it the same way: selector-less is GLOBAL, a selector matches
 * workloads of every namespace. Its registry key becomes weft-system/<name>; a name
 * also used there by another policy fails closed as any shared name does (desired.ts).
 */
function inWeftRoot<T extends { metadata: { namespace?: string } }>(obj: T, opts: IstioRootOptions): T {
  const root = opts.istioRootNamespace;
  if (root === undefined || root === ROOT_NAMESPACE || obj.metadata.namespace !== root) return obj;
  return { ...obj, metadata: { ...obj.metadata, namespace: ROOT_NAMESPACE } };
}

/**
 * An Istio object in istio-system when no Istio root namespace is configured (`weft
 * apply` on the lab): there Istio applies it mesh-wide, Weft (whose root is
 * weft-system) only to that namespace. Accepting it would leave the mesh-wide DENY,
 * ALLOW or STRICT it was written for silently not in force.
 */
function istioRootRefusal(namespace: string | undefined, kind: string, opts: IstioRootOptions): { field: string; message: string } | undefined {
  if (opts.istioRootNamespace !== undefined || namespace !== ISTIO_ROOT_NAMESPACE) return undefined;
  return {
    field: 'metadata.namespace',
    message: `metadata.namespace is ${ISTIO_ROOT_NAMESPACE}, Istio's root namespace, where Istio applies this ${kind} mesh-wide; Weft's root namespace is ${ROOT_NAMESPACE}, so here it would hold for ${ISTIO_ROOT_NAMESPACE} only and is not in force mesh-wide; move it to ${ROOT_NAMESPACE} (the controller maps its --istio-root-namespace there)`,
  };
}

/**
 * What an invalid PeerAuthentication becomes: STRICT (plaintext refused) for the
 * workloads it names when its selector reads, else for its whole namespace. Dropping
 * it would fall back to a PERMISSIVE default and admit plaintext it was written to
 * refuse; STRICT can only narrow.
 */
export function peerAuthStandIn(given: K8sPeerAuthentication, opts: IstioRootOptions = {}): PeerAuthenticationRecord | undefined {
  // A mesh-wide one of Istio's root namespace: STRICT mesh-wide, as peerAuthRecord would place it.
  const obj = given.spec?.selector === undefined ? inWeftRoot(given, opts) : given;
  const m = obj.metadata;
  const matchLabels = obj.spec?.selector?.matchLabels;
  const head = { name: m.name, namespace: m.namespace, mode: 'STRICT' };
  for (const candidate of matchLabels !== undefined ? [{ ...head, selector: matchLabels }, head] : [head]) {
    try {
      return validateRecord('peerauth', candidate, { unknownKeys: 'reject' });
    } catch {
      // an unreadable selector: the whole namespace, below
    }
  }
  return undefined;
}

/** A translation that either gives the record or names the field at fault. */
export type Translation<R> = { ok: true; record: R } | { ok: false; field: string; message: string };

/**
 * PeerAuthentication (security.istio.io) → a peer authentication record:
 * `selector.matchLabels` and `mtls.mode` STRICT or PERMISSIVE. Weft has no
 * inheritance (UNSET), no DISABLE and no per-port modes; each is refused by name
 * rather than read as something weaker.
 */
export function peerAuthRecord(given: K8sPeerAuthentication, opts: IstioRootOptions = {}): Translation<PeerAuthenticationRecord> {
  // Only a selector-less one is mesh-wide in Istio's root namespace; one with a
  // selector names workloads of that namespace alone, so it stays there.
  const obj = given.spec?.selector === undefined ? inWeftRoot(given, opts) : given;
  const m = obj.metadata;
  const spec = obj.spec ?? {};
  const root = istioRootRefusal(m.namespace, 'PeerAuthentication', opts);
  if (root) return { ok: false, ...root };
  for (const k of Object.keys(spec)) {
    if (k === 'portLevelMtls') return { ok: false, field: 'spec.portLevelMtls', message: 'spec.portLevelMtls is not supported by Weft (one mode per workload); remove it' };
    if (k !== 'selector' && k !== 'mtls') return { ok: false, field: `spec.${k}`, message: `spec.${k} is not a field of PeerAuthentication (expected selector, mtls)` };
  }
  const mode = spec.mtls?.mode;
  if (mode !== 'STRICT' && mode !== 'PERMISSIVE') {
    return { ok: false, field: 'spec.mtls.mode', message: `spec.mtls.mode is ${JSON.stringify(mode ?? null)}; Weft supports STRICT and PERMISSIVE (no UNSET inheritance, no DISABLE)` };
  }
  const sel = spec.selector;
  if (sel !== undefined && (typeof sel !== 'object' || sel === null || Object.keys(sel).some((k) => k !== 'matchLabels'))) {
    return { ok: false, field: 'spec.selector', message: 'spec.selector must be {matchLabels: {...}}' };
  }
  const candidate: Record<string, unknown> = { name: m.name, namespace: m.namespace, mode };
  if (sel?.matchLabels !== undefined) candidate.selector = sel.matchLabels;
  return validated('peerauth', candidate);
}

/** Registry validation with its field named as in the Kubernetes object (name → metadata.name, selector → spec.selector.matchLabels). */
function validated<K extends 'peerauth'>(kind: K, candidate: Record<string, unknown>): Translation<ReturnType<typeof validateRecord<K>>> {
  try {
    return { ok: true, record: validateRecord(kind, candidate, { unknownKeys: 'reject' }) };
  } catch (err) {
    if (!isWeftError(err, 'WEFT_REGISTRY_RECORD_INVALID')) throw err;
    const raw = String(err.details?.field ?? '');
    const field = raw === 'name' || raw === 'namespace' ? `metadata.${raw}` : raw.startsWith('selector') ? `spec.selector.matchLabels${raw.slice('selector'.length)}`
      : raw === 'mode' ? 'spec.mtls.mode' : raw;
    const problem = err.message.replace(/^[^:]*: /, '').replace(/; fix the writer of this record$/, '');
    return { ok: false, field, message: raw && problem.startsWith(raw) ? field + problem.slice(raw.length) : problem };
  }
}

/**
 * Istio's AuthorizationPolicy rule syntax (security.istio.io: `from`, `to`, `when`) →
 * the registry's rules, L4 attributes only, as Istio's ztunnel enforces them: a rule's
 * `from` becomes one clause whose matches are its sources (any may hold), `to` one
 * clause of its operations, each `when` condition one clause; the clauses must all
 * hold. Principals gain the `spiffe://` prefix Istio leaves out. What an L4 proxy
 * cannot check (methods, paths, hosts, request principals, wildcards) is refused by
 * field rather than dropped: dropping it would widen an ALLOW or narrow a DENY.
 */
export function istioPolicyRules(rules: unknown, opts: { waypoint?: boolean } = {}): { ok: true; rules: unknown[] } | { ok: false; field: string; message: string } {
  try {
    if (rules === undefined || rules === null) return { ok: true, rules: [] };
    return { ok: true, rules: list(rules, 'spec.rules').map((r, i) => istioRule(r, `spec.rules[${i}]`, opts.waypoint ?? false)) };
  } catch (err) {
    if (err instanceof IstioFieldError) return { ok: false, field: err.field, message: `${err.field} ${err.problem}` };
    throw err;
  }
}

class IstioFieldError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`${field} ${problem}`);
  }
}

/**
 * Istio enforces an L7 rule on a policy without targetRefs nowhere in ambient mode, and
 * says nothing (users lose hours to it): Weft refuses it and says what to do instead.
 */
const L7_ONLY = 'is an L7 attribute; without targetRefs this AuthorizationPolicy is enforced at L4 by the ztunnel, which cannot check it. '
  + 'Put a waypoint in front of the workloads (a waypoint Gateway; on the lab: weft waypoint add <namespace>/<name> --node <node>, then weft namespace use-waypoint <namespace> <name>) '
  + 'and bind the policy with targetRefs: [{group: "", kind: Service, name: <service>}] instead of selector';
const NO_JWT = 'needs request authentication (JWT), which Weft does not have; remove it';

function obj(v: unknown, path: string, known: readonly string[], l7: readonly string[] = []): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new IstioFieldError(path, 'must be an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k === 'requestPrincipals' || k === 'notRequestPrincipals') throw new IstioFieldError(`${path}.${k}`, NO_JWT);
    if (l7.includes(k)) throw new IstioFieldError(`${path}.${k}`, L7_ONLY);
    if (!known.includes(k)) throw new IstioFieldError(`${path}.${k}`, `is not a field Weft reads here (expected ${known.join(', ')})`);
  }
  return o;
}

function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new IstioFieldError(path, 'must be a list');
  return v;
}

function strings(v: unknown, path: string, map: (s: string) => string = (s) => s): string[] {
  return list(v, path).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new IstioFieldError(`${path}[${i}]`, 'must be a non-empty string');
    if (x.includes('*')) throw new IstioFieldError(`${path}[${i}]`, `is ${JSON.stringify(x)}: wildcards are not supported by Weft; list the exact values`);
    return map(x);
  });
}

function ports(v: unknown, path: string): number[] {
  return strings(v, path).map((s, i) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new IstioFieldError(`${path}[${i}]`, `is ${JSON.stringify(s)}: must be a port number 1-65535`);
    return n;
  });
}

const spiffe = (p: string): string => (p.startsWith('spiffe://') ? p : `spiffe://${p}`);

/** L7 values take Istio's string forms (exact, `prefix*`, `*suffix`, `*`), checked as the registry checks them (`rule`). */
function patterns(v: unknown, path: string, rule: StringRule = L7_STRING_FIELDS.hosts): string[] {
  return list(v, path).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new IstioFieldError(`${path}[${i}]`, 'must be a non-empty string');
    const problem = rule(x);
    if (problem) throw new IstioFieldError(`${path}[${i}]`, problem);
    return x;
  });
}
const pathPatterns = (v: unknown, p: string) => patterns(v, p, L7_STRING_FIELDS.paths);

/** Istio source field → registry match field (and how to read its values). */
const SOURCE_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  principals: ['principals', (v, p) => strings(v, p, spiffe)],
  notPrincipals: ['notPrincipals', (v, p) => strings(v, p, spiffe)],
  namespaces: ['namespaces', strings],
  notNamespaces: ['notNamespaces', strings],
  ipBlocks: ['sourceIps', strings],
  notIpBlocks: ['notSourceIps', strings],
  remoteIpBlocks: ['sourceIps', strings],
  notRemoteIpBlocks: ['notSourceIps', strings],
  serviceAccounts: ['serviceAccounts', strings],
  notServiceAccounts: ['notServiceAccounts', strings],
};
const OPERATION_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  ports: ['destinationPorts', ports],
  notPorts: ['notDestinationPorts', ports],
};
/** Read only for a waypoint-bound policy (targetRefs). */
const L7_OPERATION_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  methods: ['methods', patterns],
  notMethods: ['notMethods', patterns],
  paths: ['paths', pathPatterns],
  notPaths: ['notPaths', pathPatterns],
  hosts: ['hosts', patterns],
  notHosts: ['notHosts', patterns],
};
const REQUEST_HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;
const WHEN_KEYS: Record<string, [string, string, (v: unknown, p: string) => unknown[]]> = {
  'source.ip': ['sourceIps', 'notSourceIps', strings],
  'remote.ip': ['sourceIps', 'notSourceIps', strings],
  'source.namespace': ['namespaces', 'notNamespaces', strings],
  'source.principal': ['principals', 'notPrincipals', (v, p) => strings(v, p, spiffe)],
  'destination.ip': ['destinationIps', 'notDestinationIps', strings],
  'destination.port': ['destinationPorts', 'notDestinationPorts', ports],
};

function match(o: Record<string, unknown>, path: string, fields: typeof SOURCE_FIELDS): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [k, v] of Object.entries(o)) {
    const [field, read] = fields[k]!;
    out[field] = [...(out[field] ?? []), ...read(v, `${path}.${k}`)];
  }
  return out;
}

function istioRule(v: unknown, path: string, waypoint: boolean): { clauses: { matches: Record<string, unknown[]>[] }[] } {
  const r = obj(v, path, ['from', 'to', 'when']);
  const clauses: { matches: Record<string, unknown[]>[] }[] = [];
  if (r.from !== undefined) {
    clauses.push({
      matches: list(r.from, `${path}.from`).map((f, i) => {
        const p = `${path}.from[${i}]`;
        const src = obj(obj(f, p, ['source']).source, `${p}.source`, Object.keys(SOURCE_FIELDS));
        return match(src, `${p}.source`, SOURCE_FIELDS);
      }),
    });
  }
  if (r.to !== undefined) {
    clauses.push({
      matches: list(r.to, `${path}.to`).map((t, i) => {
        const p = `${path}.to[${i}]`;
        const fields = waypoint ? { ...OPERATION_FIELDS, ...L7_OPERATION_FIELDS } : OPERATION_FIELDS;
        const op = obj(obj(t, p, ['operation']).operation, `${p}.operation`, Object.keys(fields), waypoint ? [] : Object.keys(L7_OPERATION_FIELDS));
        return match(op, `${p}.operation`, fields);
      }),
    });
  }
  if (r.when !== undefined) {
    list(r.when, `${path}.when`).forEach((w, i) => {
      const p = `${path}.when[${i}]`;
      const c = obj(w, p, ['key', 'values', 'notValues']);
      const header = typeof c.key === 'string' ? REQUEST_HEADER_KEY.exec(c.key) : null;
      if (header) {
        if (!waypoint) throw new IstioFieldError(`${p}.key`, `${c.key} ${L7_ONLY}`);
        if (c.values === undefined && c.notValues === undefined) throw new IstioFieldError(p, 'needs values or notValues');
        const name = header[1]!.toLowerCase();
        const m: Record<string, unknown[]> = {};
        if (c.values !== undefined) m.requestHeaders = [{ name, values: patterns(c.values, `${p}.values`, L7_HEADER_VALUE) }];
        if (c.notValues !== undefined) m.notRequestHeaders = [{ name, values: patterns(c.notValues, `${p}.notValues`, L7_HEADER_VALUE) }];
        clauses.push({ matches: [m] });
        return;
      }
      const spec = typeof c.key === 'string' ? WHEN_KEYS[c.key] : undefined;
      if (!spec) {
        const l7 = waypoint ? ', request.headers[<name>]' : ' (L4 attributes; request.headers[<name>] on a policy bound with targetRefs)';
        throw new IstioFieldError(`${p}.key`, `is ${JSON.stringify(c.key ?? null)}; Weft reads ${Object.keys(WHEN_KEYS).join(', ')}${l7}`);
      }
      const [field, notField, read] = spec;
      if (c.values === undefined && c.notValues === undefined) throw new IstioFieldError(p, 'needs values or notValues');
      const m: Record<string, unknown[]> = {};
      if (c.values !== undefined) m[field] = read(c.values, `${p}.values`);
      if (c.notValues !== undefined) m[notField] = read(c.notValues, `${p}.notValues`);
      clauses.push({ matches: [m] });
    });
  }
  return { clauses };
}
