/**
 * TokenReview and SubjectAccessReview of the API server stand-in, for callers that are
 * users (kube-rbac-proxy style checks, as the ztunnel admin views do): tokens map to a
 * user, and RBAC is a list of (user, namespace, verb, resource, subresource) grants.
 * Answers like kube-apiserver: a TokenReview of an unknown token is 201 with
 * `authenticated: false`; a SubjectAccessReview is 201 with `allowed`.
 * Hooked into TestApiServer.extraRoutes.
 */
import type http from 'node:http';
import type { TestApiServer } from './apiserver';

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
export const SUBJECT_ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

export interface Grant { user: string; namespace: string; verb: string; resource: string; subresource?: string }

export class TestAccessReview {
  readonly users = new Map<string, { username: string; groups: string[] }>();
  readonly grants: Grant[] = [];
  /** Every review asked for, in order (kind and the user or token reviewed). */
  readonly reviews: { kind: 'TokenReview' | 'SubjectAccessReview'; subject: string; attributes?: Record<string, unknown> }[] = [];
  /** Answer reviews with this HTTP status instead (the reviewer lacks RBAC, or the API is down). */
  failWith?: number;

  constructor(api: TestApiServer) {
    api.extraRoutes.push(this.route);
  }

  addUser(token: string, username: string, groups: string[] = ['system:authenticated']): this {
    this.users.set(token, { username, groups });
    return this;
  }

  allow(grant: Grant): this {
    this.grants.push(grant);
    return this;
  }

  private readonly route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean => {
    if (url.pathname !== TOKEN_REVIEW_PATH && url.pathname !== SUBJECT_ACCESS_REVIEW_PATH) return false;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reply = (code: number, body: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (this.failWith) return reply(this.failWith, { kind: 'Status', status: 'Failure', reason: 'Forbidden', message: 'injected', code: this.failWith });
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { spec?: Record<string, unknown> };
      const spec = body.spec ?? {};
      if (url.pathname === TOKEN_REVIEW_PATH) {
        const token = String(spec.token ?? '');
        const user = this.users.get(token);
        this.reviews.push({ kind: 'TokenReview', subject: token });
        return reply(201, {
          apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec,
          status: user ? { authenticated: true, user: { username: user.username, uid: `uid-${user.username}`, groups: user.groups } } : { authenticated: false, error: 'invalid bearer token' },
        });
      }
      const attrs = (spec.resourceAttributes ?? {}) as Record<string, string | undefined>;
      const user = String(spec.user ?? '');
      this.reviews.push({ kind: 'SubjectAccessReview', subject: user, attributes: attrs });
      const allowed = this.grants.some((g) => g.user === user && g.namespace === attrs.namespace && g.verb === attrs.verb
        && g.resource === attrs.resource && (g.subresource ?? '') === (attrs.subresource ?? ''));
      return reply(201, { apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec, status: { allowed, ...(allowed ? {} : { reason: 'no RBAC grant' }) } });
    });
    return true;
  };
}
