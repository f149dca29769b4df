/**
 * `weft apply` refuses an AuthorizationPolicy bound with targetRefs to something no
 * waypoint serves: a Service that exists but is bound to no waypoint, or a waypoint
 * Gateway that does not exist. Such a policy would be stored and enforced nowhere —
 * Istio's silent failure mode for L7 policies. (A Service that does not exist yet is
 * accepted: there is no traffic to it to leave unchecked, and once it exists behind a
 * waypoint the policy is in force.) The records are the registry's, as read for the
 * apply, plus the Gateways in the same batch.
 */
import type { WaypointFor } from '../gateway/types';
import { serviceWaypointBinding, type MeshState } from '../registry/state';
import type { AuthorizationPolicyRecord, Kind, Labels, ServiceRecord } from '../registry/types';
import { servesServices } from '../ztunnel/waypoint-route';
import { manifestError } from './manifest';

/**
 * Why no waypoint takes `service`'s traffic, so that a policy bound to it is enforced
 * nowhere: it is bound to no waypoint (or `none`), or to one that serves workloads
 * only (`for`). Undefined when a waypoint takes it, or when the waypoint it names does
 * not exist (the ztunnels refuse its traffic then: nothing gets past unchecked).
 */
export function serviceWithoutWaypoint(
  service: Pick<ServiceRecord, 'waypoint'>, namespaceLabels: Labels | undefined, waypointFor: (name: string) => WaypointFor | undefined,
): string | undefined {
  const name = serviceWaypointBinding(service, namespaceLabels);
  if (name === undefined) return 'has no waypoint';
  const f = waypointFor(name);
  return f === undefined || servesServices({ for: f }) ? undefined : `is bound to waypoint ${name}, which is for ${f} traffic, not services`;
}

/** The one text `weft policies` and `weft explain` give for a policy no waypoint enforces for a Service (`why`: unenforcedTargets). */
export function unenforcedText(p: Pick<AuthorizationPolicyRecord, 'namespace' | 'name'>, why: string): string {
  return `AuthorizationPolicy ${p.namespace}/${p.name} is enforced by nobody for ${why}: its traffic goes straight to the pods, which the policy does not guard. `
    + `Bind the Service to a waypoint (weft namespace use-waypoint ${p.namespace} <waypoint>), or delete the policy`;
}

/**
 * The targets of a waypoint-bound policy that no waypoint enforces it for, as the
 * registry stands now (`weft policies`, `weft explain`): a Service that once had a
 * waypoint and lost it leaves its policies in force nowhere, as in Istio (whose status
 * says so); Weft says so too. `Service/echo has no waypoint`.
 */
export function unenforcedTargets(state: Pick<MeshState, 'get' | 'waypoint'>, p: AuthorizationPolicyRecord): string[] {
  const out: string[] = [];
  for (const ref of p.targetRefs ?? []) {
    if (ref.kind !== 'Service') continue;
    const service = state.get('service', `${p.namespace}/${ref.name}`);
    if (!service) continue;
    const why = serviceWithoutWaypoint(service, state.get('namespace', p.namespace)?.labels, (n) => state.waypoint(p.namespace, n)?.for);
    if (why) out.push(`Service ${p.namespace}/${ref.name} ${why}`);
  }
  return out;
}

type Existing = Map<Kind, Map<string, Record<string, unknown>>>;

/** Throws WEFT_MANIFEST_INVALID naming each unenforceable policy and what to do. */
export function refuseUnboundPolicies(policies: readonly AuthorizationPolicyRecord[], existing: Existing, batchWaypoints: ReadonlySet<string>): void {
  const problems: string[] = [];
  for (const p of policies) {
    for (const [i, ref] of (p.targetRefs ?? []).entries()) {
      const key = `${p.namespace}/${ref.name}`;
      const at = `AuthorizationPolicy ${p.namespace}/${p.name}: targetRefs[${i}]`;
      if (ref.kind === 'Gateway') {
        if (!existing.get('waypoint')?.has(key) && !batchWaypoints.has(key)) {
          problems.push(`${at} names waypoint ${key}, which does not exist: nothing would enforce the policy; add it (weft waypoint add ${key} --node <node>) or bind the policy to a Service`);
        }
        continue;
      }
      const service = existing.get('service')?.get(key) as { waypoint?: string } | undefined;
      if (!service) continue;
      const nsLabels = (existing.get('namespace')?.get(p.namespace) as { labels?: Labels } | undefined)?.labels;
      const waypointFor = (n: string) => (existing.get('waypoint')?.get(`${p.namespace}/${n}`) as { for?: WaypointFor } | undefined)?.for;
      const why = serviceWithoutWaypoint(service, nsLabels, waypointFor);
      if (why) {
        problems.push(`${at} names Service ${key}, which ${why}: its traffic goes straight to the pods and the policy would be enforced nowhere; `
          + `add a waypoint and bind the Service to it (weft waypoint add ${p.namespace}/<name> --node <node>; weft namespace use-waypoint ${p.namespace} <name>), then apply again`);
      }
    }
  }
  if (problems.length > 0) {
    throw manifestError(`${problems.join('\n')}\nnothing was applied`, { problems });
  }
}
