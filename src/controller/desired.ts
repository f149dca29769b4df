/**
 * The registry the API server's view implies: a pure function of the informer caches.
 * The controller recomputes it per tick and writes only the difference, which makes a
 * restart, a relist or a missed event converge the same way as a normal update.
 */
import { failClosedPolicy, heldText, isValidVersion, keepLastGood, withoutMarker } from '../registry/policy-fallback';
import {
  recordKey, type AuthorizationPolicyRecord, type Kind, type PolicyInvalidState, type RecordsByKind, type TrafficPolicyRecord,
} from '../registry/types';
import { validateRecord } from '../registry/validate';
import { stableStringify } from './stable-json';
import {
  AUTHZ_GROUP, ISTIO_SECURITY_GROUP,
  type K8sAuthorizationPolicy, type K8sEndpointSlice, type K8sGatewayAPIObject, type K8sNamespace, type K8sNode, type K8sPeerAuthentication, type K8sPod,
  type K8sService,
} from './k8s-types';
import { routeRecord, waypointRecord, type RouteTranslation, type WaypointTranslation } from './translate-gateway';
import { trafficPolicyRecord, type K8sTrafficPolicy, type TrafficPolicyOutcome } from './traffic-policy';
import {
  isSkip, namespaceRecord, nodeRecord, notReadyPods, policyRecord, serviceRecord, workloadRecord, type PolicyTranslation,
} from './translate';
import { istioPolicyRecord, peerAuthRecord, peerAuthStandIn } from './translate-istio';

export type PolicyGroup = typeof AUTHZ_GROUP | typeof ISTIO_SECURITY_GROUP;

/** The kinds the controller owns: records of these kinds that the API lacks are deleted. */
export const MIRRORED_KINDS = ['node', 'namespace', 'workload', 'service', 'policy', 'peerauth', 'waypoint', 'httproute', 'grpcroute', 'trafficpolicy'] as const satisfies readonly Kind[];
export type MirroredKind = typeof MIRRORED_KINDS[number];

export interface ApiView {
  nodes: K8sNode[];
  namespaces: K8sNamespace[];
  pods: K8sPod[];
  services: K8sService[];
  endpointSlices: K8sEndpointSlice[];
  /** security.weft.io AuthorizationPolicies. */
  policies: K8sAuthorizationPolicy[];
  /** security.istio.io AuthorizationPolicies and PeerAuthentications; empty while Istio's CRDs are not installed. */
  istioPolicies?: K8sAuthorizationPolicy[];
  peerAuths?: K8sPeerAuthentication[];
  /** Gateway API; empty while its CRDs are not installed. */
  httpRoutes?: K8sGatewayAPIObject[];
  grpcRoutes?: K8sGatewayAPIObject[];
  gateways?: K8sGatewayAPIObject[];
  /** networking.weft.io TrafficPolicies; empty while Weft's CRD is not installed. */
  trafficPolicies?: K8sTrafficPolicy[];
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
  /** Per AuthorizationPolicy, accepted or why not: security.weft.io ones by `ns/name`, Istio's by `security.istio.io ns/name`. */
  policies: Map<string, PolicyOutcome>;
  /** Per route `Kind ns/name` (HTTPRoute and GRPCRoute): the object and its translation, for route status. */
  routes: Map<string, { obj: K8sGatewayAPIObject; kind: 'HTTPRoute' | 'GRPCRoute'; result: RouteTranslation }>;
  /** Per Gateway of class weft-waypoint `ns/name`: the object and its translation, for the deployment and status. */
  gateways: Map<string, { obj: K8sGatewayAPIObject; result: Exclude<WaypointTranslation, { foreign: true }> }>;
  /** Per TrafficPolicy `ns/name`: the object, its translation and any last good version kept, for status. */
  trafficPolicies: Map<string, TrafficPolicyOutcome>;
}

export interface PolicyOutcome {
  obj: K8sAuthorizationPolicy;
  /** The API group it came from (its status is written there). */
  group: PolicyGroup;
  result: PolicyTranslation;
  /** For an invalid object: what the registry holds instead (policy-fallback.ts). */
  held?: PolicyInvalidState;
  /** For an invalid object: what is enforced meanwhile, in words (heldText), for the log and the object's status. */
  enforced?: string;
}

export interface DesiredOptions {
  clusterDomain: string;
  memo?: TranslationMemo;
  /**
   * The policy record the registry holds now under `ns/name`, if any: an invalid
   * object keeps it (when it is a valid version) instead of being dropped. Without it
   * an invalid object is a fail-closed stand-in.
   */
  heldPolicy?: (key: string) => AuthorizationPolicyRecord | undefined;
  /** Istio's root namespace: its mesh-wide Istio-group policies are Weft's root namespace's (translate-istio.ts inWeftRoot). */
  istioRootNamespace?: string;
  /** The TrafficPolicy record the registry holds now under `ns/name`: an invalid edit keeps it in force. */
  heldTrafficPolicy?: (key: string) => TrafficPolicyRecord | undefined;
}

export const entryId = (kind: Kind, key: string): string => `${kind}\0${key}`;

/**
 * Validated entries per translated record, keyed by the Kubernetes object (informer
 * caches replace an object on every change, so identity means "unchanged"). Saves the
 * validation and serialisation of every unchanged object on every tick.
 */
export type TranslationMemo = WeakMap<object, { tag: string; entry: DesiredEntry | { error: string } }>;

export function computeDesired(view: ApiView, opts: DesiredOptions): DesiredState {
  const records = new Map<string, DesiredEntry>();
  const warnings: string[] = [];
  const memo = opts.memo;
  const check = <K extends Kind>(kind: K, record: RecordsByKind[K]): DesiredEntry | { error: string } => {
    try {
      const checked = validateRecord(kind, record, { unknownKeys: 'reject' });
      const key = recordKey(kind, checked);
      return { kind, key, record: checked, json: stableStringify(checked) } as DesiredEntry;
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  const put = (e: DesiredEntry | { error: string }): void => {
    if ('error' in e) warnings.push(e.error);
    else records.set(entryId(e.kind, e.key), e);
  };
  const add = <K extends Kind>(kind: K, record: RecordsByKind[K]): void => put(check(kind, record));
  /** For translations that depend on the object alone (plus `tag`). */
  const addMemo = <K extends Kind>(obj: object, tag: string, kind: K, make: () => RecordsByKind[K] | undefined): void => {
    const hit = memo?.get(obj);
    if (hit && hit.tag === tag) return put(hit.entry);
    const record = make();
    if (record === undefined) return;
    const entry = check(kind, record);
    memo?.set(obj, { tag, entry });
    put(entry);
  };
  for (const n of view.nodes) {
    const r = nodeRecord(n);
    if (isSkip(r)) warnings.push(r.skip);
    else add('node', r);
  }
  for (const ns of view.namespaces) addMemo(ns, '', 'namespace', () => namespaceRecord(ns));
  const notReady = notReadyPods(view.endpointSlices);
  const podsByNs = new Map<string, K8sPod[]>();
  for (const p of view.pods) {
    const ns = p.metadata.namespace ?? '';
    if (!podsByNs.has(ns)) podsByNs.set(ns, []);
    podsByNs.get(ns)!.push(p);
    const nr = notReady.has(p.metadata.uid ?? '');
    addMemo(p, nr ? 'not-ready' : '', 'workload', () => {
      const r = workloadRecord(p, { notReady: nr });
      return isSkip(r) ? undefined : r;
    });
  }
  for (const s of view.services) {
    const t = serviceRecord(s, podsByNs.get(s.metadata.namespace ?? '') ?? [], opts.clusterDomain);
    warnings.push(...t.warnings);
    if (t.record) add('service', t.record);
  }
  const root = opts.istioRootNamespace !== undefined ? { istioRootNamespace: opts.istioRootNamespace } : {};
  const policies = new Map<string, PolicyOutcome>();
  /** Registry key → the policy records the objects of both groups imply (one each at most). */
  const byKey = new Map<string, { id: string; record: AuthorizationPolicyRecord }[]>();
  const addPolicies = (objs: readonly K8sAuthorizationPolicy[], group: PolicyGroup): void => {
    for (const p of objs) {
      const own = `${p.metadata.namespace}/${p.metadata.name}`;
      const id = group === AUTHZ_GROUP ? own : `${group} ${own}`;
      const result = group === AUTHZ_GROUP ? policyRecord(p) : istioPolicyRecord(p, root);
      // The registry key: one of Istio's root namespace lives in Weft's.
      const at = result.ok ? result.record : result.candidate;
      const key = typeof at.namespace === 'string' && typeof at.name === 'string' ? `${at.namespace}/${at.name}` : own;
      let record: AuthorizationPolicyRecord | undefined;
      if (result.ok) {
        policies.set(id, { obj: p, group, result });
        record = result.record;
      } else {
        // Never drop an invalid policy: that would open what it guarded (policy-fallback.ts).
        const prev = opts.heldPolicy?.(key);
        record = prev && isValidVersion(prev)
          ? keepLastGood(withoutMarker(prev), result.message)
          : failClosedPolicy(key, result.candidate, result.message);
        const held = record?.invalid?.state;
        // No record for an AUDIT policy whose targets cannot be read: its action still says why.
        const enforced = heldText(held, record?.action ?? (typeof result.candidate.action === 'string' ? result.candidate.action : undefined));
        policies.set(id, { obj: p, group, result, held, enforced });
        warnings.push(`AuthorizationPolicy ${id} is invalid: ${result.message}; ${enforced}`);
      }
      if (record) byKey.set(key, [...(byKey.get(key) ?? []), { id, record }]);
    }
  };
  addPolicies(view.policies, AUTHZ_GROUP);
  addPolicies(view.istioPolicies ?? [], ISTIO_SECURITY_GROUP);
  for (const [key, found] of byKey) {
    const [first, second] = found;
    if (second === undefined || stableStringify(first!.record) === stableStringify(second.record)) {
      add('policy', first!.record);
      continue;
    }
    // One registry key, two different policies: enforcing either alone could drop the
    // other's DENY or ALLOW, so the namespace is closed until one is renamed.
    const message = `AuthorizationPolicies ${found.map((f) => f.id.includes(' ') ? f.id : `${AUTHZ_GROUP} ${f.id}`).join(' and ')} share the name ${key} but differ; rename or delete one`;
    const action = found.some((f) => f.record.action !== 'ALLOW') ? 'DENY' : 'ALLOW';
    const standIn = failClosedPolicy(key, { action }, message);
    if (standIn) add('policy', standIn);
    const enforced = heldText(standIn?.invalid?.state, standIn?.action);
    warnings.push(`${message}; ${enforced}`);
    // Both objects' status says so (not Accepted: neither is what is enforced).
    for (const f of found) {
      const o = policies.get(f.id)!;
      policies.set(f.id, { ...o, result: { ok: false, field: 'metadata.name', message, candidate: { action } }, held: standIn?.invalid?.state, enforced });
    }
  }
  for (const pa of view.peerAuths ?? []) {
    const key = `${pa.metadata.namespace}/${pa.metadata.name}`;
    const result = peerAuthRecord(pa, root);
    if (result.ok) {
      add('peerauth', result.record);
      continue;
    }
    const standIn = peerAuthStandIn(pa, root);
    if (standIn) add('peerauth', standIn);
    warnings.push(`PeerAuthentication ${key} is invalid: ${result.message}; ${standIn
      ? `enforced as STRICT for ${standIn.selector ? 'the workloads its selector names' : 'its whole namespace'} until it is fixed`
      : 'its name is not valid, so it cannot be enforced at all; fix or delete it'}`);
  }
  const routes: DesiredState['routes'] = new Map();
  const addRoutes = (objs: K8sGatewayAPIObject[] | undefined, kind: 'HTTPRoute' | 'GRPCRoute'): void => {
    for (const obj of objs ?? []) {
      const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
      const result = routeRecord(obj, kind);
      routes.set(`${kind} ${key}`, { obj, kind, result });
      if (result.ok) add(result.kind, result.record);
      else warnings.push(`${kind} ${key} is invalid and not mirrored: ${result.message}`);
    }
  };
  addRoutes(view.httpRoutes, 'HTTPRoute');
  addRoutes(view.grpcRoutes, 'GRPCRoute');
  const gateways: DesiredState['gateways'] = new Map();
  for (const obj of view.gateways ?? []) {
    const result = waypointRecord(obj);
    if (!result.ok && result.foreign) continue;
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    gateways.set(key, { obj, result });
    if (result.ok) add('waypoint', result.record);
    else warnings.push(`Gateway ${key} (class weft-waypoint) is invalid and not deployed: ${result.message}`);
  }
  const trafficPolicies: DesiredState['trafficPolicies'] = new Map();
  for (const obj of view.trafficPolicies ?? []) {
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    const result = trafficPolicyRecord(obj);
    if (result.ok) {
      trafficPolicies.set(key, { obj, result });
      add('trafficpolicy', result.record);
      continue;
    }
    // The last good version stays in force: an edit with a typo must not drop a Service's protection.
    const held = opts.heldTrafficPolicy?.(key);
    trafficPolicies.set(key, held ? { obj, result, held } : { obj, result });
    if (held) add('trafficpolicy', held);
    warnings.push(`TrafficPolicy ${key} is invalid: ${result.message}; ${held ? 'its last valid version stays in force' : 'not mirrored (no valid version yet)'}`);
  }
  return { records, warnings, policies, routes, gateways, trafficPolicies };
}
