/**
 * Who may read the admin views off loopback: a caller with a Kubernetes bearer token
 * that the API server authenticates (TokenReview) and authorizes (SubjectAccessReview)
 * for `get` on `pods/proxy` in the ztunnel's namespace — the very permission the API
 * server checks before it proxies `weft` to these views, so one RoleBinding (the
 * weft-operator Role) governs both paths, as with kube-rbac-proxy.
 *
 * Why a header of our own: kube-apiserver removes the `Authorization` header once it has
 * authenticated a request, so a request arriving through `pods/<pod>/proxy` carries no
 * credential and no user at all. `weft` therefore sends its token (again) in
 * `X-Weft-Authorization: Bearer <token>`, which the API server relays like any other
 * header. A direct caller (a script on the node network) may use either header.
 * mTLS client certificates were the alternative, but the API server's pod proxy does not
 * present one of the caller's, so they cannot identify the operator on that path.
 *
 * Reviews are cached per token (by its SHA-256, never the token itself) for a short
 * time, and concurrent checks of one token share one review (src/lib/ttl-cache.ts), so
 * a `weft --watch` or a burst of callers costs the API server at most one review pair
 * per token and TTL.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { k8sStatus, type KubeClient, type KubeObject } from '../k8s/client';
import { realClock, type Clock } from '../lib/clock';
import { TtlCache } from '../lib/ttl-cache';
import { ADMIN_TOKEN_HEADER } from './admin-types';

export { ADMIN_TOKEN_HEADER };

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
export const SUBJECT_ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

export type AuthOutcome =
  | { ok: true; user: string }
  /** 401: no or bad credential; 403: not allowed; 503: the ztunnel could not ask the API server. */
  | { ok: false; status: 401 | 403 | 503; message: string };

export interface AdminAuthOptions {
  /**
   * The API client, with the ztunnel's own credential. A function, so that a missing or
   * broken configuration is reported per request (fail closed) instead of stopping the
   * ztunnel, whose data path does not depend on it.
   */
  client: () => KubeClient;
  /** Namespace of the `pods/proxy` permission asked for (the ztunnel's). */
  namespace: string;
  /**
   * How long an allowed (or refused) answer is reused, counted from when its review
   * started. Defaults 30 s and 5 s. An API failure (503) is never reused.
   */
  allowTtlMs?: number;
  denyTtlMs?: number;
  /** Tokens remembered at once. Default 1024. */
  maxEntries?: number;
  /** Time source of the cache; injected by tests. */
  clock?: Clock;
}

/** The bearer token of a request: our header first (the pod proxy path), then Authorization. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  for (const name of [ADMIN_TOKEN_HEADER, 'authorization']) {
    const v = headers[name];
    const m = typeof v === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(v) : null;
    if (m) return m[1];
  }
  return undefined;
}

interface UserInfo { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }

export class AdminAuthenticator {
  private readonly reviews: TtlCache<string, AuthOutcome>;

  constructor(private readonly opts: AdminAuthOptions) {
    const allow = opts.allowTtlMs ?? 30_000;
    const deny = opts.denyTtlMs ?? 5_000;
    this.reviews = new TtlCache({
      ttlMs: (o) => (o.ok ? allow : o.status === 503 ? 0 : deny),
      maxEntries: opts.maxEntries ?? 1024,
      clock: opts.clock ?? realClock,
    });
  }

  /** Never rejects: every failure is a refusal with a reason. */
  check(token: string): Promise<AuthOutcome> {
    const key = createHash('sha256').update(token).digest('hex');
    return this.reviews.get(key, () => this.review(token));
  }

  private async review(token: string): Promise<AuthOutcome> {
    let client: KubeClient;
    try {
      client = this.opts.client();
    } catch (err) {
      return { ok: false, status: 503, message: `the ztunnel cannot check credentials: ${(err as Error).message}` };
    }
    let user: UserInfo;
    try {
      const tr = await client.create<KubeObject & { status?: { authenticated?: boolean; user?: UserInfo; error?: string } }>(TOKEN_REVIEW_PATH, {
        apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: {}, spec: { token },
      }, { timeoutMs: 5000 });
      if (!tr.status?.authenticated || !tr.status.user?.username) {
        return { ok: false, status: 401, message: 'the API server did not authenticate the bearer token; send a valid Kubernetes token (weft does: it uses your kubeconfig user)' };
      }
      user = tr.status.user;
    } catch (err) {
      return this.unavailable('create tokenreviews', err);
    }
    const attrs = { namespace: this.opts.namespace, verb: 'get', resource: 'pods', subresource: 'proxy' };
    try {
      const sar = await client.create<KubeObject & { status?: { allowed?: boolean; reason?: string } }>(SUBJECT_ACCESS_REVIEW_PATH, {
        apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', metadata: {},
        spec: {
          user: user.username, groups: user.groups ?? [],
          ...(user.uid ? { uid: user.uid } : {}), ...(user.extra ? { extra: user.extra } : {}),
          resourceAttributes: attrs,
        },
      }, { timeoutMs: 5000 });
      if (!sar.status?.allowed) {
        return {
          ok: false, status: 403,
          message: `${user.username} may not get pods/proxy in namespace ${this.opts.namespace}; bind the weft-operator Role (daemonset/rbac.yaml) to read the ztunnel admin views`,
        };
      }
    } catch (err) {
      return this.unavailable('create subjectaccessreviews', err);
    }
    return { ok: true, user: user.username! };
  }

  private unavailable(what: string, err: unknown): AuthOutcome {
    const status = k8sStatus(err);
    const why = status === 401 || status === 403
      ? `the API server refused the ztunnel's own request to ${what} (HTTP ${status}); give its ServiceAccount the weft-ztunnel-admin-auth ClusterRole (daemonset/rbac.yaml)`
      : `the ztunnel could not ${what}: ${err instanceof Error ? err.message : String(err)}`;
    return { ok: false, status: 503, message: why };
  }
}
