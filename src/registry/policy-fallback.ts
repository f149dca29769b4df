/**
 * What an invalid AuthorizationPolicy becomes. Dropping it would fail open: a
 * namespace guarded by one ALLOW policy is allow-all the moment that policy vanishes.
 * So an invalid policy always leaves a record behind, and that record can only keep or
 * narrow access, never widen it:
 *
 * - it keeps the last valid version when there is one (the controller's choice, the
 *   one Kubernetes users expect from "the edit was refused"), marked `LastGood`;
 * - otherwise it is a `FailClosed` stand-in built from what can still be read:
 *     ALLOW → an ALLOW that matches nothing: its workloads stay guarded, and only the
 *             other ALLOW policies admit traffic to them (what a valid ALLOW with
 *             nobody listed gives, and what Istio does with an ALLOW rule it cannot
 *             understand: the rule is dropped, never widened);
 *     DENY, or an action that cannot be read → a DENY that matches everything in its
 *             scope (Istio likewise widens a DENY it cannot fully evaluate, so it
 *             still denies at least what was meant);
 *     AUDIT → an AUDIT that matches nothing, bound to its targets: AUDIT decides
 *             nothing, so there is nothing to hold closed (a DENY stand-in would turn
 *             a typo in a logging policy into an outage); when its targets cannot be
 *             read, nothing at all.
 *   Its scope is the policy's own when the scope and selector are readable; when they
 *   are not, the widest the policy could have meant: its namespace (mesh-wide for a
 *   policy in the root namespace).
 *
 * Both the controller (an invalid Kubernetes object) and every registry reader (a
 * stored record that fails validation) use this, so both sides fail closed the same way.
 */
import { rules } from './checks';
import { ROOT_NAMESPACE, type AuthorizationPolicyRecord, type PolicyInvalidState, type PolicyRule } from './types';
import { validateRecord } from './validate';

/**
 * The fail-closed stand-in for an invalid policy `raw` stored under `namespace/name`.
 * Undefined when the key itself is unreadable: then there is no namespace to apply
 * anything to (only a broken writer produces such a key); and for an AUDIT policy
 * whose targets cannot be read (it decides nothing, so nothing need stand in).
 */
export function failClosedPolicy(key: string, raw: unknown, reason: string): AuthorizationPolicyRecord | undefined {
  const slash = key.indexOf('/');
  const namespace = key.slice(0, slash);
  const name = key.slice(slash + 1);
  if (slash === -1 || rules.dnsLabel(namespace) || rules.dnsSubdomain(name)) return undefined;
  const o = (typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : {}) as Record<string, unknown>;
  const allow = o.action === 'ALLOW';
  const audit = o.action === 'AUDIT';
  const base = {
    name, namespace,
    action: allow ? 'ALLOW' : audit ? 'AUDIT' : 'DENY',
    // A rule without clauses holds for every connection (authorization.ts); no rule matches nothing.
    rules: (allow || audit ? [] : [{ clauses: [] }]) as PolicyRule[],
    invalid: { state: 'FailClosed', reason: capReason(reason) },
  };
  // The policy's own scope if it is readable; the check rejects a bad scope or selector.
  if (typeof o.scope === 'string') {
    const own: Record<string, unknown> = { ...base, scope: o.scope };
    if (o.selector !== undefined) own.selector = o.selector;
    // A waypoint-bound policy stays bound to its targets: its stand-in must not become
    // a namespace-wide L4 policy on the ztunnels.
    if (o.targetRefs !== undefined) own.targetRefs = o.targetRefs;
    try {
      return validateRecord('policy', own, { key });
    } catch {
      // fall through to the widest scope
    }
  }
  if (audit) return undefined;
  const scope = namespace === ROOT_NAMESPACE ? 'GLOBAL' : 'NAMESPACE';
  return validateRecord('policy', { ...base, scope }, { key });
}

/**
 * What the registry enforces for an invalid policy, in words: the one text the
 * controller's log and the object's status, the readers' log and `weft policies` show.
 * `held` is the record's `invalid.state`; undefined when nothing could be held (the
 * policy's name is not valid).
 */
export function heldText(held: PolicyInvalidState | undefined, action: string | undefined): string {
  if (held === 'LastGood') return 'the last valid version stays in force until it is fixed';
  if (action === 'AUDIT') {
    return held === 'FailClosed'
      ? 'no valid version is known, so it is held as an AUDIT that matches nothing (AUDIT decides nothing: no request is refused or admitted because of it)'
      : 'AUDIT decides nothing, so nothing is enforced in its place until it is fixed';
  }
  if (held === 'FailClosed') {
    return action === 'ALLOW'
      ? 'no valid version is known, so it is enforced fail-closed as an ALLOW that matches nothing (only other ALLOW policies admit traffic to its workloads)'
      : 'no valid version is known, so it is enforced fail-closed as a DENY of every connection in its scope';
  }
  return 'its name is not valid, so it cannot be enforced at all; fix or delete it';
}

/** `record` (the last valid version) kept in force, marked with why its source is invalid now. */
export function keepLastGood(record: AuthorizationPolicyRecord, reason: string): AuthorizationPolicyRecord {
  return { ...record, invalid: { state: 'LastGood', reason: capReason(reason) } };
}

/** Whether `record` is a valid version of its policy (not a stand-in), i.e. worth keeping. */
export function isValidVersion(record: AuthorizationPolicyRecord): boolean {
  return record.invalid?.state !== 'FailClosed';
}

/** The record without its invalid marker: what the policy said when it was last valid. */
export function withoutMarker(record: AuthorizationPolicyRecord): AuthorizationPolicyRecord {
  const { invalid: _invalid, ...rest } = record;
  return rest;
}

function capReason(reason: string): string {
  const r = reason.trim() || 'invalid';
  return r.length > 1024 ? `${r.slice(0, 1021)}...` : r;
}
