/**
 * MeshState: the in-memory view of the registry every component reads (ztunnel, CA,
 * CLI). It holds the records, the derived workload views (enrolment, identity,
 * waypoint) and the indexes the data path needs on every connection. No Redis here:
 * a RegistryFollower feeds it, tests feed it by hand.
 *
 * Indexes are maintained incrementally, change by change, because the registry is
 * sized for ~10,000 workloads and a relabel must not cost a full rebuild.
 */
import { EventEmitter } from 'node:events';
import { GATEWAY_NAME_LABEL } from '../gateway/types';
import { USE_WAYPOINT_NONE, deriveWorkloadView, labelsMatch, sameDerivation, type WorkloadView } from './enrolment';
import { CountIndex, OwnerIndex, SetIndex } from './indexes';
import { PolicyIndex } from './policy-index';
import { RouteIndex, type RouteRef } from './route-index';
import {
  KINDS,
  USE_WAYPOINT_LABEL,
  unhandledKind,
  type AuthorizationPolicyRecord,
  type Change,
  type Kind,
  type Labels,
  type NamespaceRecord,
  type NodeRecord,
  type PeerAuthenticationMode,
  type RecordsByKind,
  type ServiceRecord,
  type WaypointRecord,
  type WorkloadRecord,
} from './types';

export type { WorkloadView } from './enrolment';

export type { RouteKind, RouteRef } from './route-index';

/** One full copy of the registry, as loaded by a follower or passed to replaceAll. */
export type RegistrySnapshot = { [K in Kind]: RecordsByKind[K][] };

export interface MeshStateEvents {
  /**
   * Changes applied at `revision`. `affectedWorkloads` lists the uids whose view was
   * added, removed or re-derived — including workloads a namespace relabel enrolled or
   * released, which appear in no change of their own.
   */
  change: [changes: Change[], revision: number, affectedWorkloads: string[]];
  /** Everything was replaced (first load or reload): consumers recompute from scratch. */
  snapshot: [revision: number];
}

type Stores = { [K in Kind]: Map<string, RecordsByKind[K]> };

const SEP = '\u0000';

/**
 * The waypoint a Service is bound to, from its own binding and its namespace's labels
 * (MeshState.serviceWaypointName); for callers holding plain records (`weft apply`).
 */
export function serviceWaypointBinding(service: Pick<ServiceRecord, 'waypoint'>, namespaceLabels: Labels | undefined): string | undefined {
  const own = service.waypoint;
  if (own !== undefined && own !== '') return own === USE_WAYPOINT_NONE ? undefined : own;
  const ns = namespaceLabels?.[USE_WAYPOINT_LABEL];
  return ns === undefined || ns === '' || ns === USE_WAYPOINT_NONE ? undefined : ns;
}

export class MeshState extends EventEmitter<MeshStateEvents> {
  readonly trustDomain: string;
  /** Registry revision this state reflects; 0 before the first load. */
  revision = 0;

  private readonly stores: Stores = emptyStores();
  private readonly views = new Map<string, WorkloadView>();
  /**
   * One string per identity, shared by every view of it. A freshly formatted identity
   * is a tree of V8 cons strings (~217 B); pods of one service account share one flat
   * copy instead: 15 of 93 MB of heap at 100k workloads (docs/scaling.md). Bounded: it
   * is dropped when it outgrows the live views by 1,024 (identities since gone).
   */
  private readonly identityStrings = new Map<string, string>();
  private readonly byAddress = new OwnerIndex();
  private readonly byNode = new SetIndex();
  private readonly byNamespace = new SetIndex();
  /** `ns␀key␀value` → workload uids: lets endpoints() avoid scanning the namespace. */
  private readonly byLabel = new SetIndex();
  /** `node␀ns␀sa` → number of workloads: the CA's node authorization question. */
  private readonly identities = new CountIndex();
  private readonly serviceVips = new OwnerIndex();
  private readonly serviceHosts = new OwnerIndex();
  private readonly policyIndex = new PolicyIndex(this.stores.policy, this.stores.peerauth);
  private readonly routeIndex = new RouteIndex(this.stores);

  constructor(opts: { trustDomain: string }) {
    super();
    this.trustDomain = opts.trustDomain;
  }

  /** Applies changes in order, then emits 'change'. A put replaces, a delete of a missing key is a no-op. */
  applyChanges(changes: Change[], revision: number): void {
    const affected = new Set<string>();
    for (const change of changes) this.applyOne(change, affected);
    this.revision = revision;
    this.emit('change', changes, revision, [...affected]);
  }

  /** Drops everything and loads `snapshot` (a kind left out is empty), then emits 'snapshot'. */
  replaceAll(snapshot: Partial<RegistrySnapshot>, revision: number): void {
    for (const kind of KINDS) this.stores[kind].clear();
    this.views.clear();
    this.identityStrings.clear();
    for (const idx of [this.byAddress, this.byNode, this.byNamespace, this.byLabel, this.identities,
      this.serviceVips, this.serviceHosts, this.policyIndex, this.routeIndex]) idx.clear();
    const ignored = new Set<string>();
    // Namespaces first so each workload is derived once, against its final namespace.
    for (const ns of snapshot.namespace ?? []) this.stores.namespace.set(ns.name, ns);
    for (const n of snapshot.node ?? []) this.stores.node.set(n.name, n);
    for (const w of snapshot.workload ?? []) this.putWorkload(w.uid, w, ignored);
    for (const s of snapshot.service ?? []) this.putService(`${s.namespace}/${s.name}`, s);
    for (const p of snapshot.policy ?? []) this.policyIndex.putPolicy(`${p.namespace}/${p.name}`, p);
    for (const p of snapshot.peerauth ?? []) this.policyIndex.putPeerAuth(`${p.namespace}/${p.name}`, p);
    for (const w of snapshot.waypoint ?? []) this.stores.waypoint.set(`${w.namespace}/${w.name}`, w);
    for (const r of snapshot.httproute ?? []) this.routeIndex.put('httproute', `${r.namespace}/${r.name}`, r);
    for (const r of snapshot.grpcroute ?? []) this.routeIndex.put('grpcroute', `${r.namespace}/${r.name}`, r);
    for (const p of snapshot.trafficpolicy ?? []) this.stores.trafficpolicy.set(`${p.namespace}/${p.name}`, p);
    this.revision = revision;
    this.emit('snapshot', revision);
  }

  get<K extends Kind>(kind: K, key: string): RecordsByKind[K] | undefined {
    return (this.stores[kind] as Map<string, RecordsByKind[K]>).get(key);
  }

  list<K extends Kind>(kind: K): RecordsByKind[K][] {
    return [...(this.stores[kind] as Map<string, RecordsByKind[K]>).values()];
  }

  workload(uid: string): WorkloadView | undefined {
    return this.views.get(uid);
  }

  /** Every workload view, in no particular order. */
  workloads(): WorkloadView[] {
    return [...this.views.values()];
  }

  workloadByAddress(ip: string): WorkloadView | undefined {
    const uid = this.byAddress.get(ip);
    return uid === undefined ? undefined : this.views.get(uid);
  }

  workloadsOnNode(node: string): WorkloadView[] {
    return this.viewsOf(this.byNode.get(node));
  }

  serviceByVip(ip: string): ServiceRecord | undefined {
    const key = this.serviceVips.get(ip);
    return key === undefined ? undefined : this.stores.service.get(key);
  }

  serviceByHostname(host: string): ServiceRecord | undefined {
    const key = this.serviceHosts.get(host);
    return key === undefined ? undefined : this.stores.service.get(key);
  }

  /**
   * Workloads in the service's namespace whose labels match its selector, healthy or
   * not (callers filter on `record.status`). An empty selector selects nothing, as a
   * selector-less Kubernetes Service has no automatic endpoints.
   */
  endpoints(service: ServiceRecord): WorkloadView[] {
    const entries = Object.entries(service.selector);
    if (entries.length === 0) return [];
    // Start from the rarest key=value so a broad label (app.kubernetes.io/part-of) does not cost a scan.
    let smallest: ReadonlySet<string> | undefined;
    for (const [k, v] of entries) {
      const set = this.byLabel.get(labelKey(service.namespace, k, v));
      if (!smallest || set.size < smallest.size) smallest = set;
      if (set.size === 0) return [];
    }
    const out: WorkloadView[] = [];
    for (const uid of smallest ?? []) {
      const view = this.views.get(uid);
      if (view && labelsMatch(service.selector, view.record.labels)) out.push(view);
    }
    return out;
  }

  /** Authorization policies that apply to `w`, sorted by namespace/name (policy-index.ts). */
  policiesFor(w: WorkloadView): AuthorizationPolicyRecord[] {
    return this.policyIndex.policiesFor(w);
  }

  /** Policies of `namespace` bound with targetRefs: what waypoints enforce (policy-index.ts). */
  waypointPolicies(namespace: string): AuthorizationPolicyRecord[] {
    return this.policyIndex.waypointPolicies(namespace);
  }

  /** The PeerAuthentication mode in force for `w`: the most specific wins, STRICT on a tie (policy-index.ts). */
  peerAuthModeFor(w: WorkloadView): PeerAuthenticationMode {
    return this.policyIndex.peerAuthModeFor(w);
  }

  waypoint(namespace: string, name: string): WaypointRecord | undefined {
    return this.stores.waypoint.get(`${namespace}/${name}`);
  }

  /**
   * The name of the waypoint a Service's traffic must go through: the Service's own
   * binding (its weft.io/use-waypoint label) wins over its namespace's label, and
   * `none` opts out. A name is returned even when no such waypoint exists, so the
   * caller can refuse rather than silently skip it.
   */
  serviceWaypointName(service: ServiceRecord): string | undefined {
    return serviceWaypointBinding(service, this.stores.namespace.get(service.namespace)?.labels);
  }

  /** The waypoint's pods (workloads of its namespace labelled with its name), ready or not. */
  waypointPods(w: Pick<WaypointRecord, 'namespace' | 'name'>): WorkloadView[] {
    return this.viewsOf(this.byLabel.get(labelKey(w.namespace, GATEWAY_NAME_LABEL, w.name)));
  }

  /** HTTPRoutes and GRPCRoutes with a parentRef naming the Service `namespace/name` (route-index.ts). */
  routesForService(namespace: string, name: string): RouteRef[] {
    return this.routeIndex.forService(namespace, name);
  }

  node(name: string): NodeRecord | undefined {
    return this.stores.node.get(name);
  }

  /** True when some workload on `node` runs as namespace/serviceAccount (CA node authorization). */
  hasIdentityOnNode(node: string, namespace: string, serviceAccount: string): boolean {
    return this.identities.has(identityKey(node, namespace, serviceAccount));
  }

  private applyOne(change: Change, affected: Set<string>): void {
    const { kind, key } = change;
    if (change.op === 'delete') {
      switch (kind) {
        case 'workload': return this.deleteWorkload(key, affected);
        case 'namespace':
          this.stores.namespace.delete(key);
          return this.rederiveNamespace(key, affected);
        case 'service': return this.deleteService(key);
        case 'policy': return this.policyIndex.deletePolicy(key);
        case 'peerauth': return this.policyIndex.deletePeerAuth(key);
        case 'node': this.stores.node.delete(key); return;
        case 'waypoint': this.stores.waypoint.delete(key); return;
        case 'httproute':
        case 'grpcroute': return this.routeIndex.delete(kind, key);
        case 'trafficpolicy': this.stores.trafficpolicy.delete(key); return;
        default: return unhandledKind(kind);
      }
    }
    switch (change.kind) {
      case 'workload': return this.putWorkload(key, change.record, affected);
      case 'namespace':
        this.stores.namespace.set(key, change.record);
        return this.rederiveNamespace(key, affected);
      case 'service': return this.putService(key, change.record);
      case 'policy': return this.policyIndex.putPolicy(key, change.record);
      case 'peerauth': return this.policyIndex.putPeerAuth(key, change.record);
      case 'node': this.stores.node.set(key, change.record); return;
      case 'waypoint': this.stores.waypoint.set(key, change.record); return;
      case 'httproute': return this.routeIndex.put('httproute', key, change.record);
      case 'grpcroute': return this.routeIndex.put('grpcroute', key, change.record);
      case 'trafficpolicy': this.stores.trafficpolicy.set(key, change.record); return;
      default: return unhandledKind(change);
    }
  }

  private putWorkload(uid: string, record: WorkloadRecord, affected: Set<string>): void {
    const old = this.views.get(uid);
    if (old) this.unindexWorkload(uid, old.record);
    this.stores.workload.set(uid, record);
    const view = this.shareIdentity(deriveWorkloadView(record, this.stores.namespace.get(record.namespace), this.trustDomain));
    this.views.set(uid, view);
    this.indexWorkload(uid, record);
    affected.add(uid);
  }

  private deleteWorkload(uid: string, affected: Set<string>): void {
    const old = this.views.get(uid);
    if (!old) return;
    this.unindexWorkload(uid, old.record);
    this.views.delete(uid);
    this.stores.workload.delete(uid);
    affected.add(uid);
  }

  /** A namespace's labels changed (or it came or went): re-derive only its workloads. */
  private rederiveNamespace(name: string, affected: Set<string>): void {
    const ns: NamespaceRecord | undefined = this.stores.namespace.get(name);
    for (const uid of this.byNamespace.get(name)) {
      const old = this.views.get(uid);
      if (!old) continue;
      const next = this.shareIdentity(deriveWorkloadView(old.record, ns, this.trustDomain));
      if (sameDerivation(old, next)) continue;
      this.views.set(uid, next);
      affected.add(uid);
    }
  }

  private indexWorkload(uid: string, w: WorkloadRecord): void {
    for (const ip of w.addresses) this.byAddress.claim(ip, uid);
    this.byNode.add(w.node, uid);
    this.byNamespace.add(w.namespace, uid);
    for (const [k, v] of Object.entries(w.labels)) this.byLabel.add(labelKey(w.namespace, k, v), uid);
    this.identities.add(identityKey(w.node, w.namespace, w.serviceAccount));
  }

  private unindexWorkload(uid: string, w: WorkloadRecord): void {
    for (const ip of w.addresses) this.byAddress.release(ip, uid);
    this.byNode.remove(w.node, uid);
    this.byNamespace.remove(w.namespace, uid);
    for (const [k, v] of Object.entries(w.labels)) this.byLabel.remove(labelKey(w.namespace, k, v), uid);
    this.identities.remove(identityKey(w.node, w.namespace, w.serviceAccount));
  }

  private shareIdentity(view: WorkloadView): WorkloadView {
    const shared = this.identityStrings.get(view.identity);
    if (shared !== undefined) {
      view.identity = shared;
    } else {
      if (this.identityStrings.size >= this.views.size + 1024) this.identityStrings.clear();
      this.identityStrings.set(view.identity, view.identity);
    }
    return view;
  }

  /** Entries in the identity string table (tests: it stays bounded under churn). */
  identityTableSize(): number {
    return this.identityStrings.size;
  }

  private putService(key: string, s: ServiceRecord): void {
    this.deleteService(key);
    this.stores.service.set(key, s);
    for (const vip of s.vips) this.serviceVips.claim(vip, key);
    this.serviceHosts.claim(s.hostname, key);
  }

  private deleteService(key: string): void {
    const old = this.stores.service.get(key);
    if (!old) return;
    for (const vip of old.vips) this.serviceVips.release(vip, key);
    this.serviceHosts.release(old.hostname, key);
    this.stores.service.delete(key);
  }

  private viewsOf(uids: ReadonlySet<string>): WorkloadView[] {
    const out: WorkloadView[] = [];
    for (const uid of uids) {
      const v = this.views.get(uid);
      if (v) out.push(v);
    }
    return out;
  }
}

function emptyStores(): Stores {
  return {
    node: new Map(), namespace: new Map(), workload: new Map(),
    service: new Map(), policy: new Map(), peerauth: new Map(),
    waypoint: new Map(), httproute: new Map(), grpcroute: new Map(), trafficpolicy: new Map(),
  };
}

function labelKey(ns: string, k: string, v: string): string {
  return `${ns}${SEP}${k}${SEP}${v}`;
}

function identityKey(node: string, ns: string, sa: string): string {
  return `${node}${SEP}${ns}${SEP}${sa}`;
}
