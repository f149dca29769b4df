/**
 * The lab waypoint's CA credential: an identity-scoped token for exactly its own
 * identity (namespace, service account), written to a file only the waypoint reads.
 * A waypoint has no node certificate and, outside Kubernetes, no ServiceAccount token;
 * the CA issues for this token that one identity and nothing else (src/ca).
 *
 * SEAM: the token itself comes from src/ca's identity tokens (helper cawp's
 * createIdentityToken / revokeIdentityToken). Until that lands, writeWaypointToken
 * writes a placeholder the CA will refuse; these two functions are the only place to change.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../lib/files';
import type { PlannedWaypoint } from './plan';

/** Lifetime of a lab waypoint's token: as long as the lab's join tokens. */
export const WAYPOINT_TOKEN_TTL_MS = 24 * 3_600_000;

/** Placeholder written until the CA's identity tokens exist; recognisably not a token. */
export const PENDING_TOKEN = 'weft-id.pending-ca-identity-tokens';

/**
 * Creates the identity token of waypoint `w` in the lab's Redis (`redisUrl`, as the
 * root namespace reaches it) and writes it to `file` (mode 0600).
 */
export async function writeWaypointToken(redisUrl: string, w: Pick<PlannedWaypoint, 'namespace' | 'serviceAccount'>, file: string): Promise<void> {
  void redisUrl; void w;
  writeFileAtomic(file, `${PENDING_TOKEN}\n`, 0o600);
}

/** Revokes the token in `file` (if any) before its expiry: a removed waypoint's token must not outlive it. */
export async function revokeWaypointToken(redisUrl: string, file: string): Promise<void> {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch {
    return; // never written, or already removed
  }
  void redisUrl;
  if (token === PENDING_TOKEN) return;
}
