/**
 * The controller: informers on the API server feed caches; once every cache has synced,
 * the leader recomputes the registry the caches imply and writes only the difference
 * in ONE apply per tick. The first write after becoming leader starts from a snapshot
 * of Redis, so records deleted while no controller ran are removed and nothing is
 * written twice. Followers keep their caches warm and write nothing.
 */
import { EventEmitter } from 'node:events';
import { Counter, Gauge, type Registry } from 'prom-client';
import { GATEWAY_API_INSTALL } from '../gateway/types';
import type { KubeClient } from '../k8s/client';
import { Informer } from '../k8s/informer';
import { silentLogger, type Logger } from '../lib/log';
import type { ChangeInput, RegistryStore } from '../registry/store';
import { recordKey, type Kind, type PolicyInvalidState, type RecordsByKind } from '../registry/types';
import { validateRecord } from '../registry/validate';
import { computeDesired, entryId, MIRRORED_KINDS, type DesiredState, type TranslationMemo } from './desired';
import {
  AUTHZ_GROUP, AUTHZ_PLURAL, AUTHZ_VERSION, GATEWAY_API_GROUP, GATEWAY_API_VERSION, ISTIO_ROOT_NAMESPACE, ISTIO_SECURITY_GROUP, ISTIO_SECURITY_VERSION, PEER_AUTHN_PLURAL,
  type K8sAuthorizationPolicy, type K8sGatewayAPIObject, type K8sPeerAuthentication,
} from './k8s-types';
import { RouteStatusWriter } from './route-status';
import { TRAFFIC_POLICY_PATH, TrafficPolicyStatusWriter, type K8sTrafficPolicy } from './traffic-policy';
import { TRAFFIC_POLICY_GROUP, TRAFFIC_POLICY_VERSION } from '../resilience/spec';
import { WaypointDeployer, type WaypointDeployConfig } from './waypoint-deploy';
import type { LeaderElector } from './leader';
import { stableStringify } from './stable-json';
import { stampCondition, statusTime } from './status-patch';

/**
 * The Accepted=False condition's reason per held state (policy-fallback.ts). The
 * reasons are API (users and tools match on them), so they keep their names; the map
 * makes a new state a compile error here rather than a silent 'Invalid'.
 */
const CONDITION_REASON: Record<PolicyInvalidState, string> = { LastGood: 'InvalidLastGoodKept', FailClosed: 'InvalidFailClosed' };

export const WATCHED = {
  nodes: '/api/v1/nodes',
  namespaces: '/api/v1/namespaces',
  pods: '/api/v1/pods',
  services: '/api/v1/services',
  endpointSlices: '/apis/discovery.k8s.io/v1/endpointslices',
  policies: `/apis/${AUTHZ_GROUP}/${AUTHZ_VERSION}/${AUTHZ_PLURAL}`,
  istioPolicies: `/apis/${ISTIO_SECURITY_GROUP}/${ISTIO_SECURITY_VERSION}/${AUTHZ_PLURAL}`,
  peerAuths: `/apis/${ISTIO_SECURITY_GROUP}/${ISTIO_SECURITY_VERSION}/${PEER_AUTHN_PLURAL}`,
  httpRoutes: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/httproutes`,
  grpcRoutes: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/grpcroutes`,
  gateways: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/gateways`,
  trafficPolicies: TRAFFIC_POLICY_PATH,
} as const;
type Watched = keyof typeof WATCHED;
/**
 * Resources whose CRDs a cluster may lack (Gateway API and Istio's security API are
 * installed separately, if at all): a 404 counts as "none of them" so every other kind
 * is still mirrored, and the list is retried with backoff until they appear.
 */
const OPTIONAL_APIS = {
  'Gateway API': {
    kinds: ['httpRoutes', 'grpcRoutes', 'gateways'],
    absent: `Gateway API CRDs are not installed (404): HTTPRoutes, GRPCRoutes and waypoint Gateways are not mirrored, everything else is; ${GATEWAY_API_INSTALL}; the controller checks again with backoff and picks them up when they appear`,
    found: 'Gateway API CRDs found; mirroring HTTPRoutes, GRPCRoutes and waypoint Gateways',
  },
  [ISTIO_SECURITY_GROUP]: {
    kinds: ['istioPolicies', 'peerAuths'],
    absent: `Istio's security CRDs (${ISTIO_SECURITY_GROUP}/${ISTIO_SECURITY_VERSION}) are not installed (404): its AuthorizationPolicies and PeerAuthentications are not mirrored (${AUTHZ_GROUP} AuthorizationPolicies are); install Istio's base CRDs to use them; the controller checks again with backoff`,
    found: `Istio's security CRDs found; mirroring ${ISTIO_SECURITY_GROUP} AuthorizationPolicies and PeerAuthentications`,
  },
  // Weft's own CRD, but an upgrade may run the new controller before the CRD is applied.
  [TRAFFIC_POLICY_GROUP]: {
    kinds: ['trafficPolicies'],
    absent: `the TrafficPolicy CRD (${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}) is not installed (404): TrafficPolicies are not mirrored, everything else is; apply daemonset/crds.yaml; the controller checks again with backoff`,
    found: 'the TrafficPolicy CRD found; mirroring TrafficPolicies',
  },
} as const satisfies Record<string, { kinds: readonly Watched[]; absent: string; found: string }>;
type OptionalApi = keyof typeof OPTIONAL_APIS;
const OPTIONAL: ReadonlySet<Watched> = new Set<Watched>(Object.values(OPTIONAL_APIS).flatMap((a) => a.kinds));

export interface ControllerOptions {
  client: KubeClient;
  store: RegistryStore;
  clusterDomain: string;
  /** Absent: this instance always writes (single replica, tests). */
  elector?: LeaderElector;
  logger?: Logger;
  metrics?: Registry;
  /** Events within this window are batched into one write. Default 50 ms. */
  batchMs?: number;
  informerBackoff?: { minMs: number; maxMs: number };
  /** Absent: Gateways of class weft-waypoint are mirrored but not deployed (tests, or no image known). */
  waypoints?: WaypointDeployConfig;
  /** Istio's root namespace, whose mesh-wide Istio-group policies are Weft's root namespace's. Default istio-system. */
  istioRootNamespace?: string;
}

export interface ControllerEvents {
  /** A write went to Redis (revision, number of changes). */
  applied: [revision: number, changes: number];
  /** A tick found Redis equal to the API view. */
  converged: [];
}

export class Controller extends EventEmitter<ControllerEvents> {
  readonly informers: { [K in Watched]: Informer };
  private readonly logger: Logger;
  private written = new Map<string, string>();
  private needSnapshot = true;
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private again = false;
  private failures = 0;
  private stopped = true;
  private lastWarnings = new Set<string>();
  private readonly memo: TranslationMemo = new WeakMap();
  private readonly routeStatus: RouteStatusWriter;
  private readonly trafficPolicyStatus: TrafficPolicyStatusWriter;
  private readonly deployer?: WaypointDeployer;
  /** The optional APIs whose absence has been logged (once per absence, not per retry). */
  private readonly absentLogged = new Set<OptionalApi>();
  private readonly metrics?: { leader: Gauge; writes: Counter; changes: Counter; errors: Counter; records: Gauge; invalidPolicies: Gauge };

  constructor(private readonly opts: ControllerOptions) {
    super();
    this.logger = opts.logger ?? silentLogger();
    const informerOpts = {
      logger: this.logger,
      minBackoffMs: opts.informerBackoff?.minMs, maxBackoffMs: opts.informerBackoff?.maxMs,
    };
    this.informers = Object.fromEntries(Object.entries(WATCHED).map(([k, path]) => {
      const inf = new Informer(opts.client, path, { ...informerOpts, optional: OPTIONAL.has(k as Watched) });
      const poke = () => this.schedule();
      inf.on('add', poke).on('update', poke).on('delete', poke).on('synced', poke);
      inf.on('absent', () => this.optionalApisChanged()).on('present', () => this.optionalApisChanged());
      return [k, inf];
    })) as { [K in Watched]: Informer };
    this.routeStatus = new RouteStatusWriter(opts.client, this.logger);
    this.trafficPolicyStatus = new TrafficPolicyStatusWriter(opts.client, this.logger);
    this.deployer = opts.waypoints ? new WaypointDeployer(opts.client, opts.waypoints, this.logger, { clusterDomain: opts.clusterDomain }) : undefined;
    if (opts.metrics) {
      const registers = [opts.metrics];
      this.metrics = {
        leader: new Gauge({ name: 'weft_controller_leader', help: '1 while this replica holds the lease and writes', registers }),
        writes: new Counter({ name: 'weft_controller_registry_writes_total', help: 'apply() calls made to the registry', registers }),
        changes: new Counter({ name: 'weft_controller_registry_changes_total', help: 'records put or deleted', labelNames: ['op'], registers }),
        errors: new Counter({ name: 'weft_controller_registry_errors_total', help: 'failed registry writes (retried)', registers }),
        records: new Gauge({ name: 'weft_controller_desired_records', help: 'records the API view implies', labelNames: ['kind'], registers }),
        invalidPolicies: new Gauge({
          name: 'weft_controller_invalid_policies', labelNames: ['held'], registers,
          help: 'invalid AuthorizationPolicies, by what the registry enforces instead: LastGood (the last valid version) or FailClosed (a stand-in)',
        }),
      };
    }
    opts.elector?.on('started', () => {
      this.needSnapshot = true;
      this.deployer?.reset();
      this.metrics?.leader.set(1);
      this.schedule(0);
    });
    opts.elector?.on('stopped', () => this.metrics?.leader.set(0));
  }

  /** True while the API server does not serve every Gateway API resource Weft mirrors. */
  get gatewayAPIMissing(): boolean {
    return this.missing('Gateway API').length > 0;
  }

  /** True while the API server does not serve Istio's AuthorizationPolicy and PeerAuthentication. */
  get istioSecurityMissing(): boolean {
    return this.missing(ISTIO_SECURITY_GROUP).length > 0;
  }

  private missing(api: OptionalApi): string[] {
    return OPTIONAL_APIS[api].kinds.filter((k) => this.informers[k].absent).map((k) => WATCHED[k]);
  }

  private optionalApisChanged(): void {
    for (const api of Object.keys(OPTIONAL_APIS) as OptionalApi[]) {
      const missing = this.missing(api);
      if (missing.length > 0 && !this.absentLogged.has(api)) {
        this.absentLogged.add(api);
        this.logger.warn({ missing }, OPTIONAL_APIS[api].absent);
      } else if (missing.length === 0 && this.absentLogged.has(api)) {
        this.absentLogged.delete(api);
        this.logger.info(OPTIONAL_APIS[api].found);
      }
    }
  }

  get isLeader(): boolean {
    return this.opts.elector ? this.opts.elector.isLeader : true;
  }

  /** Every informer has listed at least once. */
  get synced(): boolean {
    return Object.values(this.informers).every((i) => i.synced);
  }

  start(): void {
    this.stopped = false;
    if (!this.opts.elector) this.metrics?.leader.set(1);
    for (const inf of Object.values(this.informers)) inf.start();
    this.opts.elector?.start();
  }

  /** `release: false` leaves the lease to expire, as a crash would (tests). */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.opts.elector?.stop(opts);
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
    while (this.ticking) await new Promise((r) => setTimeout(r, 10));
  }

  private schedule(ms = this.opts.batchMs ?? 50): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped || !this.isLeader || !this.synced) return;
    this.ticking = true;
    this.again = false;
    let retryMs: number | undefined;
    try {
      // The registry's current records first: an invalid policy keeps the version they hold.
      await this.loadWritten();
      const desired = this.desired();
      this.logWarnings(desired.warnings);
      await this.write(desired);
      await this.reportPolicies(desired);
      await this.routeStatus.report(desired, () => this.isLeader && !this.stopped);
      await this.trafficPolicyStatus.report(desired.trafficPolicies, (ns, name) => desired.records.has(entryId('service', `${ns}/${name}`)),
        () => this.isLeader && !this.stopped);
      await this.deployer?.reconcile(desired.gateways, () => this.isLeader && !this.stopped);
      this.failures = 0;
    } catch (err) {
      this.failures++;
      this.needSnapshot = true;
      this.metrics?.errors.inc();
      retryMs = Math.min(10_000, 100 * 2 ** Math.min(this.failures, 10));
      this.logger.warn({ err: (err as Error).message, retryInMs: retryMs }, 'registry sync failed; retrying');
    } finally {
      this.ticking = false;
    }
    if (retryMs !== undefined) this.schedule(retryMs);
    else if (this.again) this.schedule();
  }

  private desired(): DesiredState {
    const items = (k: Watched) => this.informers[k].items();
    const d = computeDesired({
      nodes: items('nodes'), namespaces: items('namespaces'), pods: items('pods'), services: items('services'),
      endpointSlices: items('endpointSlices'), policies: items('policies') as K8sAuthorizationPolicy[],
      istioPolicies: items('istioPolicies') as K8sAuthorizationPolicy[], peerAuths: items('peerAuths') as K8sPeerAuthentication[],
      httpRoutes: items('httpRoutes') as K8sGatewayAPIObject[], grpcRoutes: items('grpcRoutes') as K8sGatewayAPIObject[],
      gateways: items('gateways') as K8sGatewayAPIObject[], trafficPolicies: items('trafficPolicies') as K8sTrafficPolicy[],
    }, {
      clusterDomain: this.opts.clusterDomain, memo: this.memo, istioRootNamespace: this.opts.istioRootNamespace ?? ISTIO_ROOT_NAMESPACE,
      heldPolicy: (key) => this.held('policy', key), heldTrafficPolicy: (key) => this.held('trafficpolicy', key),
    });
    if (this.metrics) {
      const counts = new Map<string, number>(MIRRORED_KINDS.map((k) => [k, 0]));
      for (const e of d.records.values()) counts.set(e.kind, (counts.get(e.kind) ?? 0) + 1);
      for (const [kind, n] of counts) this.metrics.records.set({ kind }, n);
      const invalid = new Map<PolicyInvalidState, number>([['LastGood', 0], ['FailClosed', 0]]);
      for (const p of d.policies.values()) if (p.held) invalid.set(p.held, invalid.get(p.held)! + 1);
      for (const [held, n] of invalid) this.metrics.invalidPolicies.set({ held }, n);
    }
    return d;
  }

  /** The record the registry holds (as last written or loaded), for an invalid object to keep. */
  private held<K extends 'policy' | 'trafficpolicy'>(kind: K, key: string): RecordsByKind[K] | undefined {
    const json = this.written.get(entryId(kind, key));
    if (json === undefined) return undefined;
    try {
      return validateRecord(kind, JSON.parse(json), { key });
    } catch {
      return undefined;
    }
  }

  private async loadWritten(): Promise<void> {
    if (!this.needSnapshot) return;
    const { records } = await this.opts.store.snapshot();
    const written = new Map<string, string>();
    for (const kind of MIRRORED_KINDS) {
      for (const r of records[kind]) written.set(entryId(kind, recordKey(kind as Kind, r as never)), stableStringify(r));
    }
    this.written = written;
    this.needSnapshot = false;
  }

  private async write(desired: DesiredState): Promise<void> {
    const changes: ChangeInput[] = [];
    const next = new Map<string, string>();
    for (const [id, e] of desired.records) {
      next.set(id, e.json);
      if (this.written.get(id) !== e.json) changes.push({ op: 'put', kind: e.kind, record: e.record } as ChangeInput);
    }
    let deletes = 0;
    for (const id of this.written.keys()) {
      if (next.has(id)) continue;
      const [kind, key] = id.split('\0') as [Kind, string];
      changes.push({ op: 'delete', kind, key });
      deletes++;
    }
    if (changes.length === 0) {
      this.emit('converged');
      return;
    }
    // Leadership may have been lost while computing; a follower must not write.
    if (!this.isLeader || this.stopped) return;
    const rev = await this.opts.store.apply(changes);
    this.written = next;
    this.metrics?.writes.inc();
    this.metrics?.changes.inc({ op: 'put' }, changes.length - deletes);
    this.metrics?.changes.inc({ op: 'delete' }, deletes);
    this.logger.debug({ revision: rev, puts: changes.length - deletes, deletes }, 'registry updated');
    this.emit('applied', rev, changes.length);
    this.emit('converged');
  }

  /** Sets the Accepted condition on each AuthorizationPolicy whose condition is not current. */
  private async reportPolicies(desired: DesiredState): Promise<void> {
    for (const { obj, group, result, held, enforced } of desired.policies.values()) {
      if (!this.isLeader || this.stopped) return;
      const m = obj.metadata;
      // The reason says what is enforced meanwhile: an operator must not read "False" as "no policy".
      const want = result.ok
        ? { status: 'True', reason: 'Accepted', message: 'the policy is valid and in the registry' }
        : {
          status: 'False',
          reason: held ? CONDITION_REASON[held] : 'Invalid',
          message: `${result.message}; ${enforced}`,
        };
      const conditions = ((obj as { status?: { conditions?: Record<string, unknown>[] } }).status?.conditions) ?? [];
      const cur = conditions.find((c) => c.type === 'Accepted');
      if (cur && cur.status === want.status && cur.reason === want.reason && cur.message === want.message &&
        cur.observedGeneration === m.generation) continue;
      const condition = stampCondition({ type: 'Accepted', ...want }, cur, m.generation, statusTime());
      const version = group === AUTHZ_GROUP ? AUTHZ_VERSION : ISTIO_SECURITY_VERSION;
      const path = `/apis/${group}/${version}/namespaces/${m.namespace}/${AUTHZ_PLURAL}/${m.name}/status`;
      try {
        await this.opts.client.patch(path, { status: { conditions: [...conditions.filter((c) => c.type !== 'Accepted'), condition] } }, 'merge');
      } catch (err) {
        // The status is a courtesy to the user: a failure must not stall the registry.
        this.logger.warn({ err: (err as Error).message, policy: `${m.namespace}/${m.name}`, group }, 'could not set the AuthorizationPolicy status');
      }
    }
  }

  private logWarnings(warnings: string[]): void {
    const now = new Set(warnings);
    for (const w of now) if (!this.lastWarnings.has(w)) this.logger.warn(w);
    this.lastWarnings = now;
  }
}
