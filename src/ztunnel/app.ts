import type { Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../lib/log';
import { shutdownStep, StopOnce } from '../lib/shutdown-step';
import { VERSION } from '../lib/version';
import { registerBuildInfo } from '../telemetry/build-info';
import { describeRedis } from '../registry/connection';
import { KubeClient } from '../k8s/client';
import { RegistryFollower } from '../registry/follower';
import { redactConfig } from '../lib/redact';
import { MeshState } from '../registry/state';
import { KINDS } from '../registry/types';
import { CaClient } from '../ca/client';
import { CertificateManager } from '../ca/cert-manager';
import { TrustAnchorFile } from '../ca/trust-bundle';
import { OriginalDstLookup } from './original-dst-sockopt';
import { ConnectionRegistry } from './connections';
import { MemoryReclaimer } from './memory-reclaim';
import { ZtunnelMetrics } from './metrics';
import { HbonePool } from '../hbone/pool';
import { configurePipes } from '../hbone/pipe';
import { DEFAULT_HBONE_LIMITS, HboneNodeLimits } from '../hbone/limits';
import { InboundServer } from './inbound';
import { InboundPlaintextServer } from './inbound-plaintext';
import { OutboundProxy } from './outbound';
import { CaptureReconciler } from './capture';
import { ListenerDrain, type DrainableListener } from './drain';
import { loopGuard, type SelfAddresses } from './loop-guard';
import { NodeAddresses } from './node-addresses';
import { INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT } from '../mesh/ports';
import { HBONE_PORT } from '../hbone/contracts';
import { adminServer, type AdminSource } from './admin';
import { closeServer, listenTcp, listenUnix, metricsServer, readinessServer } from '../lib/http-endpoints';
import { ProxyTelemetry, traceQuery } from '../telemetry/proxy-telemetry';
import type { SpanRecord } from '../telemetry/types';
import { AdminAuthenticator } from './admin-auth';
import { adminViewServer } from './admin-view';
import type { CertificateInfo, ConfigDump, RegistryDump, ZtunnelStatus } from './admin-types';
import { probeHost, type ZtunnelConfig } from './config';
import { workerShare } from './workers';
import type { HboneDialTarget, OriginalDstSource } from './contracts';

/** Test hooks: listener ports other than Istio's (several ztunnels on one loopback). */
export interface ZtunnelPorts { outbound: number; inboundPlaintext: number; hbone: number }

/**
 * Test and benchmark hooks beyond the ports: what the node's DNAT would provide
 * (original destinations, peers' HBONE at <pod IP>:15008) so a ztunnel runs on
 * loopback without iptables. Never set in production.
 */
export interface ZtunnelHooks extends ZtunnelPorts {
  originalDst?: OriginalDstSource;
  hboneDialTarget?: HboneDialTarget;
  /** The node's own addresses: on loopback, pods live on 127.0.0.0/8 beside the node. */
  selfAddresses?: SelfAddresses;
  /** The HBONE pool's idle timeout (default 5 min): the memory bench shortens it to see RSS once the pool is empty. */
  poolIdleTimeoutMs?: number;
}

/**
 * One of `--workers` processes (cluster-worker.ts): the primary serves readiness and
 * metrics, so a worker does not; worker 0 alone serves admin and owns capture.
 */
export interface ZtunnelWorkerRole { index: number; of: number }

/**
 * Wires one node's ztunnel: registry follower → MeshState → certificates, capture
 * rules and the three proxy listeners, plus admin, metrics and readiness. Start-up
 * order matters: state first (everything reads it), then certificates (readiness
 * waits for them), then listeners, then capture (so no pod traffic is redirected to
 * a port nobody listens on yet). Shutdown runs in reverse.
 */
export class ZtunnelApp implements AdminSource {
  readonly metrics = new Registry();
  readonly state: MeshState;
  readonly tracked = new ConnectionRegistry();
  private follower: RegistryFollower | undefined;
  private caClient: CaClient | undefined;
  private trustAnchors: TrustAnchorFile | undefined;
  private certs: CertificateManager | undefined;
  private pool: HbonePool | undefined;
  private capture: CaptureReconciler | undefined;
  private originalDst: OriginalDstLookup | undefined;
  private listeners: DrainableListener[] = [];
  /** The HBONE servers, one per address family the node captures. */
  private readonly inbounds: InboundServer[] = [];
  private drain: ListenerDrain | undefined;
  private readonly stopper = new StopOnce(() => this.shutdown(), () => { this.drain?.cut(); });
  private servers: Server[] = [];
  private readonly closers: Array<() => void> = [];
  private readonly startedAt = new Date();
  private listening = false;
  private readonly onStateChange = () => this.updateWantedCerts();
  private unfollowMetrics: (() => void) | undefined;
  private telemetry: ProxyTelemetry | undefined;

  constructor(readonly config: ZtunnelConfig, readonly logger: Logger, private readonly ports: ZtunnelHooks = {
    outbound: OUTBOUND_PORT, inboundPlaintext: INBOUND_PLAINTEXT_PORT, hbone: HBONE_PORT,
  }, readonly worker?: ZtunnelWorkerRole) {
    collectDefaultMetrics({ register: this.metrics });
    registerBuildInfo(this.metrics, 'ztunnel');
    this.state = new MeshState({ trustDomain: config.trustDomain });
  }

  async start(): Promise<void> {
    const { config, logger } = this;
    const log = logger.child({ node: config.nodeName });
    // Readiness answers from the very start (503 until ready) so probes never see a refused port.
    if (!this.worker) await this.serve(readinessServer(this), probeHost(config), config.readinessPort);

    this.follower = new RegistryFollower({ url: config.redis, state: this.state, logger: log, metrics: this.metrics });
    await this.follower.start();
    if (!this.state.node(config.nodeName)) {
      log.warn({ node: config.nodeName }, 'this node is not in the registry yet: no workloads will be served until it is');
    }

    // Trust anchors from a mounted file, re-read for rotations (never from Redis).
    const anchors = new TrustAnchorFile(config.trustAnchorFile, { logger: log });
    this.trustAnchors = anchors;
    this.caClient = new CaClient({
      address: `${config.caAddress.host}:${config.caAddress.port}`, trustDomain: config.trustDomain, rootPem: anchors.pem,
      ...(config.caServerName ? { serverName: config.caServerName } : {}),
    });
    this.certs = new CertificateManager({
      client: this.caClient, nodeName: config.nodeName, logger: log, metrics: this.metrics,
      ttlSec: Math.round(config.certTtl / 1000), ...(config.joinToken ? { joinToken: config.joinToken } : {}),
      ...(config.joinSaTokenFile ? { joinSaTokenFile: config.joinSaTokenFile } : {}),
    });
    // TLS contexts compare the roots on use, so the new bundle reaches them at once.
    anchors.on('change', (bundle) => this.caClient?.setRootPem(bundle.pem));
    this.updateWantedCerts();
    this.state.on('change', this.onStateChange);
    this.state.on('snapshot', this.onStateChange);

    configurePipes({ idleTimeoutMs: config.idleTimeout });
    const metrics = new ZtunnelMetrics(this.metrics);
    // Series of pods that left the registry are removed, so churn does not grow scrapes.
    this.unfollowMetrics = metrics.followState(this.state);
    const pool = new HbonePool({ certs: this.certs, logger: log, ...(this.ports.poolIdleTimeoutMs ? { idleTimeoutMs: this.ports.poolIdleTimeoutMs } : {}) });
    this.pool = pool;
    new Gauge({
      name: 'weft_ztunnel_tunnels', help: 'Pooled HBONE connections held by this ztunnel', registers: [this.metrics],
      collect() { this.set(pool.size); },
    });
    const originalDst: OriginalDstSource = this.ports.originalDst ?? (this.originalDst = new OriginalDstLookup());
    // Never dialled for a pod: this node's addresses and every port this ztunnel serves.
    const guard = loopGuard(this.ports.selfAddresses ?? new NodeAddresses({ logger: log }), [
      config.adminPort, config.metricsPort, config.readinessPort, this.ports.outbound, this.ports.inboundPlaintext, this.ports.hbone,
    ]);
    const telemetry = new ProxyTelemetry({ proxy: `ztunnel ${config.nodeName}`, config, registry: this.metrics, logger: log });
    this.telemetry = telemetry;
    const common = { state: this.state, originalDst, logger: log, connections: this.tracked, metrics, telemetry, nodeName: config.nodeName, loopGuard: guard };
    // One set of the three listeners per family the node captures (DNAT needs a concrete
    // address of the packet's family); they share state, pool, connections, metrics and
    // the node-wide HBONE limits (budget, dial slots, handshakes, sessions per peer).
    // Several workers split every node-wide limit (budget, dial slots, handshakes,
    // sessions per peer), so the node's bound holds.
    const nodeLimits = new HboneNodeLimits({
      maxStreamsPerConnection: config.hboneMaxStreams,
      ...workerShare({
        ...DEFAULT_HBONE_LIMITS,
        nodeBufferBytes: config.hboneBufferBudgetMb * 1024 * 1024,
        maxPendingDials: config.hboneMaxPendingDials,
      }, this.worker?.of ?? 1),
    });
    const inbounds = this.inbounds;
    for (const address of this.listenAddresses()) {
      const inbound = new InboundServer({ ...common, certs: this.certs, nodeLimits });
      inbounds.push(inbound);
      const plaintext = new InboundPlaintextServer(common);
      const outbound = new OutboundProxy({ ...common, pool, ...(this.ports.hboneDialTarget ? { hboneDialTarget: this.ports.hboneDialTarget } : {}) });
      for (const [listener, port] of [[inbound, this.ports.hbone], [plaintext, this.ports.inboundPlaintext], [outbound, this.ports.outbound]] as const) {
        await listener.listen(address, port);
        this.listeners.push(listener);
      }
    }
    this.listening = true;
    // Tunnels on both ends: the pool's (this node dialled them) and the HBONE sessions
    // peers dialled here, which close when the peers' pools let them go (idle 5 min).
    const tunnels = () => pool.size + inbounds.reduce((n, s) => n + s.sessionCount, 0);
    // Once 10 s after the listeners are up (certificates fetched meanwhile), then after bursts.
    const reclaimer = new MemoryReclaimer({ live: () => this.tracked.size, tunnels, logger: log, afterStartMs: 10_000 }).start();
    // The first snapshot is loaded by now (the start-up reclaim covers it); any later one is a reload.
    const onReload = () => reclaimer.registryReloaded();
    this.state.on('snapshot', onReload);
    this.closers.push(() => {
      reclaimer.stop();
      this.state.off('snapshot', onReload);
    });

    if (!this.worker) await this.serve(metricsServer(this, telemetry.views()), probeHost(config), config.metricsPort);
    if (this.leads) await this.serveAdmin();

    if (this.captures) {
      this.capture = new CaptureReconciler({ state: this.state, nodeName: config.nodeName, listenAddresses: this.listenAddresses(), logger: log });
      await this.capture.start();
    }
    log.info({ address: config.nodeAddress, redis: describeRedis(config.redis), capture: config.capture, originalDst: this.originalDst?.method ?? 'hook', version: VERSION }, 'ztunnel started');
  }

  /** Admin shows this process's view; with workers, worker 0's (the one that owns capture). */
  private async serveAdmin(): Promise<void> {
    const { config } = this;
    await this.serve(adminServer(this), '127.0.0.1', config.adminPort);
    if (config.adminViewAddress && config.adminViewAddress !== '127.0.0.1') {
      await this.serve(adminViewServer(this, { auth: this.adminAuth() }), config.adminViewAddress, config.adminPort);
    }
    if (config.adminSocket) {
      const server = adminServer(this);
      await listenUnix(server, config.adminSocket);
      this.servers.push(server);
    }
  }

  /** This process's recorded spans matching `GET /debug/traces`'s query (a worker answers its primary with them). */
  spans(url: URL): SpanRecord[] {
    return this.telemetry?.ring.query(traceQuery(url)) ?? [];
  }

  /** The only process, or worker 0: serves admin and owns the capture rules. */
  private get leads(): boolean {
    return (this.worker?.index ?? 0) === 0;
  }

  private get captures(): boolean {
    return this.config.capture && this.leads;
  }

  /** The HBONE servers started (one per family; all share the node's HBONE limits). */
  get hboneServers(): readonly InboundServer[] {
    return this.inbounds;
  }

  /**
   * Checks admin view callers against the API server with the ztunnel's own
   * ServiceAccount (or --admin-view-kubeconfig). The client is made at the first
   * request: without a usable configuration the views refuse (503) and say why, while
   * the data path, which never needs the API server, runs on.
   */
  private adminAuth(): AdminAuthenticator {
    let client: KubeClient | undefined;
    const { adminViewKubeconfig: file, adminViewNamespace: namespace } = this.config;
    const auth = new AdminAuthenticator({
      namespace,
      client: () => {
        // Loaded at the first view request only: kubeconfig.ts brings the YAML parser
        // (~0.5 MB of heap), which nothing else in a ztunnel needs.
        const { inClusterConfig, loadKubeconfig } = require('../k8s/kubeconfig') as typeof import('../k8s/kubeconfig');
        return (client ??= new KubeClient(file ? loadKubeconfig(file) : inClusterConfig()));
      },
    });
    this.closers.push(() => client?.close());
    return auth;
  }

  /** The node address, and the IPv6 one on a dual-stack node. */
  private listenAddresses(): string[] {
    return this.config.nodeAddress6 ? [this.config.nodeAddress, this.config.nodeAddress6] : [this.config.nodeAddress];
  }

  private async serve(server: Server, host: string, port: number): Promise<void> {
    await listenTcp(server, host, port);
    this.servers.push(server);
  }

  /** Prefetch: certificates of every enrolled workload on this node, before any traffic asks. */
  private updateWantedCerts(): void {
    if (!this.certs) return;
    const ids = this.localIdentities();
    this.certs.setWanted(ids);
    // Client-side TLS contexts of identities that left the node go with them.
    this.pool?.contexts.retain(ids);
  }

  private localIdentities(): Set<string> {
    const ids = new Set<string>();
    for (const w of this.state.workloadsOnNode(this.config.nodeName)) if (w.enrolled) ids.add(w.identity);
    return ids;
  }

  status(): ZtunnelStatus {
    const follower = this.follower;
    const synced = follower?.lastSyncAt !== undefined;
    const certsReady = this.certs !== undefined && [...this.localIdentities()].every((id) => this.certs!.current(id) !== undefined);
    // Ready means capture works: rules applied and read back (chains, jumps first), not just sent.
    const captureReady = !this.captures || this.capture?.verified === true;
    return {
      node: this.config.nodeName,
      version: VERSION,
      ready: !this.stopper.stopping && synced && this.listening && certsReady && captureReady,
      registryRevision: this.state.revision,
      registryStalenessSeconds: follower ? follower.stalenessSeconds() : -1,
      startedAt: this.startedAt.toISOString(),
    };
  }

  tunnels() {
    return { node: this.config.nodeName, tunnels: this.pool ? this.pool.stats() : [] };
  }

  connections(): { node: string; connections: ReturnType<ConnectionRegistry['list']> } {
    return { node: this.config.nodeName, connections: this.tracked.list() };
  }

  certificates(): { node: string; certificates: CertificateInfo[] } {
    const list = this.certs ? this.certs.list() : [];
    return {
      node: this.config.nodeName,
      certificates: list.map((c) => {
        const info: CertificateInfo = { identity: c.identity, state: c.state };
        if (c.serial) info.serial = c.serial;
        if (c.notBefore) info.notBefore = c.notBefore.toISOString();
        if (c.notAfter) info.notAfter = c.notAfter.toISOString();
        const cur = this.certs?.current(c.identity);
        if (cur) info.certChainPem = cur.certChainPem;
        return info;
      }),
    };
  }

  configDump(): ConfigDump {
    const local = this.state.workloadsOnNode(this.config.nodeName);
    // The flags as given; `redis` is only the connection they describe, already there.
    const { redis: _redis, ...flags } = this.config;
    return {
      node: this.config.nodeName,
      version: VERSION,
      // No credential leaves through the admin views: URL passwords and tokens masked.
      config: redactConfig(flags),
      status: this.status(),
      originalDst: this.originalDst ? { method: this.originalDst.method, ...this.originalDst.counts } : undefined,
      workloads: this.state.workloads().map((w) => ({ ...w.record, protocol: w.protocol, identity: w.identity, waypoint: w.waypoint, local: local.includes(w) })),
      services: this.state.list('service'),
      policies: [...this.state.list('policy'), ...this.state.list('peerauth')],
      certificates: this.certificates().certificates,
    };
  }

  registry(): RegistryDump {
    const records: RegistryDump['records'] = {};
    for (const kind of KINDS) records[kind] = this.state.list(kind);
    return { node: this.config.nodeName, trustDomain: this.config.trustDomain, revision: this.state.revision, records };
  }

  /**
   * Reverse of start, after a drain (drain.ts): not ready from the first moment,
   * listeners closed at once, established connections given `--drain-timeout` to end
   * on their own. The capture rules stay in force (fail closed): enrolled pods' new
   * connections are refused, never sent in plaintext, until the next ztunnel adopts
   * the rules. `weft ztunnel --cleanup` removes them. A second call ends the drain now.
   */
  stop(): Promise<void> {
    return this.stopper.stop();
  }

  private async shutdown(): Promise<void> {
    const log = this.logger;
    const step = shutdownStep(log);
    if (this.capture) await step('stopping capture reconciliation (rules stay)', () => this.capture!.stop());
    this.drain = new ListenerDrain({ listeners: [...this.listeners].reverse(), connections: this.tracked, timeoutMs: this.config.drainTimeout, logger: log });
    await step('draining the listeners', async () => { await this.drain!.run(); });
    if (this.pool) await step('closing the HBONE pool', () => this.pool!.close());
    this.state.off('change', this.onStateChange);
    this.state.off('snapshot', this.onStateChange);
    this.unfollowMetrics?.();
    if (this.telemetry) await step('closing telemetry', () => this.telemetry!.close());
    if (this.certs) await step('stopping certificates', () => this.certs!.stop());
    this.trustAnchors?.close();
    if (this.caClient) await step('closing the CA client', () => this.caClient!.close());
    if (this.follower) await step('stopping the registry follower', () => this.follower!.stop());
    this.originalDst?.close();
    for (const s of this.servers) await step('closing an HTTP server', () => closeServer(s));
    for (const close of this.closers) await step('closing the API client', close);
    log.info('ztunnel stopped');
  }
}
