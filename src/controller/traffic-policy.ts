/**
 * TrafficPolicy (networking.weft.io/v1alpha1) on a cluster: the CRD object → the
 * `trafficpolicy` registry record, and the status written back on the object.
 *
 * Validation is src/resilience/validate.ts, the code `weft apply` runs, with unknown
 * fields dropped (the API server is the writer; a field of a newer Weft must not make
 * an older controller discard a policy). An invalid edit never removes the policy in
 * force: the registry keeps the last valid version (read back from the registry, so
 * a controller restart keeps it too) and the object's status says so; a policy that
 * was never valid is not mirrored at all (its Services keep the mechanisms' defaults).
 *
 * Status, after Gateway API policy attachment (GEP-713): `status.ancestors` has one
 * entry per target Service (controllerName weft.io/waypoint) with an Accepted condition
 * (reasons Accepted, Conflicted, TargetNotFound, Invalid), and `status.conditions` one
 * Accepted condition for the whole object (kubectl's printer column). Written by a merge
 * patch of the /status subresource only when it changed (ignoring lastTransitionTime).
 */
import { WEFT_CONTROLLER_NAME } from '../gateway/status';
import type { KubeClient } from '../k8s/client';
import type { Logger } from '../lib/log';
import { attachTrafficPolicies, targetStatuses, type TargetState } from '../resilience/attach';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION, TRAFFIC_POLICY_API_VERSION } from '../resilience/spec';
import { TRAFFIC_POLICY_KIND, validateTrafficPolicy } from '../resilience/validate';
import type { TrafficPolicyRecord } from '../registry/types';
import type { K8sGatewayAPIObject } from './k8s-types';
import { stableStringify } from './stable-json';
import { stampCondition, statusTime, StatusPatches } from './status-patch';

export const TRAFFIC_POLICY_PLURAL = 'trafficpolicies';
export const TRAFFIC_POLICY_PATH = `/apis/${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}/${TRAFFIC_POLICY_PLURAL}`;

export type K8sTrafficPolicy = K8sGatewayAPIObject;

export type TrafficPolicyTranslation =
  | { ok: true; record: TrafficPolicyRecord }
  /** `targets`: the Service names still readable, for the status entries. */
  | { ok: false; message: string; targets: string[] };

export function trafficPolicyRecord(obj: K8sTrafficPolicy): TrafficPolicyTranslation {
  // The list endpoint's items may lack apiVersion/kind; the informer knows them.
  const full = { ...obj, apiVersion: obj.apiVersion ?? TRAFFIC_POLICY_API_VERSION, kind: TRAFFIC_POLICY_KIND };
  try {
    const v = validateTrafficPolicy(full, { unknownKeys: 'drop' });
    // The API server always sets creationTimestamp; without one the epoch sorts it first, deterministically.
    return { ok: true, record: { name: v.name, namespace: v.namespace, creationTimestamp: v.creationTimestamp ?? new Date(0).toISOString(), spec: v.spec } };
  } catch (err) {
    const refs = obj.spec?.targetRefs;
    const targets = Array.isArray(refs)
      ? refs.map((r) => (typeof r === 'object' && r !== null ? (r as { name?: unknown }).name : undefined)).filter((n): n is string => typeof n === 'string' && n !== '')
      : [];
    return { ok: false, message: err instanceof Error ? err.message : String(err), targets: [...new Set(targets)] };
  }
}

/** One mirrored object: what it became, and for an invalid one whether a last good version stays in force. */
export interface TrafficPolicyOutcome {
  obj: K8sTrafficPolicy;
  result: TrafficPolicyTranslation;
  /** Invalid object: the registry keeps this last valid version. */
  held?: TrafficPolicyRecord;
}

export interface PolicyCondition { type: 'Accepted'; status: 'True' | 'False'; reason: TargetState | 'Invalid'; message: string }
export interface AncestorStatus {
  ancestorRef: { group: ''; kind: 'Service'; namespace: string; name: string };
  controllerName: string;
  conditions: PolicyCondition[];
}
export interface TrafficPolicyStatus { conditions: PolicyCondition[]; ancestors: AncestorStatus[] }

/**
 * The status each object should carry, keyed like the outcomes (`ns/name`). Winners
 * are decided over the records the registry will hold (valid ones and held last good
 * versions), the same rule the waypoint applies.
 */
export function desiredTrafficPolicyStatus(outcomes: ReadonlyMap<string, TrafficPolicyOutcome>,
  serviceExists: (namespace: string, name: string) => boolean): Map<string, TrafficPolicyStatus> {
  const inForce: TrafficPolicyRecord[] = [];
  for (const o of outcomes.values()) {
    const r = o.result.ok ? o.result.record : o.held;
    if (r) inForce.push(r);
  }
  const winners = attachTrafficPolicies(inForce);
  const out = new Map<string, TrafficPolicyStatus>();
  for (const [key, o] of outcomes) {
    const ns = o.obj.metadata.namespace ?? '';
    const ref = (name: string) => ({ group: '' as const, kind: 'Service' as const, namespace: ns, name });
    if (!o.result.ok) {
      const kept = o.held
        ? `the last valid version (targets ${o.held.spec.targetRefs.map((r) => r.name).join(', ')}) stays in force until it is fixed`
        : 'no valid version was ever mirrored, so none is in force: its Services keep the defaults';
      const c: PolicyCondition = { type: 'Accepted', status: 'False', reason: 'Invalid', message: `the policy is invalid: ${o.result.message}; ${kept}` };
      out.set(key, { conditions: [c], ancestors: o.result.targets.map((name) => ({ ancestorRef: ref(name), controllerName: WEFT_CONTROLLER_NAME, conditions: [c] })) });
      continue;
    }
    const targets = targetStatuses(o.result.record, winners, serviceExists);
    const ancestors = targets.map((s): AncestorStatus => ({
      ancestorRef: ref(s.ref.name), controllerName: WEFT_CONTROLLER_NAME,
      conditions: [{ type: 'Accepted', status: s.state === 'Accepted' ? 'True' : 'False', reason: s.state, message: s.message }],
    }));
    const bad = targets.find((s) => s.state !== 'Accepted');
    const summary: PolicyCondition = bad
      ? { type: 'Accepted', status: 'False', reason: bad.state, message: `not in force for Service ${ns}/${bad.ref.name}: ${bad.message}` }
      : { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'in force for every target Service' };
    out.set(key, { conditions: [summary], ancestors });
  }
  return out;
}

type K8sCondition = PolicyCondition & { observedGeneration?: number; lastTransitionTime?: string };

/** The status to write, or undefined when the object carries `want` already (conditions and observedGeneration). */
export function nextTrafficPolicyStatus(obj: K8sTrafficPolicy, want: TrafficPolicyStatus, now: string): unknown {
  const cur = (obj.status ?? {}) as { conditions?: K8sCondition[]; ancestors?: { ancestorRef: unknown; controllerName: string; conditions: K8sCondition[] }[] };
  const gen = obj.metadata.generation;
  const strip = (cs: K8sCondition[] | undefined, g?: number) => (cs ?? []).map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message, observedGeneration: g ?? c.observedGeneration }));
  const comparable = (s: { conditions?: K8sCondition[]; ancestors?: { ancestorRef: unknown; controllerName: string; conditions: K8sCondition[] }[] }, g?: number) =>
    stableStringify({ conditions: strip(s.conditions, g), ancestors: (s.ancestors ?? []).map((a) => ({ ancestorRef: a.ancestorRef, controllerName: a.controllerName, conditions: strip(a.conditions, g) })) });
  if (comparable(cur) === comparable(want, gen)) return undefined;
  const stamp = (c: PolicyCondition, prev: K8sCondition | undefined): K8sCondition => stampCondition(c, prev, gen, now);
  const prevAncestor = (name: string) => cur.ancestors?.find((a) => (a.ancestorRef as { name?: string }).name === name)?.conditions?.[0];
  return {
    conditions: want.conditions.map((c) => stamp(c, cur.conditions?.find((p) => p.type === c.type))),
    ancestors: want.ancestors.map((a) => ({ ...a, conditions: a.conditions.map((c) => stamp(c, prevAncestor(a.ancestorRef.name))) })),
  };
}

export class TrafficPolicyStatusWriter {
  private readonly patches: StatusPatches;

  constructor(client: KubeClient, logger: Logger, private readonly clock: () => Date = () => new Date()) {
    this.patches = new StatusPatches(client, logger, 'TrafficPolicy');
  }

  async report(outcomes: ReadonlyMap<string, TrafficPolicyOutcome>, serviceExists: (namespace: string, name: string) => boolean,
    mayWrite: () => boolean): Promise<void> {
    const wanted = desiredTrafficPolicyStatus(outcomes, serviceExists);
    const now = statusTime(this.clock());
    for (const [key, { obj }] of outcomes) {
      const want = wanted.get(key)!;
      const status = nextTrafficPolicyStatus(obj, want, now);
      const m = obj.metadata;
      if (status === undefined || this.patches.sentAlready(key, m.resourceVersion, want)) continue;
      if (!mayWrite()) return;
      await this.patches.send(key, `/apis/${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}/namespaces/${m.namespace}/${TRAFFIC_POLICY_PLURAL}/${m.name}/status`,
        m.resourceVersion, status, want);
    }
    this.patches.keepOnly((key) => outcomes.has(key));
  }
}
