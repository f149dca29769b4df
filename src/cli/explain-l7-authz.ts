/**
 * `weft explain`'s L7 authorization step: what the destination's waypoint decides for
 * one request under the AuthorizationPolicies bound to the Service or the waypoint
 * (targetRefs), with each policy and whether it matched — by the waypoint's own code
 * (WaypointAuthorizer's lookup, authorizeRequest), run before its routes as there.
 */
import { evaluatePolicy, matchFacts } from '../authz/match';
import { authorizeRequest, RBAC_DENIED, type L7AuthzRequest } from '../waypoint/authorize';
import { WaypointAuthorizer } from '../waypoint/authorizer';
import { silentLogger } from '../lib/log';
import type { MeshState } from '../registry/state';
import type { ServiceRecord } from '../registry/types';
import { serviceWithoutWaypoint, unenforcedText } from './apply-authz';
import type { WaypointL7Context } from './explain-waypoint';
import type { RequestSpec } from './explain-l7';

/** The `l7.authorization` object of `-o json`. */
export interface L7AuthorizationExplanation {
  policies: { policy: string; action: string; matched: boolean; rule?: number }[];
  allowed: boolean;
  decidingPolicy?: string;
  audited: string[];
  reason: string;
}

/** Undefined when no policy is bound to the Service or its waypoint (nothing to say). */
export function explainL7Authorization(ctx: WaypointL7Context, req: RequestSpec): { detail: L7AuthorizationExplanation; lines: string[] } | undefined {
  const { state, service, waypoint, source, port } = ctx;
  const policies = new WaypointAuthorizer({ state, waypoint, logger: silentLogger() }).policiesFor(service.name);
  if (policies.length === 0) return undefined;
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = v.length === 1 ? v[0]! : v;
  const r: L7AuthzRequest = {
    source: { identity: source.identity, ip: source.record.addresses[0] ?? '' },
    destination: { ip: service.vips[0] ?? '', port },
    request: { method: req.method, host: req.authority, path: req.path, headers },
  };
  const facts = matchFacts(r.source, r.destination, r.request);
  const d = authorizeRequest(r, policies);
  const detail: L7AuthorizationExplanation = {
    policies: policies.map((p) => {
      const m = evaluatePolicy(p, facts);
      return { policy: `${p.namespace}/${p.name}`, action: p.action, matched: m.matched, ...(m.rule !== undefined ? { rule: m.rule } : {}) };
    }),
    allowed: d.allowed, audited: d.audited, reason: d.reason,
    ...(d.policy ? { decidingPolicy: d.policy } : {}),
  };
  const lines = ['Authorization (L7, before the routes): policies bound to the Service or the waypoint:'];
  for (const p of detail.policies) lines.push(`  ${p.policy} ${p.action}: ${p.matched ? `matches (rule ${p.rule})` : 'no match'}`);
  lines.push(`Authorization: ${d.allowed ? 'ALLOW' : 'DENY'}${d.policy ? ` by ${d.policy}` : ''} — ${d.reason}`);
  if (d.audited.length) lines.push(`Audited by ${d.audited.join(', ')} (logged, decides nothing)`);
  if (!d.allowed) lines.push(`Answer: 403 ${RBAC_DENIED}${d.policy ? '' : ' (no ALLOW policy matched)'}`);
  return { detail, lines };
}

/**
 * For a Service no waypoint serves: the policies bound to it with targetRefs, which
 * nobody enforces then (weft policies warns the same); undefined when there are none.
 */
export function unenforcedL7Authorization(state: MeshState, service: ServiceRecord): string | undefined {
  const ns = service.namespace;
  const bound = state.waypointPolicies(ns).filter((p) => p.targetRefs!.some((r) => r.kind === 'Service' && r.name === service.name));
  if (bound.length === 0) return undefined;
  const why = serviceWithoutWaypoint(service, state.get('namespace', ns)?.labels, (n) => state.waypoint(ns, n)?.for);
  return why === undefined ? undefined : bound.map((p) => unenforcedText(p, `Service ${ns}/${service.name} ${why}`)).join('; ');
}
