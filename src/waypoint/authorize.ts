/**
 * L7 authorization at the waypoint, in Istio's order for one request:
 *
 *   any DENY policy matches    → deny (403 `RBAC: access denied`);
 *   no ALLOW policy applies    → allow;
 *   any ALLOW policy matches   → allow;
 *   otherwise                  → deny.
 *
 * A stream that is not HTTP (the waypoint's L4 passthrough) is judged as Istio judges
 * TCP traffic: an ALLOW rule with HTTP-only conditions never matches it, a DENY rule's
 * HTTP-only conditions are dropped (so it denies more, never less).
 *
 * AUDIT policies decide nothing: every one that matches is reported, whatever the
 * decision, so the caller logs and counts it. (Istio's CUSTOM, an external
 * authorizer, is refused when the policy is applied: Weft has none.)
 *
 * The policies are those bound with targetRefs to the request's Service or to this
 * waypoint (WaypointAuthorizer picks them). The source is the ORIGINAL client — its
 * identity and address as the waypoint received them in StreamContext.source — not
 * the waypoint: a `from.source.principals` rule names the caller's service account.
 *
 * Pure: the waypoint calls it per request and `weft explain` calls it to say which
 * policy decides, so the reasons are written for people.
 */
import { evaluatePolicy, matchFacts, type RequestAttributes } from '../authz/match';
import type { AuthorizationPolicyRecord } from '../registry/types';
import { GRPC, grpcTrailersOnly } from './grpc-status';

export interface L7AuthzRequest {
  source: { identity?: string | undefined; ip: string };
  /** The address and port the client addressed (a Service VIP and Service port, or a pod). */
  destination: { ip: string; port: number };
  /** Absent for a stream that is not HTTP (L4 passthrough): see evaluatePolicy's `broaden`. */
  request?: RequestAttributes;
}

export interface L7AuthzDecision {
  allowed: boolean;
  /** `namespace/name` of the policy that decided; absent for the defaults. */
  policy?: string;
  /** The action of the deciding policy, for logs and explain. */
  action?: 'ALLOW' | 'DENY';
  /** `namespace/name` of every AUDIT policy that matched. */
  audited: string[];
  /** One sentence for logs and `weft explain`. */
  reason: string;
}

/** The body (and gRPC message) of a denial, as Envoy's RBAC filter answers. */
export const RBAC_DENIED = 'RBAC: access denied';

export function authorizeRequest(req: L7AuthzRequest, policies: readonly AuthorizationPolicyRecord[]): L7AuthzDecision {
  const facts = matchFacts(req.source, req.destination, req.request);
  const audited: string[] = [];
  for (const p of policies) {
    if (p.action === 'AUDIT' && evaluatePolicy(p, facts).matched) audited.push(key(p));
  }
  const what = describe(req);
  for (const p of policies) {
    if (p.action !== 'DENY') continue;
    const m = evaluatePolicy(p, facts, req.request === undefined);
    if (m.matched) return { allowed: false, policy: key(p), action: 'DENY', audited, reason: `DENY policy ${key(p)} matches ${what} (rule ${m.rule})${invalidNote(p)}` };
  }
  let allows = 0;
  for (const p of policies) {
    if (p.action !== 'ALLOW') continue;
    allows++;
    const m = evaluatePolicy(p, facts);
    if (m.matched) return { allowed: true, policy: key(p), action: 'ALLOW', audited, reason: `ALLOW policy ${key(p)} matches ${what} (rule ${m.rule})${invalidNote(p)}` };
  }
  if (allows === 0) return { allowed: true, audited, reason: `no ALLOW policy applies and no DENY policy matches ${what}; allowed by default` };
  const names = policies.filter((p) => p.action === 'ALLOW').map(key);
  return {
    allowed: false, audited,
    reason: `${what} matches none of the ALLOW policies that apply (${names.join(', ')}); ALLOW policies deny everything they do not match`,
  };
}

/**
 * The waypoint's answer to a denied request: 403 with Envoy's body; for gRPC a
 * trailers-only reply (HTTP 200, `grpc-status: 7` PERMISSION_DENIED in the headers),
 * which is what a gRPC client reads as the call's status.
 */
export function deniedAnswer(grpc: boolean): { status: number; headers: Record<string, string>; body: string } {
  if (grpc) return { status: 200, headers: grpcTrailersOnly(GRPC.PERMISSION_DENIED, RBAC_DENIED), body: '' };
  return { status: 403, headers: { 'content-type': 'text/plain' }, body: RBAC_DENIED };
}

/** An invalid policy stays in force (last valid version, or fail-closed): say so where it decides. */
function invalidNote(p: AuthorizationPolicyRecord): string {
  if (!p.invalid) return '';
  return p.invalid.state === 'LastGood'
    ? `; note: ${key(p)} is invalid (${p.invalid.reason}), its last valid version is enforced`
    : `; note: ${key(p)} is invalid (${p.invalid.reason}) and enforced fail-closed`;
}

function key(p: AuthorizationPolicyRecord): string {
  return `${p.namespace}/${p.name}`;
}

function describe(r: L7AuthzRequest): string {
  const from = r.source.identity ? `${r.source.identity} (${r.source.ip})` : `plaintext client ${r.source.ip}`;
  const what = r.request ? `${r.request.method} ${r.request.host}${r.request.path}` : `a TCP stream to ${r.destination.ip}:${r.destination.port}`;
  return `${what} from ${from}`;
}
