/**
 * `weft policies`: authorization policies (L4 at the ztunnels; WAYPOINT: bound with
 * targetRefs, L7 at the waypoint) and peer authentication (STRICT or
 * PERMISSIVE mTLS), side by side, since together they decide who may connect.
 */
import { heldText } from '../../registry/policy-fallback';
import { unenforcedTargets, unenforcedText } from '../apply-authz';
import type { MeshState } from '../../registry/state';
import {
  ROOT_NAMESPACE, type AuthorizationPolicyRecord, type PeerAuthenticationRecord, type PolicyInvalidState,
} from '../../registry/types';
import { defineCommand, noPositionals } from '../io';
import type { Frame, Table } from '../output';
import { byKey, namespaceOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface PolicyItem {
  kind: 'AuthorizationPolicy' | 'PeerAuthentication';
  namespace: string;
  name: string;
  /** ALLOW/DENY for authorization policies; STRICT/PERMISSIVE for peer authentication. */
  action: string;
  /** GLOBAL, NAMESPACE or WORKLOAD_SELECTOR (the ztunnel enforces it); WAYPOINT for a policy bound with targetRefs. */
  scope: string;
  selector?: Record<string, string>;
  /** A WAYPOINT policy's targetRefs as `Service/echo`, `Gateway/waypoint`. */
  targets?: string[];
  rules?: number;
  /**
   * `Valid`; or for an invalid AuthorizationPolicy the record's own state, what is
   * enforced instead: `LastGood` (its last valid version) or `FailClosed` (a stand-in
   * that only narrows access).
   */
  status: 'Valid' | PolicyInvalidState;
  /** Why the policy is invalid, when it is. */
  invalid?: string;
  /** A WAYPOINT policy's Service targets that no waypoint serves: there it is enforced by nobody (apply-authz.ts). */
  unenforced?: string[];
  /** The record as stored, for -o json/yaml. */
  spec: AuthorizationPolicyRecord | PeerAuthenticationRecord;
}

function authzItem(p: AuthorizationPolicyRecord, state: MeshState): PolicyItem {
  const status = p.invalid?.state ?? 'Valid';
  const item: PolicyItem = { kind: 'AuthorizationPolicy', namespace: p.namespace, name: p.name, action: p.action, scope: p.scope, rules: p.rules.length, status, spec: p };
  if (p.selector) item.selector = { ...p.selector };
  // Bound with targetRefs: the waypoint enforces it (L7), not the ztunnels.
  if (p.targetRefs) {
    item.scope = 'WAYPOINT';
    item.targets = p.targetRefs.map((r) => `${r.kind}/${r.name}`);
    const unenforced = unenforcedTargets(state, p);
    if (unenforced.length > 0) item.unenforced = unenforced;
  }
  if (p.invalid) item.invalid = p.invalid.reason;
  return item;
}

/** Peer authentication has no scope field: it follows from where it lives and its selector (state.ts). */
function peerAuthItem(p: PeerAuthenticationRecord): PolicyItem {
  const selected = p.selector !== undefined && Object.keys(p.selector).length > 0;
  const scope = selected ? 'WORKLOAD_SELECTOR' : p.namespace === ROOT_NAMESPACE ? 'GLOBAL' : 'NAMESPACE';
  const item: PolicyItem = { kind: 'PeerAuthentication', namespace: p.namespace, name: p.name, action: p.mode, scope, status: 'Valid', spec: p };
  if (selected) item.selector = { ...p.selector! };
  return item;
}

export function listPolicies(state: MeshState, f: { namespace?: string } = {}): PolicyItem[] {
  return [...state.list('policy').map((p) => authzItem(p, state)), ...state.list('peerauth').map(peerAuthItem)]
    .filter((p) => !f.namespace || p.namespace === f.namespace)
    .sort(byKey((p) => `${p.namespace}\u0000${p.kind}\u0000${p.name}`));
}

function selectorText(s: Record<string, string> | undefined): string | undefined {
  if (!s) return undefined;
  return Object.entries(s).map(([k, v]) => `${k}=${v}`).join(',');
}

export function policiesTable(items: readonly PolicyItem[]): Table {
  return {
    headers: ['NAMESPACE', 'POLICY NAME', 'KIND', 'ACTION', 'SCOPE', 'SELECTOR', 'RULES', 'STATUS'],
    rows: items.map((p) => [p.namespace, p.name, p.kind, p.action, p.scope, p.targets ? `targetRefs ${p.targets.join(',')}` : selectorText(p.selector), p.rules, p.status]),
  };
}

export function policiesFrame(state: MeshState, f: { namespace?: string }): Frame {
  const items = listPolicies(state, f);
  const warnings = items.flatMap((p) => [
    ...(p.status === 'Valid' ? [] : [`${p.namespace}/${p.name} is invalid (${p.invalid}); ${heldText(p.status, p.action)}`]),
    ...(p.unenforced ?? []).map((why) => unenforcedText(p, why)),
  ]);
  return { table: policiesTable(items), data: { revision: state.revision, items }, warnings, empty: `No policies found${scopeText(f)}.` };
}

const USAGE = 'weft policies [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list authorization policies (ALLOW/DENY) and peer authentication (STRICT/PERMISSIVE)',
  description: `Policies in ${ROOT_NAMESPACE} with scope GLOBAL apply mesh-wide. For PeerAuthentication, ACTION is the mTLS
mode: STRICT refuses plaintext (connections without a peer identity). STATUS LastGood: the policy's source is
invalid and its last valid version is enforced; FailClosed: invalid with no valid version, enforced as an ALLOW
that matches nothing or a DENY of everything in its scope. Use weft explain to see which
policy decides a given connection, and -o yaml to read the rules.`,
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runRegistryView(values, io, 'weft policies', (state) => policiesFrame(state, { namespace: values.namespace }));
  },
});
