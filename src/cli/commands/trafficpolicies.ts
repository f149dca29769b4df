/**
 * `weft trafficpolicies`: the TrafficPolicies of the mesh (networking.weft.io/v1alpha1),
 * the Services they target, which mechanisms they configure, and per target whether the
 * policy is in force there: Accepted, Conflicted (an older policy holds that Service),
 * or TargetNotFound (no such Service yet: it applies as soon as the Service exists).
 * The rules are src/resilience/attach.ts, the same code the waypoint and the
 * controller's status run, so this view cannot disagree with what is enforced.
 */
import { attachTrafficPolicies, overallState, targetStatuses, type TargetState, type TargetStatus } from '../../resilience/attach';
import type { TrafficPolicySpec } from '../../resilience/spec';
import type { MeshState } from '../../registry/state';
import { defineCommand, noPositionals } from '../io';
import type { Frame, Table } from '../output';
import { byKey, namespaceOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface TrafficPolicyItem {
  namespace: string;
  name: string;
  creationTimestamp: string;
  /** The sections the policy sets (loadBalancer, retry, ...); the others keep their defaults. */
  sections: string[];
  /** Accepted when every target is, else the first target's problem. */
  state: TargetState;
  targets: TargetStatus[];
  spec: TrafficPolicySpec;
}

export function listTrafficPolicies(state: MeshState, f: { namespace?: string } = {}): TrafficPolicyItem[] {
  // Winners over all policies (a conflict is within one namespace, but the rule is global and cheap).
  const all = state.list('trafficpolicy');
  const winners = attachTrafficPolicies(all);
  const exists = (ns: string, name: string) => state.get('service', `${ns}/${name}`) !== undefined;
  return all.filter((r) => !f.namespace || r.namespace === f.namespace)
    .map((r): TrafficPolicyItem => {
      const targets = targetStatuses(r, winners, exists);
      return {
        namespace: r.namespace, name: r.name, creationTimestamp: r.creationTimestamp,
        sections: Object.keys(r.spec).filter((k) => k !== 'targetRefs'),
        state: overallState(targets), targets, spec: r.spec,
      };
    })
    .sort(byKey((r) => `${r.namespace}\u0000${r.name}`));
}

/** `echo`, or `echo (Conflicted)` when not in force there. */
function targetText(s: TargetStatus): string {
  return s.state === 'Accepted' ? s.ref.name : `${s.ref.name} (${s.state})`;
}

export function trafficPoliciesTable(items: readonly TrafficPolicyItem[]): Table {
  return {
    headers: ['NAMESPACE', 'NAME', 'TARGETS', 'SECTIONS', 'STATUS'],
    rows: items.map((p) => [p.namespace, p.name, p.targets.map(targetText).join(','), p.sections.join(',') || '(defaults)',
      p.state === 'Accepted' ? 'Accepted' : `${p.state}: ${p.targets.find((x) => x.state === p.state)!.message}`]),
  };
}

export function trafficPoliciesFrame(state: MeshState, f: { namespace?: string }): Frame {
  const items = listTrafficPolicies(state, f);
  return { table: trafficPoliciesTable(items), data: { revision: state.revision, items }, warnings: [], empty: `No traffic policies found${scopeText(f)}.` };
}

const USAGE = 'weft trafficpolicies [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list TrafficPolicies: target Services, configured sections, Accepted / Conflicted / TargetNotFound',
  description: `TARGETS are the Services a policy names (in its own namespace); a target the policy is not in force for
carries its state: Conflicted (an older TrafficPolicy targets the same Service and wins there: merge the two) or
TargetNotFound (the Service does not exist yet; the policy takes effect as soon as it does). SECTIONS lists the
mechanisms the policy configures (loadBalancer, connectionPool, outlierDetection, retry, faults, rateLimit,
loadShedding); the others keep their defaults (docs/resilience.md). -o yaml shows each section with its defaults filled in.`,
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runRegistryView(values, io, 'weft trafficpolicies', (state) => trafficPoliciesFrame(state, { namespace: values.namespace }));
  },
});
