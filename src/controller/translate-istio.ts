/**
 * Istio's security.istio.io objects → registry records: AuthorizationPolicy (its rules
 * through istioPolicyRules, translate-istio-rules.ts; its targetRefs) and
 * PeerAuthentication, with Istio's root namespace mapped onto Weft's. Pure, as
 * translate.ts; shared by the controller and `weft apply` on the lab.
 */
import { isWeftError } from '../lib/errors';
import { ROOT_NAMESPACE, type PeerAuthenticationRecord } from '../registry/types';
import { validateRecord } from '../registry/validate';
import { ISTIO_ROOT_NAMESPACE, type K8sAuthorizationPolicy, type K8sPeerAuthentication } from './k8s-types';
import { policyRecord, type PolicyTranslation } from './translate';
import { istioPolicyRules } from './translate-istio-rules';

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
