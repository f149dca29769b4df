/**
 * `weft apply` refuses an AuthorizationPolicy bound with targetRefs to something no
 * waypoint serves: a Service that exists but is bound to no waypoint, or a waypoint
 * Gateway that does not exist. Such a policy would be stored and enforced nowhere —
 * Istio's silent failure mode for L7 policies. (A Service that does not exist yet is
 * accepted: there is no traffic to it to leave unchecked, and once it exists behind a
 * waypoint the policy is in force.) The records are the registry's, as read for the
 * apply, plus the Gateways in the same batch.
 */
import { serviceWaypointBinding } from '../registry/state';
import type { AuthorizationPolicyRecord, Kind, Labels } from '../registry/types';
import { manifestError } from './manifest';

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
      if (serviceWaypointBinding(service, nsLabels) === undefined) {
        problems.push(`${at} names Service ${key}, which has no waypoint: its traffic goes straight to the pods and the policy would be enforced nowhere; `
          + `add a waypoint and bind the Service to it (weft waypoint add ${p.namespace}/<name> --node <node>; weft namespace use-waypoint ${p.namespace} <name>), then apply again`);
      }
    }
  }
  if (problems.length > 0) {
    throw manifestError(`${problems.join('\n')}\nnothing was applied`, { problems });
  }
}
