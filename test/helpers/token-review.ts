/**
 * The TokenReview endpoint of the API server stand-in (`POST
 * /apis/authentication.k8s.io/v1/tokenreviews`), served through review-route.ts
 * (TestApiServer.extraRoutes). It answers the way kube-apiserver's ServiceAccount authenticator does:
 * tokens are opaque strings issued here for a ServiceAccount, optionally bound to a pod
 * (pod-name/pod-uid extra, node-name extra as on 1.30+), with audiences; a review
 * authenticates a token only for the intersection of its audiences with the requested
 * ones, and (like the real binding check) only while its pod exists with the same uid.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { TestApiServer } from './apiserver';
import { addReviewRoute, TOKEN_REVIEW_PATH, type ReviewReply, type ReviewRequest } from './review-route';

export interface TokenGrant {
  namespace: string;
  serviceAccount: string;
  /** The pod the token is bound to (what a projected volume gives); absent = a legacy Secret token. */
  pod?: { name: string; uid: string };
  /** Sets the node-name extra (Kubernetes 1.30+). */
  node?: string;
  audiences: string[];
}

export interface ReviewLogEntry { token: string; audiences: string[]; authorization: string | undefined }

export class TestTokenReview {
  /** Check that a bound token's pod still exists with the same uid, as kube-apiserver does. */
  validateBinding = true;
  /** Answer like an authenticator that ignores spec.audiences (no status.audiences). */
  ignoreAudiences = false;
  /** Every review asked for, in order. */
  readonly reviews: ReviewLogEntry[] = [];
  private readonly grants = new Map<string, TokenGrant>();

  constructor(private readonly api: TestApiServer) {
    addReviewRoute(api, [TOKEN_REVIEW_PATH], (review) => this.answer(review));
  }

  /** A new opaque token for `grant` (real ones are JWTs; the CA never looks inside). */
  issue(grant: TokenGrant): string {
    const token = `test-sa-token.${randomBytes(24).toString('base64url')}`;
    this.grants.set(token, structuredClone(grant));
    return token;
  }

  /** A token for the pod stored in the stand-in under `namespace/name`, bound to its uid and SA. */
  issueForPod(namespace: string, name: string, opts: { audiences?: string[]; node?: string } = {}): string {
    const pod = this.api.get('pods', namespace, name);
    if (!pod) throw new Error(`no pod ${namespace}/${name} in the API server stand-in`);
    return this.issue({
      namespace, serviceAccount: pod.spec?.serviceAccountName ?? 'default', pod: { name, uid: pod.metadata.uid },
      audiences: opts.audiences ?? ['weft-ca'], ...(opts.node !== undefined ? { node: opts.node } : {}),
    });
  }

  private answer({ spec, authorization }: ReviewRequest): ReviewReply {
    const token = typeof spec.token === 'string' ? spec.token : '';
    const asked = Array.isArray(spec.audiences) ? spec.audiences.map(String) : [];
    const requested = asked.length ? asked : ['https://kubernetes.default.svc.cluster.local'];
    this.reviews.push({ token, audiences: asked, authorization });
    return {
      code: 201,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec, status: this.review(token, requested) },
    };
  }

  private review(token: string, requested: string[]): Record<string, unknown> {
    const fail = (why: string) => ({ authenticated: false, user: {}, error: `[invalid bearer token, ${why}]` });
    const grant = this.grants.get(token);
    if (!grant) return fail('token could not be validated');
    const audiences = this.ignoreAudiences ? undefined : grant.audiences.filter((a) => requested.includes(a));
    if (audiences && audiences.length === 0) {
      return fail(`token audiences ${JSON.stringify(grant.audiences)} is invalid for the target audiences ${JSON.stringify(requested)}`);
    }
    if (grant.pod && this.validateBinding) {
      const pod = this.api.get('pods', grant.namespace, grant.pod.name);
      if (!pod) return fail(`pod "${grant.pod.name}" not found`);
      if (pod.metadata.uid !== grant.pod.uid) return fail(`pod UID (${pod.metadata.uid}) does not match claim (${grant.pod.uid})`);
    }
    const extra: Record<string, string[]> = { 'authentication.kubernetes.io/credential-id': [`JTI=${randomUUID()}`] };
    if (grant.pod) {
      extra['authentication.kubernetes.io/pod-name'] = [grant.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [grant.pod.uid];
    }
    if (grant.node !== undefined) extra['authentication.kubernetes.io/node-name'] = [grant.node];
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${grant.namespace}:${grant.serviceAccount}`,
        uid: randomUUID(),
        groups: ['system:serviceaccounts', `system:serviceaccounts:${grant.namespace}`, 'system:authenticated'],
        extra,
      },
      ...(audiences ? { audiences } : {}),
    };
  }
}
