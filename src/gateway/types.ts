/**
 * Gateway API objects as Weft stores and reads them (gateway.networking.k8s.io/v1):
 * the HTTPRoute and GRPCRoute specs for the mesh (GAMMA: routes attach to Services) and
 * the Gateway of class `weft-waypoint` that declares a waypoint.
 *
 * These are the *validated* shapes (validate.ts returns them): only known fields, every
 * default of the spec already filled in where the spec names one (path match
 * `PathPrefix /`, match type `Exact`, backend weight 1, group "" and kind Service), so
 * the route logic never has to guess. Durations stay in the spec's string form
 * (GEP-2257, e.g. `10s`, `500ms`, `1h30m`) so that `weft apply -o yaml` shows what the
 * user wrote; `parseDuration` in duration.ts turns them into milliseconds.
 */

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_API_VERSION = `${GATEWAY_API_GROUP}/v1`;
/** What to do when the API server has no Gateway API (told by the controller and by weft waypoint add). */
export const GATEWAY_API_INSTALL = 'install the Gateway API CRDs (standard channel, v1.1 or later): kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.1/standard-install.yaml';
/** The GatewayClass whose Gateways Weft deploys as waypoints. */
export const WAYPOINT_GATEWAY_CLASS = 'weft-waypoint';
/** Label on a waypoint's pods naming their Gateway (as Istio and Gateway API implementations set it). */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** A parentRef as GAMMA uses it: a Service in the mesh (group "" and kind Service). */
export interface ParentRef {
  group: string;
  kind: string;
  name: string;
  /** Defaults to the route's namespace. */
  namespace?: string;
  /** Scopes the route to one port of the Service. */
  port?: number;
  sectionName?: string;
}

export type PathMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';
export type StringMatchType = 'Exact' | 'RegularExpression';

export interface PathMatch {
  type: PathMatchType;
  value: string;
}

export interface HeaderMatch {
  type: StringMatchType;
  /** As written; header names compare case-insensitively. */
  name: string;
  value: string;
}

export type QueryParamMatch = HeaderMatch;

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'CONNECT' | 'OPTIONS' | 'TRACE' | 'PATCH';

export interface HTTPRouteMatch {
  /** Always present after validation (default PathPrefix `/`). */
  path: PathMatch;
  headers: HeaderMatch[];
  queryParams: QueryParamMatch[];
  method?: HttpMethod;
}

export interface HeaderValue {
  name: string;
  value: string;
}

/** RequestHeaderModifier / ResponseHeaderModifier. */
export interface HeaderModifier {
  set: HeaderValue[];
  add: HeaderValue[];
  remove: string[];
}

export type RedirectStatusCode = 301 | 302 | 303 | 307 | 308;

export type PathModifier =
  | { type: 'ReplaceFullPath'; replaceFullPath: string }
  | { type: 'ReplacePrefixMatch'; replacePrefixMatch: string };

export interface RequestRedirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: PathModifier;
  port?: number;
  /** Default 302. */
  statusCode: RedirectStatusCode;
}

export interface URLRewrite {
  hostname?: string;
  path?: PathModifier;
}

export interface Fraction {
  numerator: number;
  /** Default 100. */
  denominator: number;
}

export interface RequestMirror {
  backendRef: BackendObjectRef;
  /** 0-100; absent (and no fraction) means every request. */
  percent?: number;
  fraction?: Fraction;
}

export type HTTPRouteFilter =
  | { type: 'RequestHeaderModifier'; requestHeaderModifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; responseHeaderModifier: HeaderModifier }
  | { type: 'RequestRedirect'; requestRedirect: RequestRedirect }
  | { type: 'URLRewrite'; urlRewrite: URLRewrite }
  | { type: 'RequestMirror'; requestMirror: RequestMirror };

export type GRPCRouteFilter = Extract<HTTPRouteFilter, { type: 'RequestHeaderModifier' | 'ResponseHeaderModifier' | 'RequestMirror' }>;

/** A reference to a backend object (a Service for Weft). */
export interface BackendObjectRef {
  /** "" (core) after validation. */
  group: string;
  /** `Service` after validation; any other kind is kept so status can say InvalidKind. */
  kind: string;
  name: string;
  /** Defaults to the route's namespace. */
  namespace?: string;
  /** Required for a Service backend (validation refuses a Service ref without one). */
  port?: number;
}

export interface HTTPBackendRef extends BackendObjectRef {
  /** Default 1; 0 = exactly no traffic. */
  weight: number;
  filters: HTTPRouteFilter[];
}

export interface GRPCBackendRef extends BackendObjectRef {
  weight: number;
  filters: GRPCRouteFilter[];
}

export interface HTTPRouteTimeouts {
  /** Whole transaction, retries included; `0s` disables. */
  request?: string;
  /** One attempt; `0s` disables. */
  backendRequest?: string;
}

/** GEP-1731. */
export interface HTTPRouteRetry {
  /** HTTP status codes that trigger a retry (400-599). */
  codes: number[];
  /** Retries after the first try (N → up to N+1 tries). Absent: the implementation's default (Weft: 1). */
  attempts?: number;
  /** Minimum wait between tries. */
  backoff?: string;
}

export interface HTTPRouteRule {
  name?: string;
  /** At least one after validation (default: one match of PathPrefix `/`). */
  matches: HTTPRouteMatch[];
  filters: HTTPRouteFilter[];
  backendRefs: HTTPBackendRef[];
  timeouts?: HTTPRouteTimeouts;
  retry?: HTTPRouteRetry;
}

export interface HTTPRouteSpec {
  parentRefs: ParentRef[];
  /** Not used for selection in the mesh (the VIP chooses), kept for status and display. */
  hostnames: string[];
  /** At least one after validation (default: one rule with the default match). */
  rules: HTTPRouteRule[];
}

export interface GRPCMethodMatch {
  type: StringMatchType;
  /** e.g. `grpc.health.v1.Health`; absent = any service. */
  service?: string;
  /** e.g. `Check`; absent = any method. */
  method?: string;
}

export interface GRPCRouteMatch {
  method?: GRPCMethodMatch;
  headers: HeaderMatch[];
}

export interface GRPCRouteRule {
  name?: string;
  matches: GRPCRouteMatch[];
  filters: GRPCRouteFilter[];
  backendRefs: GRPCBackendRef[];
}

export interface GRPCRouteSpec {
  parentRefs: ParentRef[];
  hostnames: string[];
  rules: GRPCRouteRule[];
}

/** Status conditions Weft reports on a route, per parentRef (Gateway API's RouteParentStatus). */
export type RouteConditionType = 'Accepted' | 'ResolvedRefs';
export type RouteConditionReason =
  | 'Accepted' | 'NoMatchingParent' | 'NotAllowedByListeners' | 'UnsupportedValue'
  | 'ResolvedRefs' | 'BackendNotFound' | 'InvalidKind' | 'RefNotPermitted';

export interface RouteCondition {
  type: RouteConditionType;
  status: 'True' | 'False';
  reason: RouteConditionReason;
  message: string;
}

export interface RouteParentStatus {
  parentRef: ParentRef;
  /** `weft.io/waypoint` (Gateway API's controllerName). */
  controllerName: string;
  conditions: RouteCondition[];
}

/** What a waypoint serves (Istio's `istio.io/waypoint-for`); Weft routes `service` traffic. */
export type WaypointFor = 'service' | 'workload' | 'all' | 'none';

/**
 * A waypoint as the registry holds it (from a Gateway of class `weft-waypoint`). Its
 * pods are ordinary workload records of its namespace labelled
 * `gateway.networking.k8s.io/gateway-name=<name>` and never enrolled themselves.
 */
export interface WaypointRecord {
  name: string;
  namespace: string;
  /** Its pods' service account: the identity sources expect is spiffe://<td>/ns/<namespace>/sa/<serviceAccount>. */
  serviceAccount: string;
  for: WaypointFor;
}

export const WAYPOINT_FOR_VALUES: readonly WaypointFor[] = ['service', 'workload', 'all', 'none'];
/** Label on a waypoint Gateway choosing its WaypointFor (default `service`, as Istio). */
export const WAYPOINT_FOR_LABEL = 'weft.io/waypoint-for';
/**
 * Annotation on a waypoint Gateway naming its ServiceAccount (default: the Gateway's
 * name), Weft's spelling of Istio's `gateway.istio.io/service-account`.
 */
export const WAYPOINT_SERVICE_ACCOUNT_ANNOTATION = 'weft.io/service-account';
/** The HBONE listener a waypoint Gateway may declare (Istio's waypoints: `mesh`, 15008, HBONE). */
export const WAYPOINT_HBONE_PORT = 15008;

/** A validated HTTPRoute or GRPCRoute object (validate.ts): metadata that matters, and the spec. */
export interface RouteObject<S> {
  name: string;
  namespace: string;
  /** ISO 8601, when the object carried one (route precedence uses it: oldest wins). */
  creationTimestamp?: string;
  spec: S;
}

export type HTTPRouteObject = RouteObject<HTTPRouteSpec>;
export type GRPCRouteObject = RouteObject<GRPCRouteSpec>;
