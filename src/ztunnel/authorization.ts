/**
 * L4 authorization, as Istio's ztunnel evaluates it (authorization.proto semantics):
 *
 *   STRICT mTLS and no peer identity → deny;
 *   any DENY policy matches          → deny;
 *   no ALLOW policy applies          → allow;
 *   any ALLOW policy matches         → allow;
 *   otherwise                        → deny.
 *
 * Pure: the inbound listeners call it per connection (and again when policies
 * change), and `weft explain` calls it to say why a connection would pass or not, so
 * the reasons are written for people.
 *
 * Structure (as in ztunnel; the matcher is src/authz/match.ts, shared with the
 * waypoint): a policy matches when ANY rule matches; a rule when ALL of its clauses hold (a rule without clauses holds); a clause when ANY of its
 * matches holds (a clause without matches holds); a match when every field it sets
 * holds — within a field any value may hold, a `not*` field must hold for none of its
 * values. A match that sets no field is ignored, and a policy without rules matches
 * nothing, so an empty DENY policy never denies and an empty ALLOW policy allows no one.
 *
 * An invalid policy never reaches here as "absent": the registry holds its last valid
 * version or a fail-closed stand-in (src/registry/policy-fallback.ts), evaluated like
 * any other record; the reasons name it.
 */
import { evaluatePolicy, matchFacts, type MatchFacts, type PolicyMatchResult } from '../authz/match';
import type { WorkloadView } from '../registry/enrolment';
import type { AuthorizationPolicyRecord, PeerAuthenticationMode } from '../registry/types';

export { stringMatches, type PolicyMatchResult } from '../authz/match';

export interface AuthzRequest {
  source: {
    /** The peer's SPIFFE identity from its client certificate; absent for plaintext. */
    identity?: string;
    ip: string;
  };
  destination: {
    workload: WorkloadView;
    ip: string;
    port: number;
  };
}

export interface AuthzDecision {
  allowed: boolean;
  /** `namespace/name` of the policy that decided, when one did. */
  policy?: string;
  /** One sentence for logs and `weft explain`. */
  reason: string;
}

export function authorize(
  request: AuthzRequest,
  policies: readonly AuthorizationPolicyRecord[],
  mode: PeerAuthenticationMode,
): AuthzDecision {
  const dest = workloadName(request.destination.workload);
  if (mode === 'STRICT' && !request.source.identity) {
    return {
      allowed: false,
      reason: `PeerAuthentication mode STRICT for ${dest} refuses plaintext: the connection from ${request.source.ip} carries no peer identity`,
    };
  }
  const facts = requestFacts(request);
  for (const p of policies) {
    if (p.action !== 'DENY') continue;
    const m = evaluatePolicy(p, facts);
    if (m.matched) {
      return { allowed: false, policy: key(p), reason: `DENY policy ${key(p)} matches ${describeSource(request)} (rule ${m.rule})${invalidNote(p)}` };
    }
  }
  const allows = policies.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) {
    return { allowed: true, reason: `no ALLOW policy applies to ${dest} and no DENY policy matches; allowed by default` };
  }
  for (const p of allows) {
    const m = evaluatePolicy(p, facts);
    if (m.matched) {
      return { allowed: true, policy: key(p), reason: `ALLOW policy ${key(p)} matches ${describeSource(request)} (rule ${m.rule})${invalidNote(p)}` };
    }
  }
  const names = allows.map(key).join(', ');
  return {
    allowed: false,
    reason: `${describeSource(request)} matches none of the ALLOW policies that apply to ${dest} (${names}); ALLOW policies deny everything they do not match${allows.map(invalidNote).join('')}`,
  };
}

/**
 * An invalid policy stays in force (policy-fallback.ts): its last valid version, or a
 * fail-closed stand-in. Say so wherever it decides, so nobody debugs the rules shown.
 */
function invalidNote(p: AuthorizationPolicyRecord): string {
  if (!p.invalid) return '';
  return p.invalid.state === 'LastGood'
    ? `; note: ${key(p)} is invalid (${p.invalid.reason}), its last valid version is enforced`
    : `; note: ${key(p)} is invalid (${p.invalid.reason}) and enforced fail-closed`;
}

/** Whether one policy matches, and which rule; for `weft explain`'s per-policy table. */
export function matchPolicy(policy: AuthorizationPolicyRecord, request: AuthzRequest): PolicyMatchResult {
  return evaluatePolicy(policy, requestFacts(request));
}

/** The connection reduced to what matches compare, computed once per evaluation (no request attributes: L4). */
function requestFacts(r: AuthzRequest): MatchFacts {
  return matchFacts({ identity: r.source.identity, ip: r.source.ip }, { ip: r.destination.ip, port: r.destination.port });
}

function key(p: AuthorizationPolicyRecord): string {
  return `${p.namespace}/${p.name}`;
}

function workloadName(w: WorkloadView): string {
  return `${w.record.namespace}/${w.record.name}`;
}

function describeSource(r: AuthzRequest): string {
  const to = `${r.destination.ip}:${r.destination.port}`;
  return r.source.identity
    ? `${r.source.identity} from ${r.source.ip} to ${to}`
    : `plaintext from ${r.source.ip} to ${to}`;
}
