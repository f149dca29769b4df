/**
 * TokenReview and SubjectAccessReview of the API server stand-in, for callers that are
 * users (kube-rbac-proxy style checks, as the ztunnel admin views do): tokens map to a
 * user, and RBAC is a list of (user, namespace, verb, resource, subresource) grants.
 * Answers like kube-apiserver: a TokenReview of an unknown token is 201 with
 * `authenticated: false`; a SubjectAccessReview is 201 with `allowed`.
 * Served through review-route.ts (TestApiServer.extraRoutes).
 */
import type { TestApiServer } from './apiserver';
import { addReviewRoute, statusReply, SUBJECT_ACCESS_REVIEW_PATH, TOKEN_REVIEW_PATH, type ReviewReply, type ReviewRequest } from './review-route';

export interface Grant { user: string; namespace: string; verb: string; resource: string; subresource?: string }

export class TestAccessReview {
  readonly users = new Map<string, { username: string; groups: string[] }>();
  readonly grants: Grant[] = [];
  /** Every review asked for, in order (kind and the user or token reviewed). */
  readonly reviews: { kind: 'TokenReview' | 'SubjectAccessReview'; subject: string; attributes?: Record<string, unknown> }[] = [];
  /** Answer reviews with this HTTP status instead (the reviewer lacks RBAC, or the API is down). */
  failWith?: number;

  constructor(api: TestApiServer) {
    addReviewRoute(api, [TOKEN_REVIEW_PATH, SUBJECT_ACCESS_REVIEW_PATH], (review) => this.answer(review));
  }

  addUser(token: string, username: string, groups: string[] = ['system:authenticated']): this {
    this.users.set(token, { username, groups });
    return this;
  }

  allow(grant: Grant): this {
    this.grants.push(grant);
    return this;
  }

  private answer({ path, spec }: ReviewRequest): ReviewReply {
    if (this.failWith) return statusReply(this.failWith, 'Forbidden', 'injected');
    if (path === TOKEN_REVIEW_PATH) {
      const token = String(spec.token ?? '');
      const user = this.users.get(token);
      this.reviews.push({ kind: 'TokenReview', subject: token });
      return {
        code: 201,
        body: {
          apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec,
          status: user ? { authenticated: true, user: { username: user.username, uid: `uid-${user.username}`, groups: user.groups } } : { authenticated: false, error: 'invalid bearer token' },
        },
      };
    }
    const attrs = (spec.resourceAttributes ?? {}) as Record<string, string | undefined>;
    const user = String(spec.user ?? '');
    this.reviews.push({ kind: 'SubjectAccessReview', subject: user, attributes: attrs });
    const allowed = this.grants.some((g) => g.user === user && g.namespace === attrs.namespace && g.verb === attrs.verb
      && g.resource === attrs.resource && (g.subresource ?? '') === (attrs.subresource ?? ''));
    return { code: 201, body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec, status: { allowed, ...(allowed ? {} : { reason: 'no RBAC grant' }) } } };
  }
}
