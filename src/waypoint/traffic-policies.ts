/**
 * The waypoint's view of TrafficPolicies: which policy is in force for a Service,
 * following the registry. The attachment rules (the oldest of two policies on one
 * Service wins, the other is Conflicted; a missing Service is reported and the policy
 * applies when it appears) live in src/resilience/attach.ts, shared with the CLI and
 * the controller's status.
 *
 * The table is rebuilt when a TrafficPolicy changes (not on other changes) and swapped
 * in whole. It is keyed by the targetRef's name, not by the Service record, so a policy
 * naming a Service that does not exist yet takes effect the moment the Service does,
 * with no rebuild. forService() is on every request's path: two Map lookups, no
 * allocation; a waypoint with no policy at all answers from an empty Map.
 *
 * Per-Service runtime state (balancers, detectors, buckets) compares the spec it was
 * built from with forService()'s answer by identity: MeshState hands out a new record
 * (and so a new spec object) only when the policy changed.
 */
import { EventEmitter } from 'node:events';
import { attachTrafficPolicies, targetStatuses, winnerFor, type TargetStatus, type TrafficPolicyWinners } from '../resilience/attach';
import type { TrafficPolicySpec } from '../resilience/spec';
import type { MeshState } from '../registry/state';
import type { Change, TrafficPolicyRecord } from '../registry/types';

export interface TrafficPoliciesEvents {
  /** The table was rebuilt (a policy came, went or changed): per-Service state may drop what it holds. */
  change: [];
}

/** One policy and how it stands, for the admin view and `weft trafficpolicies`. */
export interface TrafficPolicyView {
  namespace: string;
  name: string;
  creationTimestamp: string;
  targets: TargetStatus[];
}

export class TrafficPolicies extends EventEmitter<TrafficPoliciesEvents> {
  private winners: TrafficPolicyWinners;
  private readonly onChange = (changes: Change[]) => {
    if (changes.some((c) => c.kind === 'trafficpolicy')) this.reload();
  };
  private readonly onSnapshot = () => this.reload();

  constructor(private readonly state: MeshState) {
    super();
    this.winners = attachTrafficPolicies(state.list('trafficpolicy'));
    state.on('change', this.onChange);
    state.on('snapshot', this.onSnapshot);
  }

  /** The spec in force for Service `namespace/name` (undefined: no policy, the mechanisms' defaults apply). */
  forService(namespace: string, name: string): TrafficPolicySpec | undefined {
    return winnerFor(this.winners, namespace, name)?.spec;
  }

  /** The record in force, for the policy's name in logs and metrics. */
  recordForService(namespace: string, name: string): TrafficPolicyRecord | undefined {
    return winnerFor(this.winners, namespace, name);
  }

  /** Every policy in the registry with its status per target, sorted by namespace/name. */
  views(): TrafficPolicyView[] {
    const exists = (ns: string, n: string) => this.state.get('service', `${ns}/${n}`) !== undefined;
    return this.state.list('trafficpolicy')
      .sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace, b.namespace)))
      .map((r) => ({ namespace: r.namespace, name: r.name, creationTimestamp: r.creationTimestamp, targets: targetStatuses(r, this.winners, exists) }));
  }

  close(): void {
    this.state.off('change', this.onChange);
    this.state.off('snapshot', this.onSnapshot);
  }

  private reload(): void {
    this.winners = attachTrafficPolicies(this.state.list('trafficpolicy'));
    this.emit('change');
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
