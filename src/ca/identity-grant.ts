import { WeftError, type ErrorCode } from '../lib/errors';
import { formatIdentity } from '../lib/identity';
import { SYSTEM_NAMESPACE } from './authorize';
import type { CsrNames } from './csr-names';

/**
 * Single-identity callers of CreateCertificate (a waypoint): no node certificate, a
 * bearer credential that names exactly one identity, and a CSR that asks for exactly
 * that identity. What a credential granted, the refusal vocabulary, and the pure
 * decision over the CSR's names live here; the credentials themselves are checked in
 * identity-tokens.ts (lab) and waypoint-sa.ts (cluster).
 */

/** What a verified credential entitles its holder to: one identity. */
export interface GrantedIdentity {
  namespace: string;
  serviceAccount: string;
  /** Which credential proved it (for the log). */
  via: 'identityToken' | 'serviceAccountToken';
  /** The pod a ServiceAccount token is bound to, `<ns>/<name>`. */
  pod?: string;
}

/**
 * Why a single-identity caller was refused: a fixed set, used as a metric label. The
 * first group is about the credential itself (UNAUTHENTICATED), the rest about what it
 * was used for (PERMISSION_DENIED).
 */
export const IDENTITY_REFUSALS = [
  'missing', 'disabled', 'unknown', 'expired', 'purpose', 'node_credential', 'mixed', 'unauthenticated', 'audience', 'not_pod_bound',
  'pod_missing', 'pod_uid', 'pod_deleted', 'pod_service_account', 'not_waypoint', 'waypoint_missing', 'waypoint_service_account',
  'system_identity', 'identity', 'csr_names', 'api_error',
] as const;
export type IdentityRefusal = (typeof IDENTITY_REFUSALS)[number];

const CREDENTIAL_REFUSALS: ReadonlySet<IdentityRefusal> = new Set([
  'missing', 'disabled', 'unknown', 'expired', 'purpose', 'node_credential', 'mixed', 'unauthenticated', 'audience', 'not_pod_bound',
]);

/** The WeftError a refusal becomes: code by group, `details.reason` for the metric. */
export function identityRefusal(reason: IdentityRefusal, why: string): WeftError {
  const code: ErrorCode = CREDENTIAL_REFUSALS.has(reason) ? 'WEFT_CA_IDENTITY_TOKEN_INVALID' : 'WEFT_CA_IDENTITY_DENIED';
  return new WeftError(code, `single-identity certificate request refused: ${why}`, { details: { reason } });
}

/**
 * What to issue for `granted`: its SPIFFE id, and only when the CSR asks for exactly
 * that (its one URI SAN, no other SAN) and ImpersonatedIdentity, if sent, names it too.
 * A CSR naming more is refused rather than trimmed, so a client never believes it holds
 * a name it does not.
 */
export function authorizeOwnIdentity(
  granted: GrantedIdentity, names: CsrNames, impersonated: string | undefined, trustDomain: string,
): string {
  const identity = formatIdentity({ trustDomain, namespace: granted.namespace, serviceAccount: granted.serviceAccount });
  const ask = `send a CSR whose only subject alternative name is the URI ${identity}`;
  if (granted.namespace === SYSTEM_NAMESPACE) {
    throw identityRefusal('system_identity', `${identity} is in the mesh's system namespace ${SYSTEM_NAMESPACE}, whose identities are never issued to a single-identity caller; run the waypoint in the namespace it serves`);
  }
  if (names.others.length > 0) {
    throw identityRefusal('csr_names', `the CSR also asks for ${names.others.slice(0, 3).join(', ')}; a waypoint's certificate carries only its SPIFFE id: ${ask}`);
  }
  if (names.uris.length !== 1) {
    throw identityRefusal('csr_names', `the CSR asks for ${names.uris.length} URI names (${JSON.stringify(names.uris.slice(0, 3))}), not exactly one; ${ask}`);
  }
  if (names.uris[0] !== identity) {
    throw identityRefusal('identity', `the CSR asks for ${JSON.stringify(names.uris[0])}, but the credential is for ${identity} only; ${ask}`);
  }
  if (impersonated !== undefined && impersonated !== identity) {
    throw identityRefusal('identity', `ImpersonatedIdentity ${JSON.stringify(impersonated)} is not the credential's own identity ${identity}; a single-identity caller cannot act for others: leave ImpersonatedIdentity out`);
  }
  return identity;
}
