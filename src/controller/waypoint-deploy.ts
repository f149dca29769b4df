/**
 * A Gateway of class `weft-waypoint` becomes a running waypoint: a ServiceAccount (its
 * identity), a ConfigMap with the mesh trust anchors (a copy of weft-root-cert: a pod
 * can mount ConfigMaps of its own namespace only), a Deployment running `weft waypoint
 * run`, and a Service with the HBONE port 15008 (`mesh`, as Istio names it) and the
 * status port 15021. Every object is owner-referenced to the Gateway (controller:
 * true), so the garbage collector removes them with it, as Istio's waypoints do.
 *
 * The objects are pure functions of the Gateway, its waypoint record and the
 * controller's settings (waypointObjects); WaypointDeployer applies them with
 * server-side apply when that input changed since the last apply of this leadership.
 */
import { createHash } from 'node:crypto';
import { GATEWAY_NAME_LABEL, WAYPOINT_HBONE_PORT, type WaypointRecord } from '../gateway/types';
import type { KubeClient, KubeObject } from '../k8s/client';
import type { Logger } from '../lib/log';
import { gatewayAPIPath, GATEWAY_API_GROUP, GATEWAY_API_VERSION, type K8sGatewayAPIObject } from './k8s-types';
import { stableStringify } from './stable-json';
import { WAYPOINT_NODE_FLAGS } from '../waypoint/node-flags';

/** The field manager of every object the controller applies. */
export const FIELD_MANAGER = 'weft-controller';
export const WAYPOINT_READINESS_PORT = 15021;
export const WAYPOINT_METRICS_PORT = 15020;
/** Where Prometheus finds a waypoint pod's metrics (Istio's path; /metrics answers too). */
const PROMETHEUS_ANNOTATIONS = {
  'prometheus.io/scrape': 'true', 'prometheus.io/port': String(WAYPOINT_METRICS_PORT), 'prometheus.io/path': '/stats/prometheus',
};
/** The Redis ACL user and Secret (in the waypoint's namespace) waypoints read the registry with. */
export const WAYPOINT_REDIS_USER = 'weft-waypoint';
export const WAYPOINT_REDIS_SECRET = 'weft-redis-user-waypoint';
/** The ConfigMap (in the controller's namespace) holding the mesh roots, key root-cert.pem. */
export const ROOT_CERT_CONFIGMAP = 'weft-root-cert';

export interface WaypointDeployConfig {
  /** The image of `weft` (the controller's own, by default). */
  image: string;
  redisUrl: string;
  /** Whether the waypoint authenticates to Redis (then it mounts WAYPOINT_REDIS_SECRET). */
  redisAuth: boolean;
  /**
   * The Sentinels the controller itself uses (--redis-sentinels text), when the registry
   * is highly available: the waypoint must find the primary the same way. With
   * `username`, the Sentinels want a password too, the `sentinel-password` key of
   * WAYPOINT_REDIS_SECRET (scripts/redis-secrets --sentinel puts it there).
   */
  redisSentinel?: { sentinels: string; masterName: string; username?: string };
  caAddress: string;
  trustDomain: string;
  logLevel: string;
  /** Where weft-root-cert lives (weft-system). */
  systemNamespace: string;
  /** Tracing as the controller was given it (weft-config): sampling ratio, and the OTLP collector ('' none). */
  telemetry?: { traceSampling: number; otlpEndpoint: string };
}

/** The trust anchors to copy, as read from weft-root-cert. */
export interface TrustAnchors { 'root-cert.pem': string }

const COMMON_LABELS = { 'app.kubernetes.io/part-of': 'weft', 'app.kubernetes.io/component': 'waypoint', 'app.kubernetes.io/managed-by': FIELD_MANAGER };

export const trustAnchorsName = (gateway: string): string => `${gateway}-weft-root-cert`;

/** Every object a waypoint needs, in apply order (identity and trust anchors before the pods that mount them). */
export function waypointObjects(gw: K8sGatewayAPIObject, w: WaypointRecord, cfg: WaypointDeployConfig, anchors: TrustAnchors): KubeObject[] {
  const ownerReferences = [{
    apiVersion: `${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}`, kind: 'Gateway', name: w.name, uid: String(gw.metadata.uid),
    controller: true, blockOwnerDeletion: true,
  }];
  const labels = { ...COMMON_LABELS, [GATEWAY_NAME_LABEL]: w.name };
  const meta = (name: string) => ({ name, namespace: w.namespace, labels, ownerReferences });
  const podLabels = { [GATEWAY_NAME_LABEL]: w.name, 'weft.io/dataplane-mode': 'none', 'app.kubernetes.io/part-of': 'weft', 'app.kubernetes.io/component': 'waypoint' };
  const env: Record<string, unknown>[] = [
    { name: 'WEFT_WAYPOINT_ADDRESS', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'NODE_OPTIONS', value: WAYPOINT_NODE_FLAGS.join(' ') },
    { name: 'WEFT_REDIS_URL', value: cfg.redisUrl },
    ...(cfg.redisAuth ? [
      { name: 'WEFT_REDIS_USERNAME', value: WAYPOINT_REDIS_USER },
      { name: 'WEFT_REDIS_PASSWORD_FILE', value: '/var/run/secrets/weft/redis/password' },
    ] : []),
    ...(cfg.redisUrl.startsWith('rediss:') && cfg.redisAuth ? [{ name: 'WEFT_REDIS_CA_FILE', value: '/var/run/secrets/weft/redis/ca.crt' }] : []),
    ...(cfg.redisSentinel ? [
      { name: 'WEFT_REDIS_SENTINELS', value: cfg.redisSentinel.sentinels },
      { name: 'WEFT_REDIS_MASTER_NAME', value: cfg.redisSentinel.masterName },
    ] : []),
    ...(cfg.redisSentinel?.username && cfg.redisAuth ? [
      { name: 'WEFT_REDIS_SENTINEL_USERNAME', value: cfg.redisSentinel.username },
      { name: 'WEFT_REDIS_SENTINEL_PASSWORD_FILE', value: '/var/run/secrets/weft/redis/sentinel-password' },
    ] : []),
    { name: 'WEFT_CA_ADDRESS', value: cfg.caAddress },
    { name: 'WEFT_TRUST_DOMAIN', value: cfg.trustDomain },
    { name: 'WEFT_TRUST_ANCHOR_FILE', value: '/etc/weft/trust-anchors/root-cert.pem' },
    { name: 'WEFT_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/weft/ca-token/token' },
    { name: 'WEFT_LOG_LEVEL', value: cfg.logLevel },
    ...(cfg.telemetry ? [{ name: 'WEFT_TRACE_SAMPLING', value: String(cfg.telemetry.traceSampling) }] : []),
    ...(cfg.telemetry?.otlpEndpoint ? [{ name: 'WEFT_OTLP_ENDPOINT', value: cfg.telemetry.otlpEndpoint }] : []),
  ];
  const mounts: Record<string, unknown>[] = [
    { name: 'tmp', mountPath: '/tmp' },
    { name: 'weft-ca-token', mountPath: '/var/run/secrets/weft/ca-token', readOnly: true },
    { name: 'trust-anchors', mountPath: '/etc/weft/trust-anchors', readOnly: true },
    ...(cfg.redisAuth ? [{ name: 'redis-credentials', mountPath: '/var/run/secrets/weft/redis', readOnly: true }] : []),
  ];
  const volumes: Record<string, unknown>[] = [
    { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
    // Its identity, and nothing else: a pod-bound token for the CA only (audience
    // weft-ca, as the ztunnels' join token), exchanged for spiffe://<td>/ns/<ns>/sa/<sa>.
    { name: 'weft-ca-token', projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'weft-ca', expirationSeconds: 3600 } }] } },
    { name: 'trust-anchors', configMap: { name: trustAnchorsName(w.name) } },
    // Made by the operator per namespace (docs/kubernetes.md): the controller reads no Secret.
    ...(cfg.redisAuth ? [{ name: 'redis-credentials', secret: { secretName: WAYPOINT_REDIS_SECRET, defaultMode: 288 } }] : []),
  ];
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(w.serviceAccount), automountServiceAccountToken: false },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta(trustAnchorsName(w.name)), data: { 'root-cert.pem': anchors['root-cert.pem'] } },
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta(w.name),
      spec: {
        selector: { matchLabels: { [GATEWAY_NAME_LABEL]: w.name } },
        template: {
          // The usual `kubernetes-pods` scrape job reads these (docs/observability.md, "Prometheus and Grafana").
          metadata: { labels: podLabels, annotations: PROMETHEUS_ANNOTATIONS },
          spec: {
            serviceAccountName: w.serviceAccount,
            automountServiceAccountToken: false,
            terminationGracePeriodSeconds: 15,
            securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [{
              name: 'waypoint',
              image: cfg.image,
              args: ['waypoint', 'run', '--name', w.name, '--namespace', w.namespace, '--service-account', w.serviceAccount],
              env,
              ports: [
                { name: 'mesh', containerPort: WAYPOINT_HBONE_PORT, protocol: 'TCP' },
                { name: 'http-metrics', containerPort: WAYPOINT_METRICS_PORT, protocol: 'TCP' },
                { name: 'status-port', containerPort: WAYPOINT_READINESS_PORT, protocol: 'TCP' },
              ],
              readinessProbe: { httpGet: { path: '/healthz/ready', port: WAYPOINT_READINESS_PORT }, periodSeconds: 5, failureThreshold: 3 },
              livenessProbe: { tcpSocket: { port: WAYPOINT_READINESS_PORT }, periodSeconds: 10, failureThreshold: 6 },
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              volumeMounts: mounts,
            }],
            volumes,
          },
        },
      },
    },
    {
      // weft.io/use-waypoint none: the namespace's binding must not send the waypoint's own traffic to itself.
      apiVersion: 'v1', kind: 'Service', metadata: { ...meta(w.name), labels: { ...labels, 'weft.io/use-waypoint': 'none' } },
      spec: {
        type: 'ClusterIP',
        selector: { [GATEWAY_NAME_LABEL]: w.name },
        ports: [
          { name: 'status-port', port: WAYPOINT_READINESS_PORT, targetPort: WAYPOINT_READINESS_PORT, protocol: 'TCP' },
          { name: 'mesh', port: WAYPOINT_HBONE_PORT, targetPort: WAYPOINT_HBONE_PORT, protocol: 'TCP' },
        ],
      },
    },
  ];
}

/** The API path of one object waypointObjects returns. */
export function objectPath(o: KubeObject): string {
  const plural = { ServiceAccount: 'serviceaccounts', ConfigMap: 'configmaps', Deployment: 'deployments', Service: 'services' }[o.kind as string];
  const base = o.apiVersion === 'v1' ? '/api/v1' : `/apis/${o.apiVersion}`;
  return `${base}/namespaces/${o.metadata.namespace}/${plural}/${o.metadata.name}`;
}

type GatewayCondition = { type: string; status: 'True' | 'False'; reason: string; message: string };

/**
 * Applies each waypoint's objects when their input changed (or a new leadership began),
 * and sets the Gateway's Accepted and Programmed conditions as Istio does for its
 * waypoints: Programmed once the objects are applied, with the Service's hostname as
 * the address. Objects the user deletes by hand come back at the next resync.
 */
export class WaypointDeployer {
  /** `ns/name` → hash of the objects last applied. */
  private applied = new Map<string, string>();
  private anchors?: { value: TrustAnchors; at: number };
  private lastResync: number;

  constructor(private readonly client: KubeClient, private readonly cfg: WaypointDeployConfig, private readonly logger: Logger,
    private readonly opts: { clusterDomain: string; now?: () => number; anchorsTtlMs?: number; resyncMs?: number }) {
    this.lastResync = this.now();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Forget what was applied: the next reconcile applies everything (a new leader, or a resync). */
  reset(): void {
    this.applied.clear();
  }

  async reconcile(gateways: Map<string, { obj: K8sGatewayAPIObject; result: { ok: true; record: WaypointRecord } | { ok: false; message: string; field: string } }>,
    mayWrite: () => boolean): Promise<void> {
    if (this.now() - this.lastResync > (this.opts.resyncMs ?? 5 * 60_000)) {
      this.lastResync = this.now();
      this.reset();
    }
    for (const [key, { obj, result }] of gateways) {
      if (!mayWrite()) return;
      if (!result.ok) {
        const reason = result.field.startsWith('spec.listeners') ? 'ListenersNotValid' : 'InvalidParameters';
        await this.setStatus(obj, [
          { type: 'Accepted', status: 'False', reason, message: result.message },
          { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'the Gateway is invalid; no waypoint is deployed for it' },
        ]);
        continue;
      }
      let conditions: GatewayCondition[];
      try {
        const anchors = await this.trustAnchors();
        const objects = waypointObjects(obj, result.record, this.cfg, anchors);
        const hash = createHash('sha256').update(stableStringify(objects)).digest('hex');
        if (this.applied.get(key) !== hash) {
          for (const o of objects) {
            if (!mayWrite()) return;
            await this.client.apply(objectPath(o), o, FIELD_MANAGER);
          }
          this.applied.set(key, hash);
          this.logger.info({ gateway: key, image: this.cfg.image }, 'waypoint deployment applied');
        }
        conditions = [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'a weft-waypoint Gateway' },
          { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'the waypoint ServiceAccount, Deployment and Service are applied' },
        ];
      } catch (err) {
        this.applied.delete(key);
        const message = (err as Error).message;
        this.logger.warn({ gateway: key, err: message }, 'could not deploy the waypoint; retrying with the next change or resync');
        conditions = [
          { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'a weft-waypoint Gateway' },
          { type: 'Programmed', status: 'False', reason: 'NoResources', message: `the waypoint could not be deployed: ${message}` },
        ];
      }
      if (mayWrite()) await this.setStatus(obj, conditions, result.record);
    }
    for (const key of this.applied.keys()) if (!gateways.has(key)) this.applied.delete(key);
  }

  /** weft-root-cert from the controller's namespace, re-read at most every anchorsTtlMs (a root rotation reaches the waypoints). */
  private async trustAnchors(): Promise<TrustAnchors> {
    if (this.anchors && this.now() - this.anchors.at < (this.opts.anchorsTtlMs ?? 30_000)) return this.anchors.value;
    const cm = await this.client.get<KubeObject & { data?: Record<string, string> }>(`/api/v1/namespaces/${this.cfg.systemNamespace}/configmaps/${ROOT_CERT_CONFIGMAP}`);
    const pem = cm.data?.['root-cert.pem'];
    if (!pem || !pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new Error(`ConfigMap ${this.cfg.systemNamespace}/${ROOT_CERT_CONFIGMAP} has no PEM certificate under root-cert.pem; create it as docs/kubernetes.md shows`);
    }
    this.anchors = { value: { 'root-cert.pem': pem }, at: this.now() };
    return this.anchors.value;
  }

  private async setStatus(obj: K8sGatewayAPIObject, want: GatewayCondition[], w?: WaypointRecord): Promise<void> {
    const current = (Array.isArray(obj.status?.conditions) ? obj.status.conditions : []) as (GatewayCondition & { observedGeneration?: number; lastTransitionTime?: string })[];
    const gen = obj.metadata.generation;
    const addresses = w ? [{ type: 'Hostname', value: `${w.name}.${w.namespace}.svc.${this.opts.clusterDomain}` }] : [];
    const same = want.every((c) => current.some((x) => x.type === c.type && x.status === c.status && x.reason === c.reason && x.message === c.message && x.observedGeneration === gen))
      && stableStringify(obj.status?.addresses ?? []) === stableStringify(addresses);
    if (same) return;
    const now = new Date(this.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const conditions = [
      ...current.filter((c) => !want.some((x) => x.type === c.type)),
      ...want.map((c) => {
        const prev = current.find((x) => x.type === c.type);
        return { ...c, observedGeneration: gen, lastTransitionTime: prev?.status === c.status && prev.lastTransitionTime ? prev.lastTransitionTime : now };
      }),
    ];
    const m = obj.metadata;
    try {
      await this.client.patch(gatewayAPIPath('gateways', m.namespace!, m.name!, 'status'),
        { metadata: { resourceVersion: m.resourceVersion }, status: { conditions, addresses } }, 'merge');
    } catch (err) {
      this.logger.warn({ gateway: `${m.namespace}/${m.name}`, err: (err as Error).message }, 'could not set the Gateway status');
    }
  }
}
