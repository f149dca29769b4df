/**
 * Registry records: the shapes stored in Redis (as JSON) and held in memory. Modelled
 * on Istio's workload API (workload.proto, authorization.proto). Derived facts, such
 * as whether a workload is in the mesh, are NOT stored: see enrolment.ts.
 */

export const DATAPLANE_MODE_LABEL = 'weft.io/dataplane-mode';
export const DATAPLANE_MODE_AMBIENT = 'ambient';
export const DATAPLANE_MODE_NONE = 'none';
export const USE_WAYPOINT_LABEL = 'weft.io/use-waypoint';

export type Labels = Record<string, string>;

import type { GRPCRouteSpec, HTTPRouteSpec, WaypointRecord } from '../gateway/types';
import type { TrafficPolicySpec } from '../resilience/spec';
export type { WaypointRecord } from '../gateway/types';

export interface NodeRecord {
  name: string;
  /** Address peers use to reach this node's ztunnel (HBONE, node-level capture). */
  address: string;
  /** Pod CIDR of the node, e.g. 198.19.1.0/24. */
  podCidr?: string;
  labels?: Labels;
}

export interface NamespaceRecord {
  name: string;
  labels: Labels;
}

export type WorkloadStatus = 'Healthy' | 'Unhealthy';

export interface WorkloadRecord {
  /** Stable unique id (the pod UID in Kubernetes; `<ns>/<name>` in the lab). */
  uid: string;
  name: string;
  namespace: string;
  /** Node the workload is scheduled on. */
  node: string;
  /** Pod IPs. */
  addresses: string[];
  serviceAccount: string;
  labels: Labels;
  /** Container ports the workload listens on (informational). */
  ports?: number[];
  status: WorkloadStatus;
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort: number;
  appProtocol?: string;
}

export type LoadBalancing = 'ROUND_ROBIN' | 'LEAST_CONN';

export interface ServiceRecord {
  name: string;
  namespace: string;
  /** e.g. echo.demo.svc.cluster.local */
  hostname: string;
  vips: string[];
  ports: ServicePort[];
  /** Label selector; workloads in the same namespace matching it are the endpoints. */
  selector: Labels;
  /** Service-level waypoint binding (the weft.io/use-waypoint label of the Service). */
  waypoint?: string;
  loadBalancing?: LoadBalancing;
}

/**
 * AUDIT (waypoint-bound policies only) decides nothing: a request it matches is logged
 * and counted, as Istio's AUDIT action.
 */
export type PolicyAction = 'ALLOW' | 'DENY' | 'AUDIT';
export type PolicyScope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';

/**
 * One match: every field present must hold (AND); within a field any value may hold
 * (OR); a `not*` field must hold for none of its values.
 */
export interface PolicyMatch {
  namespaces?: string[];
  notNamespaces?: string[];
  /** SPIFFE ids without the scheme prefix is NOT accepted: always full spiffe:// URIs. */
  principals?: string[];
  notPrincipals?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  /** CIDRs or single IPs. */
  sourceIps?: string[];
  notSourceIps?: string[];
  destinationIps?: string[];
  notDestinationIps?: string[];
  destinationPorts?: number[];
  notDestinationPorts?: number[];
  // L7 fields: only a waypoint can check them, so only a policy with targetRefs may
  // carry them (validate.ts). Values use Istio's string match (`*`, `pre*`, `*suf`).
  /** HTTP methods (gRPC: always POST), compared case-insensitively (src/authz/match.ts). */
  methods?: string[];
  notMethods?: string[];
  /** Paths without the query, compared after normalisation (src/authz/match.ts). */
  paths?: string[];
  notPaths?: string[];
  /** Host header / :authority, case-insensitive; a port in the request may be left out. */
  hosts?: string[];
  notHosts?: string[];
  /** Every entry must hold: the header is present and one of its values matches. */
  requestHeaders?: PolicyHeaderMatch[];
  /** No entry may hold (an absent header holds for none). */
  notRequestHeaders?: PolicyHeaderMatch[];
}

/** `request.headers[name]` of an Istio `when` condition. */
export interface PolicyHeaderMatch {
  /** Lower-case header name. */
  name: string;
  values: string[];
}

/**
 * What a waypoint-bound policy is attached to (Istio's targetRefs): a Service of the
 * policy's namespace (requests to it, at its waypoint), or a waypoint's Gateway
 * (every request that waypoint serves).
 */
export interface PolicyTargetRef {
  kind: 'Service' | 'Gateway';
  name: string;
}

/** A clause holds when any of its matches holds. */
export interface PolicyClause {
  matches: PolicyMatch[];
}

/** A rule holds when all of its clauses hold. */
export interface PolicyRule {
  clauses: PolicyClause[];
}

export interface AuthorizationPolicyRecord {
  name: string;
  namespace: string;
  /** GLOBAL applies mesh-wide (policy lives in the root namespace, weft-system). */
  scope: PolicyScope;
  /** For WORKLOAD_SELECTOR: labels of the destination workloads it applies to. */
  selector?: Labels;
  /**
   * Set: the policy is enforced by waypoints, for the Services or waypoints named (scope
   * is then NAMESPACE and there is no selector), and ztunnels ignore it. Absent: the
   * ztunnel enforces it at L4, as before.
   */
  targetRefs?: PolicyTargetRef[];
  action: PolicyAction;
  /** The policy matches when any rule matches. An empty list matches nothing for ALLOW and DENY alike. */
  rules: PolicyRule[];
  /**
   * Set when the policy's source (the Kubernetes object, or the stored record) is
   * invalid. The record then still stands, so an invalid edit never opens access: see
   * policy-fallback.ts for what it holds.
   */
  invalid?: PolicyInvalid;
}

/**
 * `LastGood`: the source is invalid and the record keeps the last valid version's
 * rules. `FailClosed`: no valid version exists, so the record is a stand-in that can
 * only narrow access (an ALLOW matching nothing, or a DENY matching everything).
 */
export type PolicyInvalidState = 'LastGood' | 'FailClosed';

export interface PolicyInvalid {
  state: PolicyInvalidState;
  /** What is wrong with the source, naming the field; for status, logs and `weft policies`. */
  reason: string;
}

export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE';

/** STRICT refuses plaintext (no peer identity) to the workloads it selects. */
export interface PeerAuthenticationRecord {
  name: string;
  namespace: string;
  /** Absent: the whole namespace (or the mesh, in weft-system). */
  selector?: Labels;
  mode: PeerAuthenticationMode;
}

/**
 * A Gateway API route for the mesh (GAMMA), as mirrored from Kubernetes or written by
 * `weft apply`. The spec is the validated one (src/gateway/validate.ts).
 */
export interface RouteRecord<S> {
  name: string;
  namespace: string;
  /** RFC 3339; the oldest route wins a precedence tie, as in Gateway API. */
  creationTimestamp: string;
  spec: S;
}

export type HTTPRouteRecord = RouteRecord<HTTPRouteSpec>;
export type GRPCRouteRecord = RouteRecord<GRPCRouteSpec>;

/**
 * A TrafficPolicy (networking.weft.io/v1alpha1, src/resilience/spec.ts) as mirrored from
 * Kubernetes or written by `weft apply`: the validated spec, defaults filled in. The
 * creationTimestamp decides between two policies on one Service (the oldest wins).
 */
export type TrafficPolicyRecord = RouteRecord<TrafficPolicySpec>;

/** Every kind the registry holds, with the record type for each. */
export interface RecordsByKind {
  node: NodeRecord;
  namespace: NamespaceRecord;
  workload: WorkloadRecord;
  service: ServiceRecord;
  policy: AuthorizationPolicyRecord;
  peerauth: PeerAuthenticationRecord;
  waypoint: WaypointRecord;
  httproute: HTTPRouteRecord;
  grpcroute: GRPCRouteRecord;
  trafficpolicy: TrafficPolicyRecord;
}

export type Kind = keyof RecordsByKind;
export const KINDS: readonly Kind[] = ['node', 'namespace', 'workload', 'service', 'policy', 'peerauth', 'waypoint', 'httproute', 'grpcroute', 'trafficpolicy'];

/** For a `switch` over kinds: adding a kind fails to compile until every switch handles it. */
export function unhandledKind(kind: never): never {
  throw new Error(`unhandled registry kind ${String(kind)}`);
}

export const ROOT_NAMESPACE = 'weft-system';

/** The key a record is stored under within its kind. */
export function recordKey<K extends Kind>(kind: K, record: RecordsByKind[K]): string {
  switch (kind) {
    case 'node':
    case 'namespace':
      return (record as NodeRecord | NamespaceRecord).name;
    case 'workload':
      return (record as WorkloadRecord).uid;
    default: {
      const r = record as { namespace: string; name: string };
      return `${r.namespace}/${r.name}`;
    }
  }
}

/** One change, as written to the change stream and delivered to followers. */
export type Change =
  | { [K in Kind]: { op: 'put'; kind: K; key: string; record: RecordsByKind[K] } }[Kind]
  | { op: 'delete'; kind: Kind; key: string };
