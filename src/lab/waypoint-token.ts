/**
 * The lab waypoint's CA credential: an identity-scoped token (src/ca/identity-tokens.ts)
 * for exactly its own identity (namespace, service account), in a file only the
 * waypoint reads. A waypoint has no node certificate and, outside Kubernetes, no
 * ServiceAccount token; the CA issues for this token that one identity and nothing else.
 * Tokens are secrets: the state file never holds one, only the 0600 file does.
 */
import { createIdentityToken, revokeIdentityToken } from '../ca/identity-tokens';
import { readFileIfAny, writeFileAtomic } from '../lib/files';
import { openRedis, type RedisTarget } from '../registry/connection';
import type { PlannedWaypoint } from './plan';

/** Lifetime of a lab waypoint's token: as long as the lab's join tokens; reusable by a restarted waypoint until then. */
export const WAYPOINT_TOKEN_TTL_MS = 24 * 3_600_000;

async function withRedis<T>(redisUrl: RedisTarget, fn: (redis: ReturnType<typeof openRedis>) => Promise<T>): Promise<T> {
  const redis = openRedis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/**
 * Creates the identity token of waypoint `w` in the lab's Redis (`redisUrl`, as the
 * root namespace reaches it) and writes it to `file` (mode 0600).
 */
export async function writeWaypointToken(redisUrl: RedisTarget, w: Pick<PlannedWaypoint, 'namespace' | 'serviceAccount'>, file: string): Promise<void> {
  const { token } = await withRedis(redisUrl, (redis) => createIdentityToken(redis,
    { namespace: w.namespace, serviceAccount: w.serviceAccount, ttlMs: WAYPOINT_TOKEN_TTL_MS, purpose: 'waypoint' }));
  writeFileAtomic(file, `${token}\n`, 0o600);
}

/** Revokes the token in `file` (if any) before its expiry: a removed waypoint's token must not outlive it. */
export async function revokeWaypointToken(redisUrl: RedisTarget, file: string): Promise<void> {
  const token = readFileIfAny(file)?.trim();
  if (!token) return; // never written, or already removed
  await withRedis(redisUrl, (redis) => revokeIdentityToken(redis, token));
}
