import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { WeftError } from '../lib/errors';
import { isValidNodeName } from './authorize';

/**
 * Node join tokens. An operator, the lab or a controller creates one per node; the
 * ztunnel exchanges it (Join) for its first node certificate.
 *
 * Redis holds only the token's SHA-256, never the token: a reader of the registry
 * cannot join as a node. One key per node (`weft:ca:join:<node>`): creating a token
 * replaces that node's previous one. Tokens are reusable until they expire, on
 * purpose: a restarted ztunnel (or one whose node certificate expired during a long
 * CA outage) must be able to rejoin without an operator. The cost is that a leaked
 * token lets its holder act as that one node until expiry; keep TTLs short and
 * re-create the token to revoke the old one.
 */

export const JOIN_KEY_PREFIX = 'weft:ca:join:';
export const JOIN_TOKEN_PREFIX = 'weft-join.';
const TOKEN_PREFIX = JOIN_TOKEN_PREFIX;

interface StoredToken {
  sha256: string;
  node: string;
  /** Unix ms. */
  expiresAt: number;
}

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export interface JoinTokenVerifier {
  /** Resolves when `token` admits `node`; rejects with WEFT_CA_JOIN_TOKEN_INVALID otherwise. */
  verify(node: string, token: string): Promise<void>;
}

export async function createJoinToken(
  redis: Redis, node: string, ttlMs: number, now = Date.now(),
): Promise<{ token: string; expiresAt: Date }> {
  if (!isValidNodeName(node)) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid --node=${JSON.stringify(node)}: expected a node name (lower-case letters, digits, '-' and '.')`);
  }
  if (!(ttlMs > 0)) throw new WeftError('WEFT_CONFIG_INVALID', `invalid --ttl: expected a positive duration`);
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const stored: StoredToken = { sha256: hashToken(token), node, expiresAt: now + ttlMs };
  await redis.set(JOIN_KEY_PREFIX + node, JSON.stringify(stored), 'PX', ttlMs);
  return { token, expiresAt: new Date(stored.expiresAt) };
}

export class RedisJoinTokens implements JoinTokenVerifier {
  constructor(private readonly redis: Redis, private readonly now: () => number = Date.now) {}

  async verify(node: string, token: string): Promise<void> {
    const refuse = (why: string): never => {
      throw new WeftError('WEFT_CA_JOIN_TOKEN_INVALID',
        `join token for node ${JSON.stringify(node)} refused: ${why}; create a fresh one with \`weft ca token --node ${node}\``);
    };
    if (!isValidNodeName(node)) refuse('the node name is not a valid node name');
    if (!token.startsWith(TOKEN_PREFIX)) refuse(`it is not a Weft join token (they start with ${TOKEN_PREFIX})`);
    let raw: string | null;
    try {
      raw = await this.redis.get(JOIN_KEY_PREFIX + node);
    } catch (err) {
      throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
        `the CA cannot read join tokens from Redis (${err instanceof Error ? err.message : String(err)}); check Redis and retry`,
        { cause: err });
    }
    // Unknown, expired and other-node tokens look alike to the caller on purpose.
    if (raw === null) refuse('no token exists for this node (never created, or expired)');
    let stored: StoredToken;
    try {
      stored = JSON.parse(raw!) as StoredToken;
    } catch {
      return refuse('the stored token record is corrupt');
    }
    const want = Buffer.from(stored.sha256 ?? '', 'hex');
    const got = Buffer.from(hashToken(token), 'hex');
    if (want.length !== got.length || !timingSafeEqual(want, got) || stored.node !== node) {
      refuse('the token does not match this node\'s current token (wrong node, or replaced by a newer token)');
    }
    if (!(stored.expiresAt > this.now())) refuse('the token has expired');
  }
}
