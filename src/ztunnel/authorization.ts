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
 * Structure (as in ztunnel): a policy matches when ANY rule matches; a rule when ALL
 * of its clauses hold (a rule without clauses holds); a clause when ANY of its
 * matches holds (a clause without matches holds); a match when every field it sets
 * holds — within a field any value may hold, a `not*` field must hold for none of its
 * values. A match that sets no field is ignored, and a policy without rules matches
 * nothing, so an empty DENY policy never denies and an empty ALLOW policy allows no one.
 *
 * An invalid policy never reaches here as "absent": the registry holds its last valid
 * version or a fail-closed stand-in (src/registry/policy-fallback.ts), evaluated like
 * any other record; the reasons name it.
 */
import { parseIdentity } from '../lib/identity';
import type { WorkloadView } from '../registry/enrolment';
import type { AuthorizationPolicyRecord, PeerAuthenticationMode, PolicyMatch } from '../registry/types';
import { cidrContains } from './cidr';

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

/** Where inside a policy the request matched: 1-based, as people count. */
export interface PolicyMatchResult {
  matched: boolean;
  rule?: number;
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
    const m = evaluate(p, facts);
    if (m.matched) {
      return { allowed: false, policy: key(p), reason: `DENY policy ${key(p)} matches ${describeSource(request)} (rule ${m.rule})${invalidNote(p)}` };
    }
  }
  const allows = policies.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) {
    return { allowed: true, reason: `no ALLOW policy applies to ${dest} and no DENY policy matches; allowed by default` };
  }
  for (const p of allows) {
    const m = evaluate(p, facts);
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
  return evaluate(policy, requestFacts(request));
}

/** The request reduced to what matches compare, computed once per evaluation. */
interface Facts {
  principal: string;
  namespace: string;
  serviceAccount: string;
  hasIdentity: boolean;
  srcIp: string;
  dstIp: string;
  dstPort: number;
}

function requestFacts(r: AuthzRequest): Facts {
  const id = r.source.identity ? parseIdentity(r.source.identity) : undefined;
  return {
    principal: r.source.identity ?? '',
    // An identity that is not of Weft's shape still counts as a principal, but has no namespace or service account.
    namespace: id?.namespace ?? '',
    serviceAccount: id?.serviceAccount ?? '',
    hasIdentity: id !== undefined,
    srcIp: r.source.ip,
    dstIp: r.destination.ip,
    dstPort: r.destination.port,
  };
}

function evaluate(policy: AuthorizationPolicyRecord, f: Facts): PolicyMatchResult {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    if (rules[i]!.clauses.every((clause) => clause.matches.length === 0 || clause.matches.some((m) => matchHolds(m, f, policy.namespace)))) {
      return { matched: true, rule: i + 1 };
    }
  }
  return { matched: false };
}

function matchHolds(m: PolicyMatch, f: Facts, policyNs: string): boolean {
  if (isEmptyMatch(m)) return false;
  return field(m.namespaces, m.notNamespaces, (v) => stringMatches(v, f.namespace))
    && field(m.serviceAccounts, m.notServiceAccounts, (v) => serviceAccountMatches(v, f, policyNs))
    && field(m.principals, m.notPrincipals, (v) => stringMatches(v, f.principal))
    && field(m.sourceIps, m.notSourceIps, (v) => cidrContains(v, f.srcIp))
    && field(m.destinationIps, m.notDestinationIps, (v) => cidrContains(v, f.dstIp))
    && field(m.destinationPorts, m.notDestinationPorts, (v) => v === f.dstPort);
}

function field<T>(positive: readonly T[] | undefined, negative: readonly T[] | undefined, holds: (v: T) => boolean): boolean {
  if (positive && positive.length > 0 && !positive.some(holds)) return false;
  if (negative && negative.length > 0 && negative.some(holds)) return false;
  return true;
}

const MATCH_KEYS: readonly (keyof PolicyMatch)[] = [
  'namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'serviceAccounts', 'notServiceAccounts',
  'sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts',
];

function isEmptyMatch(m: PolicyMatch): boolean {
  return MATCH_KEYS.every((k) => (m[k]?.length ?? 0) === 0);
}

/**
 * Istio's string match: `*` alone means "present", a leading or trailing `*` a
 * suffix or prefix match, anything else exact. An absent value (no identity) matches
 * nothing, so `notPrincipals: ["*"]` selects exactly the plaintext connections.
 */
export function stringMatches(pattern: string, value: string): boolean {
  if (value === '') return false;
  if (pattern === '*') return true;
  if (pattern.length > 1 && pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.length > 1 && pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

/** `ns/sa` names both; a bare `sa` means that service account in the policy's own namespace. */
function serviceAccountMatches(pattern: string, f: Facts, policyNs: string): boolean {
  if (!f.hasIdentity) return false;
  const slash = pattern.indexOf('/');
  const ns = slash === -1 ? policyNs : pattern.slice(0, slash);
  const sa = slash === -1 ? pattern : pattern.slice(slash + 1);
  return ns === f.namespace && sa === f.serviceAccount;
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
