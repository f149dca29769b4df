/**
 * Which TrafficPolicy applies to which Service, and each policy's status per targetRef.
 * Pure: the waypoint's lookup (src/waypoint/traffic-policies.ts), `weft trafficpolicies`
 * and the controller's status writer all ask this one module, so they never disagree.
 *
 * Rules (those of Gateway API policy attachment, GEP-713):
 * - A policy attaches to each Service its targetRefs name, in its own namespace.
 * - Two policies on one Service: the oldest (creationTimestamp, then `ns/name`
 *   alphabetically) wins that Service; the other is Conflicted there. The rule is per
 *   Service, so a policy can win one target and lose another. Sections are not merged:
 *   half of each policy would be a policy nobody wrote.
 * - A policy naming a Service that does not exist is attached anyway (it takes effect
 *   the moment the Service appears) and reported TargetNotFound meanwhile.
 */
import { compareRouteAge } from '../gateway/attach';
import type { TrafficPolicyRecord } from '../registry/types';
import type { TrafficPolicyTargetRef } from './spec';

/** Winning policy per Service: namespace → Service name → record. Nested so a lookup builds no key string. */
export type TrafficPolicyWinners = ReadonlyMap<string, ReadonlyMap<string, TrafficPolicyRecord>>;

/** The winner per Service among `records` (any order in, deterministic out). */
export function attachTrafficPolicies(records: Iterable<TrafficPolicyRecord>): TrafficPolicyWinners {
  const out = new Map<string, Map<string, TrafficPolicyRecord>>();
  for (const r of records) {
    let byName = out.get(r.namespace);
    if (!byName) out.set(r.namespace, (byName = new Map()));
    for (const ref of r.spec.targetRefs) {
      const held = byName.get(ref.name);
      if (!held || compareRouteAge(r, held) < 0) byName.set(ref.name, r);
    }
  }
  return out;
}

/** The policy in force for Service `namespace/name`, if any. */
export function winnerFor(winners: TrafficPolicyWinners, namespace: string, name: string): TrafficPolicyRecord | undefined {
  return winners.get(namespace)?.get(name);
}

/**
 * Per targetRef: `Accepted` (in force for that Service), `Conflicted` (an older policy
 * holds the Service), `TargetNotFound` (no such Service yet: it applies once the Service
 * exists). Conflicted is checked first: a missing Service can still be contested.
 */
export type TargetState = 'Accepted' | 'Conflicted' | 'TargetNotFound';

export interface TargetStatus {
  ref: TrafficPolicyTargetRef;
  state: TargetState;
  /** One sentence for status conditions, `weft trafficpolicies` and logs. */
  message: string;
}

export function targetStatuses(record: TrafficPolicyRecord, winners: TrafficPolicyWinners,
  serviceExists: (namespace: string, name: string) => boolean): TargetStatus[] {
  return record.spec.targetRefs.map((ref): TargetStatus => {
    const svc = `${record.namespace}/${ref.name}`;
    const winner = winnerFor(winners, record.namespace, ref.name);
    if (winner && winner !== record && (winner.namespace !== record.namespace || winner.name !== record.name)) {
      return {
        ref, state: 'Conflicted',
        message: `Service ${svc} is already targeted by the older TrafficPolicy ${winner.namespace}/${winner.name} (created ${winner.creationTimestamp}), which is in force there; merge the two or target another Service`,
      };
    }
    if (!serviceExists(record.namespace, ref.name)) {
      return { ref, state: 'TargetNotFound', message: `Service ${svc} does not exist; the policy takes effect as soon as it does` };
    }
    return { ref, state: 'Accepted', message: `in force for Service ${svc}` };
  });
}

/** The policy's overall state: Accepted when every target is, else the first target's problem. */
export function overallState(statuses: readonly TargetStatus[]): TargetState {
  return statuses.find((s) => s.state !== 'Accepted')?.state ?? 'Accepted';
}
