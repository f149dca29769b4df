import { createHash } from 'node:crypto';
import { WeftError, isWeftError } from '../lib/errors';
import { k8sStatus, type KubeClient, type KubeObject } from '../k8s/client';
import { realClock, type Clock } from '../lib/clock';
import { TtlCache } from '../lib/ttl-cache';

/**
 * Node join with a Kubernetes ServiceAccount token, the way Istio's CA admits
 * ztunnels: the ztunnel sends the projected token of its own pod (audience weft-ca),
 * the CA asks the API server who it is (TokenReview), then checks that the pod the
 * token is bound to is a live pod of the join ServiceAccount scheduled on the node
 * that asks to join. Nothing in Redis takes part, so write access to the registry no
 * longer lets anyone join as a node.
 *
 * The decision is two pure steps (`reviewedPod`, `podMayJoin`) over what the API
 * server answered; `TokenReviewJoin` only fetches and hands the answers to them.
 */

/** TokenReview extra keys set for tokens bound to a pod (TokenRequest / projected volumes). */
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
/** Set since Kubernetes 1.30 (ServiceAccountTokenPodNodeInfo): the node of the bound pod. */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

export const DEFAULT_JOIN_AUDIENCE = 'weft-ca';
export const DEFAULT_JOIN_NAMESPACE = 'weft-system';
export const DEFAULT_JOIN_SERVICE_ACCOUNT = 'weft-ztunnel';
/** Projected tokens are ~1 KiB; anything far larger is not one and is not forwarded. */
const MAX_TOKEN_BYTES = 16 * 1024;

/** Why a ServiceAccount-token join was refused: a small fixed set, used as a metric label. */
export const SA_JOIN_REFUSALS = [
  'disabled', 'unauthenticated', 'audience', 'service_account', 'not_pod_bound', 'node_claim',
  'pod_missing', 'pod_deleted', 'pod_uid', 'pod_node', 'node_missing', 'node_deleted', 'missing', 'api_error',
] as const;
export type SaJoinRefusal = (typeof SA_JOIN_REFUSALS)[number];

/** Whose tokens may join, and for which audience. */
export interface SaJoinPolicy {
  /** The audience the tokens must carry (the projected volume's `audience`). */
  audience: string;
  /** Namespace and name of the ServiceAccount the ztunnels run as. */
  namespace: string;
  serviceAccount: string;
}

/** authentication.k8s.io/v1 TokenReviewStatus, as far as the decision reads it. */
export interface TokenReviewStatus {
  authenticated?: boolean;
  error?: string;
  audiences?: string[];
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[] | undefined> };
}

/** The pod a token is bound to, from the review. */
export interface PodClaim {
  name: string;
  uid: string;
  /** Present on Kubernetes 1.30+ (NODE_NAME_EXTRA). */
  node?: string;
}

/** The fields of a Pod the decision reads. */
export interface PodFacts {
  metadata?: { name?: string; namespace?: string; uid?: string; deletionTimestamp?: string | null };
  spec?: { nodeName?: string; serviceAccountName?: string };
}

/** A pure step's answer: the value, or why not (`reason` from a fixed set, for metrics). */
export type Decision<T, R extends string = SaJoinRefusal> = { ok: true; value: T } | { ok: false; reason: R; why: string };

const refuse = <R extends string = SaJoinRefusal>(reason: R, why: string): { ok: false; reason: R; why: string } => ({ ok: false, reason, why });

/** The one value of a TokenReview extra key, if it has exactly one non-empty value. */
export function single(extra: Record<string, string[] | undefined> | undefined, key: string): string | undefined {
  const v = extra?.[key];
  return Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' && v[0] !== '' ? v[0] : undefined;
}

/** How to word the fixes of `authenticatedFor` for whoever sent the token. */
export interface TokenHints {
  /** Where the token's projected volume is declared, e.g. "the ztunnel's token ... (daemonset/ztunnel.yaml)". */
  project: string;
  /** How the sender keeps its token fresh. */
  fresh: string;
}

const ZTUNNEL_HINTS: TokenHints = {
  project: 'project the ztunnel\'s token with audience: {aud} (daemonset/ztunnel.yaml)',
  fresh: 'the ztunnel must send the projected token the kubelet keeps fresh (--join-sa-token-file)',
};

/**
 * The common first step of every ServiceAccount-token check: did the API server
 * authenticate the token, and confirm our audience? Resolves with the user it names.
 */
export function authenticatedFor(status: TokenReviewStatus | undefined, aud: string, hints: TokenHints, audienceFlag = ', or start the CA with the --join-audience the token carries'):
  Decision<NonNullable<TokenReviewStatus['user']>, 'audience' | 'unauthenticated'> {
  const project = hints.project.replace('{aud}', aud);
  if (!status?.authenticated) {
    const error = status?.error || 'no reason given';
    // The API server refuses other-audience tokens as unauthenticated; its error text is
    // the only place that says so, and it is worth a precise hint.
    if (/audience/i.test(error)) {
      return refuse('audience', `the Kubernetes API server refused the token for audience ${aud} (${error}); ${project}${audienceFlag}`);
    }
    return refuse('unauthenticated', `the Kubernetes API server did not authenticate the ServiceAccount token (${error}); it may be expired, revoked (its pod was deleted) or from another cluster: ${hints.fresh}`);
  }
  // An authenticator that ignores spec.audiences answers without status.audiences: such a
  // token might be meant for any service, so it is not accepted here.
  if (!Array.isArray(status.audiences) || !status.audiences.includes(aud)) {
    return refuse('audience', `the TokenReview did not confirm audience ${aud} (it confirmed ${JSON.stringify(status.audiences ?? [])}); ${project}, and check that the API server's authenticator honours TokenReview audiences`);
  }
  return { ok: true, value: status.user ?? {} };
}

/** The pod a token is bound to (TokenRequest / projected volumes), from the review's extra; undefined when not bound. */
export function podBinding(extra: Record<string, string[] | undefined> | undefined): { name: string; uid: string } | undefined {
  const name = single(extra, POD_NAME_EXTRA);
  const uid = single(extra, POD_UID_EXTRA);
  return name && uid ? { name, uid } : undefined;
}

/**
 * Step 1: did the API server authenticate the token, for our audience, as the join
 * ServiceAccount, bound to a pod (and, if it says so, on `node`)?
 */
export function reviewedPod(status: TokenReviewStatus | undefined, policy: SaJoinPolicy, node: string): Decision<PodClaim> {
  const user = authenticatedFor(status, policy.audience, ZTUNNEL_HINTS);
  if (!user.ok) return user;
  const want = `system:serviceaccount:${policy.namespace}:${policy.serviceAccount}`;
  const username = user.value.username ?? '';
  if (username !== want) {
    return refuse('service_account', `the token belongs to ${JSON.stringify(username)}, not to ${want}; run the ztunnel as ServiceAccount ${policy.namespace}/${policy.serviceAccount}, or start the CA with --join-sa=<namespace>/<name> of the ztunnels' ServiceAccount`);
  }
  const extra = user.value.extra;
  const bound = podBinding(extra);
  if (!bound) {
    return refuse('not_pod_bound', `the token is not bound to a pod (the TokenReview has no ${POD_NAME_EXTRA} and ${POD_UID_EXTRA}); mount it as a projected serviceAccountToken volume (daemonset/ztunnel.yaml), not from a Secret`);
  }
  const claimNode = single(extra, NODE_NAME_EXTRA);
  if (extra?.[NODE_NAME_EXTRA] !== undefined && claimNode === undefined) {
    return refuse('node_claim', `the TokenReview's ${NODE_NAME_EXTRA} is not a single node name; the token cannot be tied to node ${node}`);
  }
  const { name, uid } = bound;
  if (claimNode !== undefined && claimNode !== node) {
    return refuse('node_claim', `the token was issued to pod ${policy.namespace}/${name} on node ${claimNode}, not on ${node}; the ztunnel must join as its own node (WEFT_NODE_NAME from spec.nodeName)`);
  }
  return { ok: true, value: { name, uid, ...(claimNode !== undefined ? { node: claimNode } : {}) } };
}

/**
 * Step 2: is the pod the token is bound to still that pod (same uid), alive, and
 * scheduled on `node`? `pod` is undefined when the API server has no such pod.
 */
export function podMayJoin(pod: PodFacts | undefined, claim: PodClaim, policy: SaJoinPolicy, node: string): Decision<PodClaim> {
  const id = `${policy.namespace}/${claim.name}`;
  if (!pod) {
    return refuse('pod_missing', `pod ${id}, to which the token is bound, does not exist; a deleted pod's token may not join: the ztunnel's replacement pod joins with its own token`);
  }
  if (pod.metadata?.uid !== claim.uid) {
    return refuse('pod_uid', `pod ${id} now has uid ${String(pod.metadata?.uid)}, but the token was issued to uid ${claim.uid} (the pod was re-created); the new pod joins with its own token`);
  }
  if (pod.metadata?.deletionTimestamp) {
    return refuse('pod_deleted', `pod ${id} is being deleted (since ${pod.metadata.deletionTimestamp}); a terminating pod may not join, its replacement will`);
  }
  const scheduled = pod.spec?.nodeName ?? '';
  if (scheduled !== node) {
    return refuse('pod_node', `pod ${id} is scheduled on ${scheduled ? `node ${scheduled}` : 'no node yet'}, not on ${node}; a ztunnel may join only as the node its pod runs on (WEFT_NODE_NAME from spec.nodeName)`);
  }
  return { ok: true, value: claim };
}

/** The fields of a Node the decision reads. */
export interface NodeFacts {
  metadata?: { name?: string; deletionTimestamp?: string | null };
}

/**
 * Step 3: does the node the pod runs on still exist (and is it not being deleted)?
 * `node` is undefined when the API server has no such Node.
 */
export function nodeMayJoin(node: NodeFacts | undefined, name: string): Decision<string> {
  if (!node) {
    return refuse('node_missing', `node ${name} does not exist in the Kubernetes API; a deleted node gets no certificates`);
  }
  if (node.metadata?.deletionTimestamp) {
    return refuse('node_deleted', `node ${name} is being deleted (since ${node.metadata.deletionTimestamp}); it gets no more certificates`);
  }
  return { ok: true, value: name };
}

/** The WeftError a refusal becomes on the wire: code by kind, details.reason for metrics. */
export function refusalError(reason: SaJoinRefusal, why: string, node: string, what = 'ServiceAccount token join'): WeftError {
  const code = reason === 'disabled' ? 'WEFT_CA_SA_JOIN_DISABLED'
    : reason === 'unauthenticated' || reason === 'audience' || reason === 'not_pod_bound' || reason === 'missing' ? 'WEFT_CA_SA_TOKEN_INVALID'
      : 'WEFT_CA_SA_TOKEN_DENIED';
  return new WeftError(code, `${what} as node ${JSON.stringify(node)} refused: ${why}`, { details: { reason } });
}

/** What a successful ServiceAccount-token join proved. */
export interface JoinedPod {
  namespace: string;
  pod: string;
  uid: string;
}

/** What CaServer calls for a Join carrying `service_account_token`. */
export interface ServiceAccountJoinVerifier {
  /**
   * Resolves with the pod when `token` proves a pod of the join ServiceAccount on
   * `node`; rejects with a WeftError (details.reason one of SA_JOIN_REFUSALS) otherwise.
   * `cached` lets a recent positive answer for the same node and token stand (the
   * re-check on every CSR); a Join always asks the API server.
   */
  verify(node: string, token: string, opts?: { cached?: boolean; what?: string }): Promise<JoinedPod>;
  /** True when the CA verifies tokens (--kube-token-review); then every node CSR must carry one. */
  readonly enabled: boolean;
}

/** For a CA started without --kube-token-review: every ServiceAccount-token join is refused. */
export const disabledSaJoin: ServiceAccountJoinVerifier = {
  enabled: false,
  verify: (node) => Promise.reject(refusalError('disabled',
    `this CA does not verify ServiceAccount tokens; start the CA with --kube-token-review (it then needs RBAC to create tokenreviews and get pods, daemonset/rbac.yaml), or give the ztunnel a join token from \`weft ca token --node ${node}\``,
    node)),
};

export interface TokenReviewJoinOptions {
  /** The CA's API client; only create (TokenReview) and get (Pod) are used. */
  kube: Pick<KubeClient, 'create' | 'get'>;
  policy: SaJoinPolicy;
  /** Per API call; three calls must fit in the node's 10 s deadline (default 3 s). */
  timeoutMs?: number;
  /**
   * How long a positive answer for (node, token) stands for CSR re-checks (default 30 s,
   * at most 60 s): bounds the API load at ~3 calls per node per window, and bounds how
   * long a deleted pod or node keeps getting certificates.
   */
  cacheMs?: number;
  /** Time source of the cache; injected by tests. */
  clock?: Clock;
}

/** The longest a positive TokenReview answer may be reused. */
export const MAX_SA_CACHE_MS = 60_000;
const MAX_CACHE_ENTRIES = 10_000;

export class TokenReviewJoin implements ServiceAccountJoinVerifier {
  readonly enabled = true;
  private readonly timeoutMs: number;
  /**
   * Answers per (node, token hash): positive ones stand for the cache window, counted
   * from when the review started; refusals and API failures are never kept. Concurrent
   * re-checks of one token (a node's CSR burst) share one review.
   */
  private readonly reviews: TtlCache<string, Decision<JoinedPod>>;

  constructor(private readonly opts: TokenReviewJoinOptions) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
    const cacheMs = Math.min(opts.cacheMs ?? 30_000, MAX_SA_CACHE_MS);
    this.reviews = new TtlCache({ ttlMs: (d) => (d.ok ? cacheMs : 0), maxEntries: MAX_CACHE_ENTRIES, clock: opts.clock ?? realClock });
  }

  async verify(node: string, token: string, opts: { cached?: boolean; what?: string } = {}): Promise<JoinedPod> {
    const what = opts.what ?? 'ServiceAccount token join';
    if (!token) {
      throw refusalError('missing', 'no ServiceAccount token was sent; this CA (--kube-token-review) checks the node\'s pod and node at every request: run the ztunnel with --join-sa-token-file (it sends the token as authorization metadata with every CSR)', node, what);
    }
    if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
      throw refusalError('unauthenticated', `the token is ${Buffer.byteLength(token)} bytes, more than any ServiceAccount token; send the projected token file's content`, node, what);
    }
    const key = `${node}\0${createHash('sha256').update(token).digest('hex')}`;
    // A Join always asks the API server (and its answer replaces any cached one); a CSR
    // re-check may take a recent positive answer or share a review under way.
    const decision = await this.reviews.get(key, () => this.review(node, token), { fresh: !opts.cached });
    if (!decision.ok) throw refusalError(decision.reason, decision.why, node, what);
    return decision.value;
  }

  /**
   * Asks the API server about (node, token). Refusals resolve (so callers sharing the
   * review each word their own error); an API failure rejects.
   */
  private async review(node: string, token: string): Promise<Decision<JoinedPod>> {
    const { policy, kube } = this.opts;
    const failed = (what: string) => (err: unknown) => { throw apiError(err, what, `admit node ${JSON.stringify(node)}`, ZTUNNEL_RBAC); };
    const status = await reviewToken(kube, token, policy.audience, this.timeoutMs).catch(failed('create a TokenReview'));
    const claim = reviewedPod(status, policy, node);
    if (!claim.ok) return claim;

    const pod = await getIfExists<PodFacts>(kube, podPath(policy.namespace, claim.value.name), this.timeoutMs)
      .catch(failed(`get pod ${policy.namespace}/${claim.value.name}`));
    const allowed = podMayJoin(pod, claim.value, policy, node);
    if (!allowed.ok) return allowed;

    const nodeObj = await getIfExists<NodeFacts>(kube, `/api/v1/nodes/${encodeURIComponent(node)}`, this.timeoutMs)
      .catch(failed(`get node ${node}`));
    const nodeOk = nodeMayJoin(nodeObj, node);
    if (!nodeOk.ok) return nodeOk;
    return { ok: true, value: { namespace: policy.namespace, pod: claim.value.name, uid: claim.value.uid } };
  }
}

/** Asks the API server who `token` is, for `audience` (a TokenReview); API failures reject. */
export async function reviewToken(kube: Pick<KubeClient, 'create'>, token: string, audience: string, timeoutMs: number): Promise<TokenReviewStatus | undefined> {
  const review = await kube.create<KubeObject & { status?: TokenReviewStatus }>('/apis/authentication.k8s.io/v1/tokenreviews', {
    apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: {},
    spec: { token, audiences: [audience] },
  }, { timeoutMs });
  return review.status;
}

/** GETs an object; undefined when the API server has none (404), other failures reject. */
export async function getIfExists<T>(kube: Pick<KubeClient, 'get'>, path: string, timeoutMs: number): Promise<T | undefined> {
  try {
    return await kube.get<KubeObject & T>(path, { timeoutMs });
  } catch (err) {
    if (k8sStatus(err) === 404) return undefined;
    throw err;
  }
}

export function podPath(namespace: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
}

const ZTUNNEL_RBAC = 'create tokenreviews and get nodes (ClusterRole weft-ca), get pods in the ztunnels\' namespace (Role weft-ca); the node retries';

/**
 * An API failure is the CA's problem, not the caller's: it gets UNAVAILABLE and
 * retries. The code (WEFT_K8S_*) is kept; the message says what the CA was doing and
 * which rights (`rbac`) it needs.
 */
export function apiError(err: unknown, what: string, purpose: string, rbac: string): WeftError {
  const code = isWeftError(err) && err.code.startsWith('WEFT_K8S_') ? err.code : 'WEFT_K8S_UNREACHABLE';
  // KubeClient's own advice is written for the controller; keep only its facts.
  const facts = (err instanceof Error ? err.message : String(err)).split('; ')[0];
  return new WeftError(code,
    `the CA could not ${what} to ${purpose} (${facts}); check the CA's Kubernetes API access (--kubeconfig or the in-cluster service account) and its RBAC: ${rbac}`,
    { cause: err, details: { reason: 'api_error' satisfies SaJoinRefusal, status: k8sStatus(err) } });
}
