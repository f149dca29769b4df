import { createHash } from 'node:crypto';
import type { KubeClient } from '../k8s/client';
import { realClock, type Clock } from '../lib/clock';
import { TtlCache } from '../lib/ttl-cache';
import type { WaypointRecord } from '../gateway/types';
import { identityRefusal, type GrantedIdentity, type IdentityRefusal } from './identity-grant';
import {
  MAX_SA_CACHE_MS, apiError, authenticatedFor, getIfExists, podBinding, podPath, reviewToken,
  type Decision, type PodFacts, type TokenHints, type TokenReviewStatus,
} from './sa-token-join';

/**
 * A waypoint on a cluster proves its identity with its pod's projected ServiceAccount
 * token (audience: the CA's, as the ztunnels' join tokens): the CA asks the API server
 * who the token is (TokenReview, through the same calls and cache discipline as the
 * node path in sa-token-join.ts), requires it to be bound to a pod, reads that pod, and
 * issues only spiffe://<td>/ns/<pod namespace>/sa/<token's service account> when the
 * pod is a live waypoint pod of that ServiceAccount: labelled
 * gateway.networking.k8s.io/gateway-name=<gw> and, when the CA knows the mesh's
 * waypoints, <gw> being a waypoint that runs as that ServiceAccount.
 *
 * Two pure steps (`reviewedWaypointToken`, `waypointPodMay`) decide; the class fetches.
 */

/** The label Gateway API implementations put on a Gateway's pods; Weft's controller does too. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** A token's pod and ServiceAccount, from the review. */
export interface WaypointClaim {
  namespace: string;
  serviceAccount: string;
  pod: string;
  uid: string;
}

/**
 * The mesh's waypoints as the CA knows them (the registry's `waypoint` kind; MeshState
 * will implement it). Seam: while the CA has none, only the pod's label and
 * ServiceAccount are checked, not the Gateway behind the label.
 */
export interface WaypointLookup {
  waypoint(namespace: string, name: string): Pick<WaypointRecord, 'serviceAccount'> | undefined;
}

/**
 * Where the CA reads the token's pod. `weft ca` reads it from the registry's workload
 * records (the controller mirrors pods: uid, name, ServiceAccount, labels), so the CA
 * needs no right to read pods outside weft-system (pod specs carry env and secrets'
 * names). Without it, the pod is read from the API server.
 */
export interface WaypointPodLookup {
  /** The pod the token is bound to, if the registry has that pod (same uid); may throw while the registry is not loaded. */
  pod(claim: WaypointClaim): WaypointPodFacts | undefined;
}

/** Pod fields the decision reads beyond the node path's. */
export type WaypointPodFacts = PodFacts & { metadata?: { labels?: Record<string, string> } };

type Step<T> = Decision<T, IdentityRefusal>;
const no = (reason: IdentityRefusal, why: string): Step<never> => ({ ok: false, reason, why });

const WAYPOINT_HINTS: TokenHints = {
  project: 'project the waypoint pod\'s token with audience: {aud} (the Deployment the controller makes for a weft-waypoint Gateway)',
  fresh: 'the waypoint must send its projected token the kubelet keeps fresh, re-read at each request',
};

const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/**
 * Step 1: did the API server authenticate the token for `audience`, as a
 * ServiceAccount other than the node proxies' (`nodeServiceAccount`), bound to a pod?
 */
export function reviewedWaypointToken(
  status: TokenReviewStatus | undefined, audience: string, nodeServiceAccount: { namespace: string; serviceAccount: string },
): Step<WaypointClaim> {
  const user = authenticatedFor(status, audience, WAYPOINT_HINTS, '');
  if (!user.ok) return user;
  const m = SA_USER.exec(user.value.username ?? '');
  if (!m) {
    return no('unauthenticated', `the token belongs to ${JSON.stringify(user.value.username ?? '')}, which is not a ServiceAccount; send the waypoint pod's projected ServiceAccount token`);
  }
  const [, namespace, serviceAccount] = m as unknown as [string, string, string];
  if (namespace === nodeServiceAccount.namespace && serviceAccount === nodeServiceAccount.serviceAccount) {
    return no('node_credential', `the token is the node proxies' (${namespace}/${serviceAccount}); a node credential is never a waypoint's: the waypoint sends its own pod's token`);
  }
  const bound = podBinding(user.value.extra);
  if (!bound) {
    return no('not_pod_bound', `the token of ${namespace}/${serviceAccount} is not bound to a pod (the TokenReview names none); mount it as a projected serviceAccountToken volume, not from a Secret`);
  }
  return { ok: true, value: { namespace, serviceAccount, pod: bound.name, uid: bound.uid } };
}

/**
 * Step 2: is the token's pod still that pod (uid), alive, of the token's
 * ServiceAccount, and labelled as a waypoint's pod? Resolves with the waypoint's name.
 * `pod` is undefined when the API server has no such pod.
 */
export function waypointPodMay(pod: WaypointPodFacts | undefined, claim: WaypointClaim): Step<string> {
  const id = `${claim.namespace}/${claim.pod}`;
  if (!pod) return no('pod_missing', `pod ${id}, to which the token is bound, does not exist; a deleted pod's token gets no certificate`);
  if (pod.metadata?.uid !== claim.uid) {
    return no('pod_uid', `pod ${id} now has uid ${String(pod.metadata?.uid)}, but the token was issued to uid ${claim.uid} (the pod was re-created); the new pod sends its own token`);
  }
  if (pod.metadata?.deletionTimestamp) {
    return no('pod_deleted', `pod ${id} is being deleted (since ${pod.metadata.deletionTimestamp}); a terminating pod gets no new certificate`);
  }
  if ((pod.spec?.serviceAccountName ?? 'default') !== claim.serviceAccount) {
    return no('pod_service_account', `pod ${id} runs as ServiceAccount ${String(pod.spec?.serviceAccountName)}, not ${claim.serviceAccount} as the token says`);
  }
  const gateway = pod.metadata?.labels?.[GATEWAY_NAME_LABEL];
  if (!gateway) {
    return no('not_waypoint', `pod ${id} has no ${GATEWAY_NAME_LABEL} label, so it is not a waypoint pod; only waypoints get certificates with their own token (workloads get theirs through their node's ztunnel)`);
  }
  return { ok: true, value: gateway };
}

/**
 * Step 3 (when the CA knows the mesh's waypoints): is `gateway` a waypoint of the
 * claim's namespace that runs as the claim's ServiceAccount? Asked on every request,
 * since the Gateway may go while its pod lives on.
 */
export function waypointKnown(waypoints: WaypointLookup, claim: WaypointClaim, gateway: string): Step<string> {
  const record = waypoints.waypoint(claim.namespace, gateway);
  if (!record) {
    return no('waypoint_missing', `pod ${claim.namespace}/${claim.pod} is labelled for waypoint ${claim.namespace}/${gateway}, which the mesh does not know (any more); create the Gateway (class weft-waypoint), or wait until the registry has it`);
  }
  if (record.serviceAccount !== claim.serviceAccount) {
    return no('waypoint_service_account', `waypoint ${claim.namespace}/${gateway} runs as ServiceAccount ${record.serviceAccount}, not ${claim.serviceAccount}; pod ${claim.namespace}/${claim.pod} is not one of its pods`);
  }
  return { ok: true, value: gateway };
}

/** What CaServer calls for a single-identity caller with a ServiceAccount token. */
export interface WaypointTokenVerifier {
  /** Resolves with the identity the token entitles; rejects with WEFT_CA_IDENTITY_* or WEFT_K8S_* (API failures). */
  verify(token: string): Promise<GrantedIdentity>;
}

export interface TokenReviewWaypointsOptions {
  /** The CA's API client (the node path's); TokenReview create and Pod get are used. */
  kube: Pick<KubeClient, 'create' | 'get'>;
  /** The audience the tokens must carry (--join-audience, as for the nodes). */
  audience: string;
  /** The node proxies' ServiceAccount (--join-sa), whose tokens are refused here. */
  nodeServiceAccount: { namespace: string; serviceAccount: string };
  /** The mesh's waypoints; absent = label and ServiceAccount only (see WaypointLookup). */
  waypoints?: WaypointLookup;
  /** The token's pod from the registry; absent = GET from the API server. */
  pods?: WaypointPodLookup;
  /** Per API call (default 3 s). */
  timeoutMs?: number;
  /** Positive answers per token stand this long (default 30 s, at most MAX_SA_CACHE_MS). */
  cacheMs?: number;
  clock?: Clock;
}

const MAX_TOKEN_BYTES = 16 * 1024;
const RBAC = 'create tokenreviews (ClusterRole weft-ca; and get pods in the waypoints\' namespaces when the CA reads pods from the API server rather than the registry); the waypoint retries';

export class TokenReviewWaypoints implements WaypointTokenVerifier {
  private readonly timeoutMs: number;
  /**
   * API answers per token hash, as the node path keeps them: positive ones for the
   * cache window from the review's start, refusals never; concurrent requests share one
   * review. The registry check (WaypointLookup) is local and runs on every request.
   */
  private readonly reviews: TtlCache<string, Step<WaypointClaim & { gateway: string }>>;

  constructor(private readonly opts: TokenReviewWaypointsOptions) {
    this.timeoutMs = opts.timeoutMs ?? 3000;
    const cacheMs = Math.min(opts.cacheMs ?? 30_000, MAX_SA_CACHE_MS);
    this.reviews = new TtlCache({ ttlMs: (d) => (d.ok ? cacheMs : 0), maxEntries: 10_000, clock: opts.clock ?? realClock });
  }

  async verify(token: string): Promise<GrantedIdentity> {
    if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
      throw identityRefusal('unauthenticated', `the token is ${Buffer.byteLength(token)} bytes, more than any ServiceAccount token; send the projected token file's content`);
    }
    const key = createHash('sha256').update(token).digest('hex');
    const d = await this.reviews.get(key, () => this.review(token));
    if (!d.ok) throw identityRefusal(d.reason, d.why);
    if (this.opts.waypoints) {
      const known = waypointKnown(this.opts.waypoints, d.value, d.value.gateway);
      if (!known.ok) throw identityRefusal(known.reason, known.why);
    }
    return { namespace: d.value.namespace, serviceAccount: d.value.serviceAccount, via: 'serviceAccountToken', pod: `${d.value.namespace}/${d.value.pod}` };
  }

  /** Asks the API server; refusals resolve (never cached), API failures reject. */
  private async review(token: string): Promise<Step<WaypointClaim & { gateway: string }>> {
    const { kube, audience } = this.opts;
    const failed = (what: string) => (err: unknown) => { throw apiError(err, what, 'admit a waypoint', RBAC); };
    const status = await reviewToken(kube, token, audience, this.timeoutMs).catch(failed('create a TokenReview'));
    const claim = reviewedWaypointToken(status, audience, this.opts.nodeServiceAccount);
    if (!claim.ok) return claim;
    const pod = this.opts.pods
      ? this.opts.pods.pod(claim.value)
      : await getIfExists<WaypointPodFacts>(kube, podPath(claim.value.namespace, claim.value.pod), this.timeoutMs)
        .catch(failed(`get pod ${claim.value.namespace}/${claim.value.pod}`));
    const ok = waypointPodMay(pod, claim.value);
    if (!ok.ok) return ok;
    return { ok: true, value: { ...claim.value, gateway: ok.value } };
  }
}
