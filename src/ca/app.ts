import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { WeftError } from '../lib/errors';
import { KubeClient } from '../k8s/client';
import { inClusterConfig, loadKubeconfig } from '../k8s/kubeconfig';
import type { Logger } from '../lib/log';
import { describeRedis, openRedis, type RedisTarget } from '../registry/connection';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { Issuer } from './issuer';
import { RedisJoinTokens } from './join-tokens';
import { RedisIdentityTokens } from './identity-tokens';
import { TokenReviewWaypoints } from './waypoint-sa';
import { bundleOf, obtainRoot, publishRoot, watchRoot, type CaRoot, type RootSource } from './root-store';
import { limitsFor } from './rate-limit';
import { TokenReviewJoin, type SaJoinPolicy, type ServiceAccountJoinVerifier } from './sa-token-join';
import { CaServer } from './server';

/**
 * Wires `weft ca`: Redis (join tokens; the root only in lab/dev mode), the registry follower that
 * answers node authorization, the Kubernetes API (ServiceAccount-token joins, when
 * enabled), the gRPC server and a small metrics endpoint.
 */
export interface CaAppConfig {
  /** Redis, with the CA's ACL user, password file and TLS files (--redis-*). */
  redis: RedisTarget;
  trustDomain: string;
  listen: { host: string; port: number };
  /** host:port for /metrics and /healthz/ready; undefined disables it. */
  metricsListen?: { host: string; port: number };
  root: RootSource;
  /** Generate a root when the source has none yet (--generate-root); otherwise a missing root fails the start. */
  generateRoot?: boolean;
  /** How often file-backed roots are re-read for rotation (default 10 s). */
  rootReloadMs?: number;
  /** File to publish the trust bundle to (public parts only: signing root, then earlier roots). */
  rootOut?: string;
  /** Per-caller requests per second (limitsFor): Join per address, CreateCertificate per node. */
  joinRate?: number;
  csrRate?: number;
  dnsNames: string[];
  ipAddresses: string[];
  certTtlMs: number;
  maxCertTtlMs: number;
  nodeCertTtlMs: number;
  /**
   * Admit ServiceAccount-token joins (--kube-token-review): the API server to ask
   * (kubeconfig file, '' = in-cluster service account) and whose tokens may join.
   */
  tokenReview?: { kubeconfig: string; policy: SaJoinPolicy };
  /** Tests only: the shortest lifetime a request may ask for (default 1 minute). */
  minCertTtlMs?: number;
}

export interface CaApp {
  /** Bound gRPC port. */
  port: number;
  /** Bound metrics port, if serving metrics. */
  metricsPort?: number;
  /** The signing root, PEM (the current one, after any reload). */
  readonly rootPem: string;
  /** Signing root plus earlier roots still trusted, PEM. */
  readonly bundlePem: string;
  metrics: Registry;
  stop(): Promise<void>;
}

export async function startCaApp(config: CaAppConfig, logger: Logger): Promise<CaApp> {
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  // Bounded retries: a CA that cannot reach Redis at start should say so, not hang.
  const target = config.redis;
  const redis = openRedis(target, { maxRetriesPerRequest: 2, lazyConnect: true });
  // Failures surface on the commands that hit them; the event alone is just noise.
  redis.on('error', (err: Error) => logger.debug({ err: err.message }, 'CA redis connection error'));
  const cleanups: Array<() => Promise<void> | void> = [() => { redis.disconnect(); }];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn();
  };
  try {
    try {
      await redis.connect();
    } catch (err) {
      throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
        `the CA cannot reach Redis at --redis-url (${err instanceof Error ? err.message : String(err)}); check Redis runs and the URL`,
        { cause: err });
    }
    const rootOpts = { redis, trustDomain: config.trustDomain, logger, generate: config.generateRoot ?? false };
    let root: CaRoot = await obtainRoot(config.root, rootOpts);
    const issuer = new Issuer(root.pair, { trustDomain: config.trustDomain });
    if (config.rootOut) publishRoot(root, config.rootOut);

    const state = new MeshState({ trustDomain: config.trustDomain });
    const follower = new RegistryFollower({ url: target, state, logger, metrics });
    // Not awaited: Join and node renewal need no registry; impersonation waits for it (isReady).
    follower.start().catch((err: unknown) => logger.error({ err }, 'registry follower gave up'));
    cleanups.push(() => follower.stop());

    let saJoin: ServiceAccountJoinVerifier | undefined;
    let waypointTokens: TokenReviewWaypoints | undefined;
    if (config.tokenReview) {
      // Read once here, so a CA outside a pod without --kubeconfig fails at start, not at the first join.
      const cluster = config.tokenReview.kubeconfig ? loadKubeconfig(config.tokenReview.kubeconfig) : inClusterConfig();
      const kube = new KubeClient(cluster);
      cleanups.push(() => kube.close());
      const { policy } = config.tokenReview;
      saJoin = new TokenReviewJoin({ kube, policy });
      // Waypoints present their pod's token for the same audience; the node proxies'
      // ServiceAccount is refused there, and the pod's gateway label must name a
      // waypoint the registry has, running as the token's ServiceAccount.
      waypointTokens = new TokenReviewWaypoints({
        kube, audience: policy.audience, nodeServiceAccount: { namespace: policy.namespace, serviceAccount: policy.serviceAccount },
        waypoints: {
          waypoint: (namespace, name) => {
            // Not loaded yet is not "no such waypoint": the waypoint retries (UNAVAILABLE).
            if (follower.lastSyncAt === undefined) {
              throw new WeftError('WEFT_REGISTRY_UNREACHABLE', 'the CA has not loaded the registry yet, so it cannot check the waypoint behind the pod; retry in a few seconds');
            }
            return state.waypoint(namespace, name);
          },
        },
        // The token's pod from the registry (the controller mirrors pods), not the API
        // server: the CA reads no pod outside weft-system. A pod the controller has not
        // mirrored yet is refused (pod_missing, never cached); the waypoint retries.
        pods: {
          pod: (claim) => {
            if (follower.lastSyncAt === undefined) {
              throw new WeftError('WEFT_REGISTRY_UNREACHABLE', 'the CA has not loaded the registry yet, so it cannot check the pod behind the token; retry in a few seconds');
            }
            const w = state.workload(claim.uid)?.record;
            if (!w || w.namespace !== claim.namespace || w.name !== claim.pod) return undefined;
            return { metadata: { uid: w.uid, name: w.name, namespace: w.namespace, labels: w.labels }, spec: { serviceAccountName: w.serviceAccount } };
          },
        },
      });
      logger.info({ server: kube.server, ...config.tokenReview.policy }, 'ServiceAccount-token joins enabled (TokenReview)');
    }

    const server = new CaServer({
      issuer, trustDomain: config.trustDomain, authorizer: state, trustedRoots: root.trusted,
      // With TokenReview, nodes join by ServiceAccount token only: Redis-held join tokens
      // would let anyone who can write Redis mint node credentials.
      ...(saJoin ? { saJoin, waypointTokens } : { joinTokens: new RedisJoinTokens(redis), identityTokens: new RedisIdentityTokens(redis) }),
      ...(config.joinRate ? { joinLimits: limitsFor(config.joinRate) } : {}),
      ...(config.csrRate ? { csrLimits: limitsFor(config.csrRate) } : {}),
      logger, metrics, certTtlMs: config.certTtlMs, maxCertTtlMs: config.maxCertTtlMs,
      nodeCertTtlMs: config.nodeCertTtlMs, dnsNames: config.dnsNames, ipAddresses: config.ipAddresses,
      isReady: () => follower.lastSyncAt !== undefined,
      ...(config.minCertTtlMs !== undefined ? { minCertTtlMs: config.minCertTtlMs } : {}),
    });
    const port = await server.start(config.listen);
    cleanups.push(() => server.stop());

    // Rotation without restarts: a changed Secret (new signing root, earlier roots in
    // trusted-roots.pem) is picked up here; an invalid one, or a swap the server refuses,
    // is logged and retried at the next poll while the previous root keeps signing.
    const stopWatch = watchRoot(config.root, {
      ...rootOpts, intervalMs: config.rootReloadMs ?? 10_000,
      onChange: async (next) => {
        await server.updateRoot(new Issuer(next.pair, { trustDomain: config.trustDomain }), next.trusted);
        root = next;
        if (config.rootOut) publishRoot(root, config.rootOut);
        logger.warn({ trustedRoots: next.trusted.length }, 'CA root reloaded: new certificates are signed by the new root');
      },
      onError: (err) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'CA root files changed but cannot be used; still signing with the previous root'),
    });
    cleanups.push(stopWatch);

    let metricsPort: number | undefined;
    if (config.metricsListen) {
      const http = metricsServer(metrics, () => follower.lastSyncAt !== undefined);
      http.listen(config.metricsListen.port, config.metricsListen.host);
      await once(http, 'listening');
      metricsPort = (http.address() as { port: number }).port;
      cleanups.push(() => new Promise<void>((r) => { http.close(() => r()); http.closeAllConnections(); }));
    }
    logger.info({ port, metricsPort, root: config.root.kind, redis: describeRedis(target) }, 'weft ca ready');
    return {
      port, metrics, ...(metricsPort !== undefined ? { metricsPort } : {}),
      get rootPem() { return root.pair.certPem; },
      get bundlePem() { return bundleOf(root); },
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

function metricsServer(metrics: Registry, ready: () => boolean): Server {
  return createServer((req, res) => {
    if (req.url === '/metrics' || req.url === '/stats/prometheus') {
      metrics.metrics().then(
        (text) => { res.writeHead(200, { 'content-type': metrics.contentType }); res.end(text); },
        (err: unknown) => { res.writeHead(500); res.end(String(err)); },
      );
    } else if (req.url === '/healthz/ready') {
      // Ready = the registry is loaded, so impersonation requests can be decided.
      const ok = ready();
      res.writeHead(ok ? 200 : 503);
      res.end(ok ? 'ready\n' : 'registry not loaded yet\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
}
