/**
 * The authorization step of `weft explain`: what a destination's ztunnel decides for
 * a peer identity and source address, with every policy that applies and whether it
 * matched — from authorize/matchPolicy, the functions the inbound listeners run.
 */
import type { MeshState, WorkloadView } from '../registry/state';
import type { HostPort } from '../lib/address';
import { authorize, matchPolicy, type AuthzDecision } from '../ztunnel/authorization';
import type { AuthorizationExplanation, PolicyVerdict, SourceExplanation } from './explain-model';

function describePolicies(state: MeshState, dest: WorkloadView, req: Parameters<typeof authorize>[0]): PolicyVerdict[] {
  return state.policiesFor(dest).map((p) => {
    const m = matchPolicy(p, req);
    const v: PolicyVerdict = { policy: `${p.namespace}/${p.name}`, action: p.action, matched: m.matched };
    if (m.rule !== undefined) v.rule = m.rule;
    return v;
  });
}

export function authorizationAt(
  state: MeshState, dest: WorkloadView, target: HostPort, source: SourceExplanation, peerIdentity: string | undefined, listener: string,
): AuthorizationExplanation {
  const req = { source: peerIdentity ? { identity: peerIdentity, ip: source.ip } : { ip: source.ip }, destination: { workload: dest, ip: target.ip, port: target.port } };
  const mode = state.peerAuthModeFor(dest);
  const decision: AuthzDecision = authorize(req, state.policiesFor(dest), mode);
  const a: AuthorizationExplanation = {
    enforcedBy: `${dest.record.node}'s ztunnel, ${listener}`,
    peerAuthentication: mode,
    policies: describePolicies(state, dest, req),
    allowed: decision.allowed,
    reason: decision.reason,
  };
  if (peerIdentity) a.peerIdentity = peerIdentity;
  if (decision.policy) a.decidingPolicy = decision.policy;
  return a;
}
