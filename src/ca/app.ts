import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { WeftError } from '../lib/errors';
import { KubeClient } from '../k8s/client';
import { inClusterConfig, loadKubeconfig } from '../k8s/kubeconfig';
import type { Logger } from '../lib/log';
import { describeRedis, openRedis, type RedisAuth } from '../registry/connection';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { Issuer } from './issuer';
import { RedisJoinTokens } from './join-tokens';
import { obtainRoot, publishRoot, type RootSource } from './root-store';
import { TokenReviewJoin, type SaJoinPolicy, type ServiceAccountJoinVerifier } from './sa-token-join';
import { CaServer } from './server';

/**
 * Wires `weft ca`: Redis (root storage, join tokens), the registry follower that
 * answers node authorization, the Kubernetes API (ServiceAccount-token joins, when
 * enabled), the gRPC server and a small metrics endpoint.
 */
export interface CaAppConfig {
  redisUrl: string;
  /** The CA's Redis ACL user, password file and TLS files (--redis-*); none by default. */
  redisAuth?: RedisAuth;
  trustDomain: string;
  listen: { host: string; port: number };
  /** host:port for /metrics and /healthz/ready; undefined disables it. */
  metricsListen?: { host: string; port: number };
  root: RootSource;
  /** File to publish the root certificate to (the public part only). */
  rootOut?: string;
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
  rootPem: string;
  metrics: Registry;
  stop(): Promise<void>;
}

export async function startCaApp(config: CaAppConfig, logger: Logger): Promise<CaApp> {
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics });
  // Bounded retries: a CA that cannot reach Redis at start should say so, not hang.
  const target = { url: config.redisUrl, ...config.redisAuth };
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
    const root = await obtainRoot(config.root, { redis, trustDomain: config.trustDomain, logger });
    const issuer = new Issuer(root, { trustDomain: config.trustDomain });
    await publishRoot(issuer.rootPem, { redis, ...(config.rootOut ? { outFile: config.rootOut } : {}) });

    const state = new MeshState({ trustDomain: config.trustDomain });
    const follower = new RegistryFollower({ url: target, state, logger, metrics });
    // Not awaited: Join and node renewal need no registry; impersonation waits for it (isReady).
    follower.start().catch((err: unknown) => logger.error({ err }, 'registry follower gave up'));
    cleanups.push(() => follower.stop());

    let saJoin: ServiceAccountJoinVerifier | undefined;
    if (config.tokenReview) {
      // Read once here, so a CA outside a pod without --kubeconfig fails at start, not at the first join.
      const cluster = config.tokenReview.kubeconfig ? loadKubeconfig(config.tokenReview.kubeconfig) : inClusterConfig();
      const kube = new KubeClient(cluster);
      cleanups.push(() => kube.close());
      saJoin = new TokenReviewJoin({ kube, policy: config.tokenReview.policy });
      logger.info({ server: kube.server, ...config.tokenReview.policy }, 'ServiceAccount-token joins enabled (TokenReview)');
    }

    const server = new CaServer({
      issuer, trustDomain: config.trustDomain, authorizer: state, joinTokens: new RedisJoinTokens(redis),
      ...(saJoin ? { saJoin } : {}),
      logger, metrics, certTtlMs: config.certTtlMs, maxCertTtlMs: config.maxCertTtlMs,
      nodeCertTtlMs: config.nodeCertTtlMs, dnsNames: config.dnsNames, ipAddresses: config.ipAddresses,
      isReady: () => follower.lastSyncAt !== undefined,
      ...(config.minCertTtlMs !== undefined ? { minCertTtlMs: config.minCertTtlMs } : {}),
    });
    const port = await server.start(config.listen);
    cleanups.push(() => server.stop());

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
      port, rootPem: issuer.rootPem, metrics, ...(metricsPort !== undefined ? { metricsPort } : {}),
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
