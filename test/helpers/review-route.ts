/**
 * The request side of kube-apiserver's review APIs (TokenReview, SubjectAccessReview),
 * shared by the API server stand-in's review doubles (token-review.ts for ServiceAccount
 * tokens, access-review.ts for users and RBAC): a review is a POST of a JSON object and
 * is answered with a JSON object, or with a Status as kube-apiserver sends it. The
 * doubles only decide the answer.
 */
import type http from 'node:http';
import type { TestApiServer } from './apiserver';

// Spelled here, not imported from src: the doubles must not agree with a wrong path.
export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
export const SUBJECT_ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

/** A review request as sent: `spec` is what the doubles read. */
export interface ReviewRequest {
  path: string;
  spec: Record<string, unknown>;
  /** The caller's Authorization header (who asked for the review). */
  authorization: string | undefined;
}

export interface ReviewReply { code: number; body: unknown }

/** A Status body, as kube-apiserver answers a refused or failed request. */
export function statusReply(code: number, reason: string, message: string): ReviewReply {
  return { code, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, message, code } };
}

/**
 * Serves `paths` on the stand-in (TestApiServer.extraRoutes): anything but POST is 405,
 * a body that is not a JSON object is 400, otherwise `answer` decides.
 */
export function addReviewRoute(api: TestApiServer, paths: readonly string[], answer: (review: ReviewRequest) => ReviewReply): void {
  api.extraRoutes.push((req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean => {
    if (!paths.includes(url.pathname)) return false;
    const reply = ({ code, body }: ReviewReply): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'POST') {
      reply(statusReply(405, 'MethodNotAllowed', `${req.method ?? '?'} is not allowed on ${url.pathname}`));
      return true;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      if (typeof body !== 'object' || body === null) return reply(statusReply(400, 'BadRequest', 'body is not a JSON object'));
      const spec = (body as { spec?: unknown }).spec;
      reply(answer({
        path: url.pathname,
        spec: typeof spec === 'object' && spec !== null ? spec as Record<string, unknown> : {},
        authorization: req.headers.authorization,
      }));
    });
    return true;
  });
}
