import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { WeftError } from '../lib/errors';
import { SYSTEM_NAMESPACE } from './authorize';
import { identityRefusal, type GrantedIdentity } from './identity-grant';

/**
 * Identity-scoped tokens: the lab's credential for a single-identity process (a
 * waypoint), which has no node certificate and, outside Kubernetes, no ServiceAccount
 * token either. The lab creates one when it starts a waypoint pod and hands it to that
 * pod; the CA issues for it exactly the one identity (namespace, service account) it was
 * created for, for one purpose (`waypoint`), and nothing else.
 *
 * The discipline is the join tokens' (join-tokens.ts): 256 random bits, Redis holds only
 * the SHA-256 with the binding and the expiry (key TTL = token lifetime, the expiry
 * re-checked by the CA), reusable until it expires so a restarted waypoint renews
 * without an operator. Unlike join tokens the key is the token's hash, not the
 * identity: two waypoint pods of one identity (a restart overlapping the old pod) each
 * hold their own token, and one is revoked by deleting it (revokeIdentityToken).
 *
 * Whoever can write Redis can mint these, so a CA with --kube-token-review refuses them
 * (as it refuses join tokens): on a cluster a waypoint proves itself with its projected
 * ServiceAccount token (waypoint-sa.ts).
 */

export const IDENTITY_KEY_PREFIX = 'weft:ca:identity:';
export const IDENTITY_TOKEN_PREFIX = 'weft-id.';
/** What a token may be used for; one value today, stored so a later purpose cannot reuse old tokens. */
export type IdentityPurpose = 'waypoint';
const PURPOSES: readonly IdentityPurpose[] = ['waypoint'];

/** Namespace and service account names as Kubernetes allows them (DNS-1123 label / subdomain). */
const NAMESPACE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

interface StoredIdentityToken {
  namespace: string;
  serviceAccount: string;
  purpose: IdentityPurpose;
  /** Unix ms. */
  expiresAt: number;
}

export interface IdentityTokenRequest {
  namespace: string;
  serviceAccount: string;
  /** How long the token stays valid (reusable until then), in ms. */
  ttlMs: number;
  /** Default `waypoint`. */
  purpose?: IdentityPurpose;
}

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Creates a token for exactly one identity and purpose, stores its hash, and returns it
 * (the only copy). System identities (the node proxies', the CA's namespace) are refused:
 * they are never issued to a single-identity caller.
 */
export async function createIdentityToken(
  redis: Redis, req: IdentityTokenRequest, now = Date.now(),
): Promise<{ token: string; expiresAt: Date }> {
  const purpose = req.purpose ?? 'waypoint';
  if (!NAMESPACE.test(req.namespace)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --namespace=${JSON.stringify(req.namespace)}: expected a namespace name (lower-case letters, digits and '-')`);
  }
  if (req.namespace === SYSTEM_NAMESPACE) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --namespace=${SYSTEM_NAMESPACE}: the mesh's own identities are never issued with an identity token; run the waypoint in the namespace it serves`);
  }
  if (!SERVICE_ACCOUNT.test(req.serviceAccount)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --service-account=${JSON.stringify(req.serviceAccount)}: expected a service account name (lower-case letters, digits, '-' and '.')`);
  }
  if (!PURPOSES.includes(purpose)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid purpose ${JSON.stringify(purpose)}: expected one of ${PURPOSES.join(', ')}`);
  }
  if (!(req.ttlMs > 0)) throw new WeftError('WEFT_CONFIG_INVALID', 'invalid --ttl: expected a positive duration');
  const token = IDENTITY_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const stored: StoredIdentityToken = { namespace: req.namespace, serviceAccount: req.serviceAccount, purpose, expiresAt: now + req.ttlMs };
  await redis.set(IDENTITY_KEY_PREFIX + hashToken(token), JSON.stringify(stored), 'PX', Math.ceil(req.ttlMs));
  return { token, expiresAt: new Date(stored.expiresAt) };
}

/** Revokes one token before its expiry (the lab removing a waypoint). True if it existed. */
export async function revokeIdentityToken(redis: Redis, token: string): Promise<boolean> {
  return (await redis.del(IDENTITY_KEY_PREFIX + hashToken(token))) === 1;
}

/** True for a string shaped like an identity token (which credential path a bearer takes). */
export function isIdentityToken(token: string): boolean {
  return token.startsWith(IDENTITY_TOKEN_PREFIX);
}

export interface IdentityTokenVerifier {
  /**
   * Resolves with the identity `token` was created for when it is known, unexpired and
   * for `purpose`; rejects with WEFT_CA_IDENTITY_TOKEN_INVALID otherwise.
   */
  verify(token: string, purpose: IdentityPurpose): Promise<GrantedIdentity>;
}

export class RedisIdentityTokens implements IdentityTokenVerifier {
  constructor(private readonly redis: Redis, private readonly now: () => number = Date.now) {}

  async verify(token: string, purpose: IdentityPurpose): Promise<GrantedIdentity> {
    const fix = 'create a fresh one with `weft ca identity-token --namespace <ns> --service-account <sa>` (the lab does when it starts a waypoint)';
    if (!isIdentityToken(token)) throw identityRefusal('unknown', `it is not a Weft identity token (they start with ${IDENTITY_TOKEN_PREFIX}); ${fix}`);
    let raw: string | null;
    try {
      // The lookup is by hash: Redis never sees the token, and a wrong token finds nothing.
      raw = await this.redis.get(IDENTITY_KEY_PREFIX + hashToken(token));
    } catch (err) {
      throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
        `the CA cannot read identity tokens from Redis (${err instanceof Error ? err.message : String(err)}); check Redis and retry`,
        { cause: err });
    }
    // Unknown, expired and revoked tokens look alike to the caller on purpose.
    if (raw === null) throw identityRefusal('unknown', `the identity token is unknown (never created, expired or revoked); ${fix}`);
    let stored: StoredIdentityToken;
    try {
      stored = JSON.parse(raw) as StoredIdentityToken;
    } catch {
      throw identityRefusal('unknown', `the stored identity token record is corrupt; ${fix}`);
    }
    if (!(stored.expiresAt > this.now())) throw identityRefusal('expired', `the identity token expired at ${new Date(stored.expiresAt).toISOString()}; ${fix}`);
    if (stored.purpose !== purpose) {
      throw identityRefusal('purpose', `the identity token was created for ${JSON.stringify(stored.purpose)}, not for ${purpose}; ${fix}`);
    }
    if (typeof stored.namespace !== 'string' || typeof stored.serviceAccount !== 'string') {
      throw identityRefusal('unknown', `the stored identity token record is corrupt; ${fix}`);
    }
    return { namespace: stored.namespace, serviceAccount: stored.serviceAccount, via: 'identityToken' };
  }
}
