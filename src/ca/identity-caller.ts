import { isWeftError } from '../lib/errors';
import { csrSubjectAltNames } from './csr-names';
import { IDENTITY_REFUSALS, authorizeOwnIdentity, identityRefusal, type GrantedIdentity, type IdentityRefusal } from './identity-grant';
import { isIdentityToken, type IdentityTokenVerifier } from './identity-tokens';
import { JOIN_TOKEN_PREFIX } from './join-tokens';
import { readImpersonatedIdentity, type CertificateRequest } from './proto';
import type { WaypointTokenVerifier } from './waypoint-sa';

/**
 * The CA side of a single-identity caller (a waypoint): which credential a bearer
 * token is, who checks it, and what may be issued for it. The gRPC server calls
 * `ownIdentityFor` for a CreateCertificate that carries a bearer token and no client
 * certificate; everything it throws is a coded refusal (or a WEFT_K8S_* / Redis
 * failure the caller retries).
 */

export interface IdentityCredentialCheckers {
  /** Lab: identity-scoped tokens in Redis; absent on a TokenReview CA (anyone who writes Redis could mint them). */
  identityTokens?: IdentityTokenVerifier | undefined;
  /** Cluster: waypoint pods' projected ServiceAccount tokens; absent without --kube-token-review. */
  waypointTokens?: WaypointTokenVerifier | undefined;
}

/** Checks a bearer token of a caller without a client certificate; resolves with the one identity it grants. */
export async function verifyIdentityCredential(token: string, checkers: IdentityCredentialCheckers): Promise<GrantedIdentity> {
  if (!token) {
    throw identityRefusal('missing', 'no credential was sent; a waypoint sends `authorization: Bearer <token>` (its identity token in the lab, its projected ServiceAccount token on a cluster)');
  }
  if (token.startsWith(JOIN_TOKEN_PREFIX)) {
    throw identityRefusal('node_credential', 'a node join token was sent as a waypoint credential; join tokens admit a node to Join and nothing else: give the waypoint its own identity token (`weft ca identity-token`)');
  }
  if (isIdentityToken(token)) {
    if (!checkers.identityTokens) {
      throw identityRefusal('disabled', checkers.waypointTokens
        ? 'this CA (--kube-token-review) accepts no identity tokens, which anyone able to write Redis could mint; on a cluster the waypoint sends its projected ServiceAccount token'
        : 'this CA has no identity-token store; start it with --redis-url, as the lab does');
    }
    return checkers.identityTokens.verify(token, 'waypoint');
  }
  if (!checkers.waypointTokens) {
    throw identityRefusal('disabled', 'the token is not a Weft identity token, and this CA does not verify ServiceAccount tokens (no --kube-token-review); in the lab give the waypoint an identity token (`weft ca identity-token --namespace <ns> --service-account <sa>`), on a cluster start the CA with --kube-token-review');
  }
  return checkers.waypointTokens.verify(token);
}

/** The identity to issue for a verified single-identity caller's request, or a refusal. */
export function ownIdentityFor(granted: GrantedIdentity, req: CertificateRequest, trustDomain: string): string {
  let impersonated: string | undefined;
  try {
    impersonated = readImpersonatedIdentity(req.metadata);
  } catch (err) {
    throw identityRefusal('identity', `${(err as Error).message}; a single-identity caller leaves ImpersonatedIdentity out`);
  }
  return authorizeOwnIdentity(granted, csrSubjectAltNames(req.csr ?? ''), impersonated, trustDomain);
}

/** The identity check that refused a single-identity caller, for the refusal metric; undefined for other failures. */
export function identityRefusalReason(err: unknown): IdentityRefusal | undefined {
  if (!isWeftError(err)) return undefined;
  const reason = err.details?.reason;
  // API failures carry the node path's 'api_error' under WEFT_K8S_*: counted here too.
  return (IDENTITY_REFUSALS as readonly unknown[]).includes(reason) ? reason as IdentityRefusal : undefined;
}
