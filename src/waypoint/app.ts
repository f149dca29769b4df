/**
 * Wires one waypoint: registry follower → MeshState → its own certificate → the HBONE
 * server (presenting that certificate to every source ztunnel) → the L7 handler with
 * the mesh router and dialer → upstream HBONE with the same identity. Plus readiness
 * (15021), metrics (15020) and admin (15000, localhost).
 *
 * A waypoint never holds a node credential: it asks the CA for exactly its own
 * identity with its bearer token (ca/identity-certs.ts). It serves only the Services
 * bound to it (and pods bound to it, for a waypoint that serves workloads); anything
 * else is refused, so a misrouted stream is never proxied by the wrong policy.
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { CaClient } from '../ca/client';
import type { CertificateManager } from '../ca/cert-manager';
import { identityCertSource } from '../ca/identity-certs';
import { TrustAnchorFile } from '../ca/trust-bundle';
import type { CertSource } from '../hbone/contracts';
import { HbonePool } from '../hbone/pool';
import { clientAddress } from '../hbone/request';
import { HboneServer, type HboneStreamContext } from '../hbone/server';
import { realClock } from '../lib/clock';
import { formatIdentity } from '../lib/identity';
import { closeServer, json, listenTcp, loggingRoute, metricsServer, readinessServer, serve } from '../lib/http-endpoints';
import type { Logger } from '../lib/log';
import { shutdownStep, StopOnce } from '../lib/shutdown-step';
import { VERSION } from '../lib/version';
import { registerBuildInfo } from '../telemetry/build-info';
import { describeRedis } from '../registry/connection';
import { RegistryFollower } from '../registry/follower';
import { MeshState } from '../registry/state';
import { WaypointAuthorizer } from './authorizer';
import { Admission } from './admission';
import { MeshDialer } from './dialer';
import { WaypointL7 } from './handler';
import { WaypointMetrics } from './metrics';
import type { WaypointConfig } from './options';
import { MeshRouter } from './router';
import { OutlierDetectors } from './outlier-detectors';
import { ServiceBulkheads } from './bulkheads';
import { registerLoadGauges } from './load-gauges';
import { TrafficPolicies } from './traffic-policies';
import type { StreamContext } from './types';
import { ProxyTelemetry } from '../telemetry/proxy-telemetry';

/** Test hooks: another certificate source (no CA), another clock of randomness. */
export interface WaypointDeps {
  /** Replaces the CA client and identity certificate source (tests with their own CA). */
  certs?: CertSource;
  random?: () => number;
}

export interface WaypointStatus {
  waypoint: string;
  identity: string;
  version: string;
  ready: boolean;
  registryRevision: number;
  registryStalenessSeconds: number;
  startedAt: string;
}

/**
 * The waypoint leaves its HBONE send buffers to the kernel: the ztunnel at the other end
 * of each of its connections raises its own, which is enough to keep both reading
 * (src/hbone/send-buffer.ts), and a waypoint pod has no CAP_NET_ADMIN to raise them.
 */
const WAYPOINT_HBONE_TUNING = { sendBuffer: 0 };

export class WaypointApp {
  readonly metrics = new Registry();
  readonly state: MeshState;
  readonly identity: string;
  private follower: RegistryFollower | undefined;
  private caClient: CaClient | undefined;
  private anchors: TrustAnchorFile | undefined;
  private ownCerts: CertificateManager | undefined;
  private certs: CertSource | undefined;
  private pool: HbonePool | undefined;
  private router: MeshRouter | undefined;
  private policies: TrafficPolicies | undefined;
  private outliers: OutlierDetectors | undefined;
  private bulkheads: ServiceBulkheads | undefined;
  private authorizer: WaypointAuthorizer | undefined;
  private l7: WaypointL7 | undefined;
  private admission: Admission | undefined;
  private telemetry: ProxyTelemetry | undefined;
  private hbone: HboneServer | undefined;
  private unfollowMetrics: (() => void) | undefined;
  private readonly servers: Server[] = [];
  private readonly startedAt = new Date();
  private listening = false;
  private readonly stopper = new StopOnce(() => this.shutdown(), () => { this.l7?.close(); });

  constructor(readonly config: WaypointConfig, readonly logger: Logger, private readonly deps: WaypointDeps = {}) {
    collectDefaultMetrics({ register: this.metrics });
    registerBuildInfo(this.metrics, 'waypoint');
    this.state = new MeshState({ trustDomain: config.trustDomain });
    this.identity = formatIdentity({ trustDomain: config.trustDomain, namespace: config.namespace, serviceAccount: config.serviceAccount });
  }

  async start(): Promise<void> {
    const { config } = this;
    const log = this.logger.child({ waypoint: `${config.namespace}/${config.name}` });
    // Readiness answers from the start (503 until ready) so probes never see a refused port.
    await this.serve(readinessServer(this), config.address, config.readinessPort);

    this.follower = new RegistryFollower({ url: config.redis, state: this.state, logger: log, metrics: this.metrics });
    await this.follower.start();
    if (!this.state.waypoint(config.namespace, config.name)) {
      log.warn({}, 'this waypoint is not in the registry yet: nothing is routed to it until it is (weft waypoint add, or its Gateway on a cluster)');
    }

    this.certs = this.deps.certs ?? this.identityCerts(log);
    // The first certificate before listening: a source must never meet a waypoint without one.
    await this.certs.get(this.identity);

    const pool = new HbonePool({ certs: this.certs, logger: log, tuning: WAYPOINT_HBONE_TUNING });
    this.pool = pool;
    // One TrafficPolicy table for the router and the per-Service state that follows it.
    const policies = new TrafficPolicies(this.state);
    this.policies = policies;
    const policyOf = (ns: string, name: string) => policies.forService(ns, name);
    const outliers = new OutlierDetectors({ clock: realClock, logger: log.child({ component: 'outlier' }), policyOf, registry: this.metrics });
    const bulkheads = new ServiceBulkheads(policyOf, this.metrics);
    this.outliers = outliers;
    this.bulkheads = bulkheads;
    const admission = new Admission({ policies, clock: realClock, metrics: this.metrics, ...(this.deps.random ? { random: this.deps.random } : {}) });
    this.admission = admission;
    policies.on('change', () => {
      outliers.prune();
      bulkheads.prune();
      admission.prune();
    });
    this.router = new MeshRouter({
      state: this.state, policies, endpointFilter: outliers, bulkheads, reporters: [outliers], ...(this.deps.random ? { random: this.deps.random } : {}),
    });
    const metrics = new WaypointMetrics(this.metrics, this.state);
    this.unfollowMetrics = metrics.followState(this.state);
    const dialer = new MeshDialer({ pool, identity: this.identity, address: config.address });
    const telemetry = new ProxyTelemetry({
      proxy: `waypoint ${config.namespace}/${config.name}`, config, registry: this.metrics, logger: log,
      ...(this.deps.random ? { random: this.deps.random } : {}),
    });
    this.telemetry = telemetry;
    this.authorizer = new WaypointAuthorizer({
      state: this.state, waypoint: { namespace: config.namespace, name: config.name }, registry: this.metrics, logger: log.child({ component: 'authz' }),
    });
    this.l7 = new WaypointL7({
      router: this.router, authorizer: this.authorizer, dialer, logger: log.child({ component: 'l7' }), observer: metrics, admission, telemetry, workloads: this.state,
      passthrough: (stream, ctx) => this.passthrough(stream, ctx, dialer),
    });
    registerLoadGauges(this.metrics, () => this.l7?.load());
    this.hbone = new HboneServer({
      logger: log.child({ component: 'hbone' }), certs: this.certs, trustDomain: config.trustDomain,
      identityFor: () => this.identity,
      handler: (stream, ctx) => this.onStream(stream, ctx),
      tuning: WAYPOINT_HBONE_TUNING,
    });
    await this.hbone.listen(config.address, config.hbonePort);
    this.listening = true;
    // The resilience views, read-only, also beside the metrics on the pod's address, where
    // `weft outliers` and `weft admission` read them. They show counters and states, and
    // the endpoints' addresses (as the registry does to every mesh reader); nothing secret.
    const resilienceViews = {
      '/outliers': (_q, _u, res) => json(res, 200, this.outliers?.views() ?? []),
      '/pools': (_q, _u, res) => json(res, 200, this.bulkheads?.views() ?? []),
      '/admission': (_q, _u, res) => json(res, 200, this.admission?.views() ?? []),
    } satisfies Parameters<typeof metricsServer>[1];
    await this.serve(metricsServer(this, { ...resilienceViews, ...telemetry.views() }), config.address, config.metricsPort);
    await this.serve(serve({
      '/status': (_q, _u, res) => json(res, 200, this.status()),
      '/routes': (_q, _u, res) => json(res, 200, this.router?.routes ?? []),
      '/trafficpolicies': (_q, _u, res) => json(res, 200, this.router?.policies.views() ?? []),
      '/balancers': (_q, _u, res) => json(res, 200, this.router?.balancerViews() ?? []),
      '/retries': (_q, _u, res) => json(res, 200, this.router?.retryBudgetViews() ?? []),
      ...resilienceViews,
      '/logging': loggingRoute(this.logger),
    }, this.logger), '127.0.0.1', config.adminPort);
    log.info({ address: config.address, identity: this.identity, redis: describeRedis(config.redis), version: VERSION }, 'waypoint started');
  }

  /** Where HBONE listens (tests pass port 0). */
  hboneAddress(): { address: string; port: number } | undefined {
    const a = this.hbone?.address();
    return a ? { address: a.address, port: a.port } : undefined;
  }

  private identityCerts(log: Logger): CertificateManager {
    const { config } = this;
    const anchors = new TrustAnchorFile(config.trustAnchorFile, { logger: log });
    this.anchors = anchors;
    this.caClient = new CaClient({
      address: `${config.caAddress.host}:${config.caAddress.port}`, trustDomain: config.trustDomain, rootPem: anchors.pem,
      ...(config.caServerName ? { serverName: config.caServerName } : {}),
    });
    anchors.on('change', (bundle) => this.caClient?.setRootPem(bundle.pem));
    this.ownCerts = identityCertSource({
      client: this.caClient, identity: this.identity, tokenFile: config.identityTokenFile, tokenFileFlag: '--identity-token-file',
      logger: log, metrics: this.metrics, ttlSec: Math.round(config.certTtl / 1000),
    });
    return this.ownCerts;
  }

  /** One accepted CONNECT: check it is ours to serve, answer 200, hand the bytes to L7. */
  private onStream(stream: import('node:http2').ServerHttp2Stream, ctx: HboneStreamContext): void {
    const target = ctx.target;
    const service = this.state.serviceByVip(target.ip);
    const wp = { namespace: this.config.namespace, name: this.config.name };
    let destination: StreamContext['destination'];
    if (service) {
      if (service.namespace !== wp.namespace || this.state.serviceWaypointName(service) !== wp.name) {
        ctx.refuse(503, `service ${service.namespace}/${service.name} is not bound to waypoint ${wp.namespace}/${wp.name}`);
        return;
      }
      const port = service.ports.find((p) => p.port === target.port);
      if (!port) {
        ctx.refuse(503, `service ${service.namespace}/${service.name} has no port ${target.port}`);
        return;
      }
      destination = {
        address: target.ip, port: target.port,
        service: { namespace: service.namespace, name: service.name, hostname: service.hostname },
        ...(port.appProtocol ? { appProtocol: port.appProtocol } : {}),
        ...(port.name ? { portName: port.name } : {}),
      };
    } else {
      const w = this.state.workloadByAddress(target.ip);
      if (!w || w.record.namespace !== wp.namespace || w.waypoint !== wp.name) {
        ctx.refuse(503, `${target.ip} is not a service or workload bound to waypoint ${wp.namespace}/${wp.name}`);
        return;
      }
      destination = { address: target.ip, port: target.port };
    }
    // The original client: `forwarded` is believed only for an address of the peer's own identity.
    const client = clientAddress(this.state, ctx.forwarded, ctx.peerIdentity, ctx.peerAddr);
    stream.respond({ ':status': 200 });
    this.l7!.handle(stream, { source: { address: client.ip, port: client.port, identity: ctx.peerIdentity }, destination });
  }

  /** A stream that is not HTTP: copied to an endpoint of its Service as addressed (L4 only). */
  private passthrough(stream: Duplex, ctx: StreamContext, dialer: MeshDialer): void {
    // Judged under the same L7 policies, as Istio judges TCP traffic (authorize.ts).
    if (this.authorizer && !this.authorizer.allowStream(ctx)) {
      stream.destroy();
      return;
    }
    const decision = this.router!.route({
      method: 'CONNECT', authority: `${ctx.destination.address}:${ctx.destination.port}`, path: '/', query: '', headers: {},
      protocol: 'http1', source: ctx.source, destination: ctx.destination,
    });
    if (decision.kind !== 'forward') {
      stream.destroy();
      return;
    }
    dialer.dial(decision.upstream).then((up) => {
      stream.pipe(up);
      up.pipe(stream);
      const close = () => { stream.destroy(); up.destroy(); };
      up.on('error', close);
      stream.on('error', close);
      up.on('close', close);
      stream.on('close', close);
    }, (err: unknown) => {
      this.logger.warn({ err: (err as Error).message, destination: `${ctx.destination.address}:${ctx.destination.port}` }, 'TCP passthrough: upstream unreachable');
      stream.destroy();
    });
  }

  private async serve(server: Server, host: string, port: number): Promise<void> {
    await listenTcp(server, host, port);
    this.servers.push(server);
  }

  status(): WaypointStatus {
    const synced = this.follower?.lastSyncAt !== undefined;
    const hasCert = this.certs?.current(this.identity) !== undefined;
    return {
      waypoint: `${this.config.namespace}/${this.config.name}`,
      identity: this.identity,
      version: VERSION,
      ready: !this.stopper.stopping && synced && hasCert && this.listening,
      registryRevision: this.state.revision,
      registryStalenessSeconds: this.follower ? this.follower.stalenessSeconds() : -1,
      startedAt: this.startedAt.toISOString(),
    };
  }

  /**
   * Not ready at once; GOAWAY to every source (they open new tunnels to another
   * waypoint pod); requests in flight get `--drain-timeout` to finish. A second call
   * ends the drain now.
   */
  stop(): Promise<void> {
    return this.stopper.stop();
  }

  private async shutdown(): Promise<void> {
    const log = this.logger;
    const step = shutdownStep(log);
    if (this.hbone) {
      this.hbone.stopAccepting();
      const deadline = Date.now() + this.config.drainTimeout;
      while (this.hbone.sessionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await step('closing the HBONE server', () => this.hbone!.close('waypoint shutting down'));
    }
    this.l7?.close();
    this.router?.close();
    this.outliers?.close();
    this.policies?.close();
    this.unfollowMetrics?.();
    if (this.telemetry) await step('closing telemetry', () => this.telemetry!.close());
    if (this.pool) await step('closing the HBONE pool', () => this.pool!.close());
    if (this.ownCerts) await step('stopping certificates', () => this.ownCerts!.stop());
    this.anchors?.close();
    if (this.caClient) await step('closing the CA client', () => this.caClient!.close());
    if (this.follower) await step('stopping the registry follower', () => this.follower!.stop());
    for (const s of this.servers) await step('closing an HTTP server', () => closeServer(s));
    log.info('waypoint stopped');
  }
}
