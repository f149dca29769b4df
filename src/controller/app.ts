/**
 * Wiring of `weft controller`: API client, Redis store, leader elector, controller and
 * the HTTP endpoint for /metrics and /healthz/ready (ready once every informer has
 * listed: followers are ready too, so a rollout does not wait for the lease).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { KubeClient } from '../k8s/client';
import type { ClusterConfig } from '../k8s/kubeconfig';
import type { Logger } from '../lib/log';
import { describeRedis, type RedisTarget } from '../registry/connection';
import { RegistryStore } from '../registry/store';
import { Controller } from './controller';
import { LeaderElector } from './leader';
import type { WaypointDeployConfig } from './waypoint-deploy';
import type { K8sPod } from './k8s-types';
import { toConnection } from '../registry/connection';
import { redisValuesOf } from '../lib/common-options';

/**
 * What waypoint Deployments get: the same weft image as this controller (read from its
 * own pod, so an image override in a kustomize overlay reaches the waypoints too) and
 * the settings the controller itself runs with. Without an image the waypoints are
 * mirrored but not deployed, which is logged.
 */
async function waypointSettings(config: ControllerAppConfig, client: KubeClient, logger: Logger): Promise<WaypointDeployConfig | undefined> {
  const w = config.waypoints;
  if (!w) return undefined;
  let image = w.image;
  if (!image && w.ownPod) {
    try {
      const pod = await client.get<K8sPod>(`/api/v1/namespaces/${w.ownPod.namespace}/pods/${w.ownPod.name}`);
      const cs = pod.spec?.containers ?? [];
      image = (cs.find((c) => c.name === 'controller') ?? cs[0])?.image ?? '';
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'could not read this pod to learn the weft image');
    }
  }
  if (!image) {
    logger.warn('no waypoint image (--waypoint-image, or POD_NAME and POD_NAMESPACE of the controller pod): Gateways of class weft-waypoint are mirrored but not deployed');
    return undefined;
  }
  const redis = toConnection(config.redis);
  const values = redisValuesOf(redis);
  return {
    image, redisUrl: redis.url, redisAuth: Boolean(redis.username || redis.passwordFile), caAddress: w.caAddress,
    ...(redis.sentinel ? {
      redisSentinel: {
        sentinels: values.redisSentinels, masterName: values.redisMasterName,
        ...(redis.sentinel.username ? { username: redis.sentinel.username } : {}),
      },
    } : {}),
    trustDomain: w.trustDomain, logLevel: w.logLevel, systemNamespace: w.systemNamespace,
    ...(w.telemetry ? { telemetry: w.telemetry } : {}),
  };
}

export interface ControllerAppConfig {
  cluster: ClusterConfig;
  /** The registry's Redis, with the controller's ACL user, password file and TLS files (--redis-*). */
  redis: RedisTarget;
  /** Key prefix in Redis (tests); default weft:. */
  redisPrefix?: string;
  clusterDomain: string;
  /** --istio-root-namespace: its mesh-wide Istio-group policies are weft-system's. */
  istioRootNamespace?: string;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  leaseDurationSeconds: number;
  /** Absent: no HTTP endpoint. */
  metricsListen?: { host: string; port: number };
  /** false: single replica without a Lease. */
  leaderElection: boolean;
  defaultMetrics?: boolean;
  /** Deploying waypoints for Gateways of class weft-waypoint; absent: mirrored only. */
  waypoints?: {
    /** Empty: the image of ownPod's controller container. */
    image: string;
    caAddress: string;
    trustDomain: string;
    logLevel: string;
    systemNamespace: string;
    /** The waypoints' tracing (--trace-sampling, --otlp-endpoint); absent: their defaults. */
    telemetry?: WaypointDeployConfig['telemetry'];
    ownPod?: { namespace: string; name: string };
  };
}

export interface ControllerApp {
  controller: Controller;
  elector?: LeaderElector;
  metricsPort?: number;
  stop(): Promise<void>;
}

export async function startControllerApp(config: ControllerAppConfig, logger: Logger): Promise<ControllerApp> {
  const metrics = new Registry();
  if (config.defaultMetrics) collectDefaultMetrics({ register: metrics });
  const client = new KubeClient(config.cluster);
  const store = RegistryStore.connect(config.redis, { logger, ...(config.redisPrefix ? { prefix: config.redisPrefix } : {}) });
  const elector = config.leaderElection
    ? new LeaderElector(client, {
      namespace: config.leaseNamespace, name: config.leaseName, identity: config.identity,
      leaseDurationSeconds: config.leaseDurationSeconds, logger,
    })
    : undefined;
  const waypoints = await waypointSettings(config, client, logger);
  const controller = new Controller({ client, store, clusterDomain: config.clusterDomain, elector, logger, metrics,
    ...(config.istioRootNamespace ? { istioRootNamespace: config.istioRootNamespace } : {}), ...(waypoints ? { waypoints } : {}) });
  let server: http.Server | undefined;
  let metricsPort: number | undefined;
  if (config.metricsListen) {
    server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        metrics.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.contentType });
          res.end(text);
        }, (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        });
      } else if (path === '/healthz/ready') {
        const ok = controller.synced;
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        const pending = Object.entries(controller.informers).filter(([, i]) => !i.synced).map(([, i]) => i.path);
        res.end(ok ? `ready (${controller.isLeader ? 'leader' : 'follower'})\n` : `not listed yet: ${pending.join(', ')}\n`);
      } else if (path === '/healthz/live') {
        res.writeHead(200);
        res.end('ok\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    const s = server;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(config.metricsListen!.port, config.metricsListen!.host, () => resolve());
    });
    metricsPort = (server.address() as AddressInfo).port;
  }
  controller.start();
  logger.info({ server: client.server, redis: describeRedis(config.redis), identity: config.identity, leaderElection: config.leaderElection, metricsPort }, 'weft controller started');
  return {
    controller, elector, metricsPort,
    async stop() {
      // Releasing the lease (in controller.stop) lets a standby take over at once.
      await controller.stop();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      server?.closeAllConnections?.();
      client.close();
      await store.close();
    },
  };
}
