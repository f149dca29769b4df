/**
 * Edge validation of whole Gateway API objects as `weft apply` reads them and the
 * controller mirrors them: HTTPRoute, GRPCRoute, and Gateway of class `weft-waypoint`.
 * Each returns a fresh, typed value with every default filled in (types.ts), or throws
 * FieldError naming the full field path, e.g. `spec.rules[1].matches[0].path.value`;
 * the caller adds the file and document index.
 *
 * Unknown fields: 'reject' (the default here, for writers: a typo surfaces at the edge)
 * or 'drop' (readers: a newer writer's fields do not make an older reader discard the
 * object). Metadata the API server fills in (uid, resourceVersion, managedFields, ...)
 * and `status` are accepted and ignored either way, so `kubectl get -o yaml` output applies.
 */
import { FieldError, Obj, checkLabels, checkString, join, rules, type UnknownKeys } from '../registry/checks';
import type { Labels } from '../registry/types';
import { validateGRPCRouteSpec } from './validate-grpc';
import { validateHTTPRouteSpec } from './validate-http';
import {
  GATEWAY_API_GROUP,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_FOR_VALUES,
  WAYPOINT_GATEWAY_CLASS,
  WAYPOINT_HBONE_PORT,
  WAYPOINT_SERVICE_ACCOUNT_ANNOTATION,
  type GRPCRouteObject,
  type HTTPRouteObject,
  type WaypointFor,
  type WaypointRecord,
} from './types';

export { validateHTTPRouteSpec } from './validate-http';
export { validateGRPCRouteSpec } from './validate-grpc';

export interface GatewayValidateOptions {
  /** 'reject' (default: writers, `weft apply`) or 'drop' (readers). */
  unknownKeys?: UnknownKeys;
  /** The namespace of an object whose metadata names none (kubectl's current namespace); without it one is required. */
  namespace?: string;
}

/** API versions accepted per kind: the served versions whose schema Weft's shapes cover. */
const API_VERSIONS: Record<string, readonly string[]> = {
  HTTPRoute: [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`],
  GRPCRoute: [`${GATEWAY_API_GROUP}/v1`],
  Gateway: [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`],
};
const TOP_KEYS = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
/** Metadata Weft reads, then metadata the API server writes, which Weft ignores. */
const METADATA_KEYS = ['name', 'namespace', 'creationTimestamp', 'labels', 'annotations',
  'uid', 'resourceVersion', 'generation', 'managedFields', 'finalizers', 'ownerReferences', 'generateName', 'deletionTimestamp', 'deletionGracePeriodSeconds'];
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export interface Meta {
  name: string;
  namespace: string;
  creationTimestamp?: string;
  labels: Labels;
  annotations: Record<string, string>;
}

/**
 * apiVersion, kind and metadata of an object of `kind`; the Obj gives the caller `spec`.
 * Weft's own kinds (TrafficPolicy) pass their apiVersions; Gateway API kinds use the table above.
 */
export function envelope(v: unknown, kind: string, opts: GatewayValidateOptions, nameRule = rules.dnsSubdomain,
  apiVersions: readonly string[] = API_VERSIONS[kind] ?? []): { o: Obj; meta: Meta } {
  const unknown = opts.unknownKeys ?? 'reject';
  const o = new Obj(v, '', TOP_KEYS, unknown);
  const apiVersion = o.string('apiVersion');
  const gotKind = o.string('kind');
  if (gotKind !== kind) throw new FieldError('kind', `must be ${kind}, got ${JSON.stringify(gotKind)}`);
  if (!apiVersions.includes(apiVersion)) throw new FieldError('apiVersion', `must be ${apiVersions.join(' or ')} for a ${kind}, got ${JSON.stringify(apiVersion)}`);
  const m = new Obj(o.o.metadata, 'metadata', METADATA_KEYS, unknown);
  const meta: Meta = {
    name: m.string('name', nameRule),
    namespace: m.has('namespace') ? m.string('namespace', rules.dnsLabel) : '',
    labels: m.has('labels') ? checkLabels(m.o.labels, 'metadata.labels') : {},
    annotations: m.has('annotations') ? annotations(m.o.annotations, 'metadata.annotations') : {},
  };
  if (meta.namespace === '') {
    if (opts.namespace === undefined) throw new FieldError('metadata.namespace', 'is required (or give a default namespace, as with -n)');
    meta.namespace = checkString(opts.namespace, 'metadata.namespace', rules.dnsLabel);
  }
  if (m.has('creationTimestamp')) meta.creationTimestamp = timestamp(m.o.creationTimestamp, 'metadata.creationTimestamp');
  return { o, meta };
}

function annotations(v: unknown, path: string): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FieldError(path, 'must be an object of string annotations');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string') throw new FieldError(`${path}[${JSON.stringify(k)}]`, 'must be a string');
    out[k] = val;
  }
  return out;
}

/** An RFC 3339 time (YAML may have parsed it into a Date), returned as an ISO string. */
function timestamp(v: unknown, path: string): string {
  const ok = v instanceof Date ? !Number.isNaN(v.getTime()) : typeof v === 'string' && RFC3339.test(v) && !Number.isNaN(Date.parse(v));
  if (!ok) throw new FieldError(path, 'must be an RFC 3339 time such as 2024-05-01T12:00:00Z');
  return new Date(v as string | Date).toISOString();
}

function routeObject<S>(v: unknown, kind: string, opts: GatewayValidateOptions, spec: (v: unknown, path: string, u: UnknownKeys) => S) {
  const { o, meta } = envelope(v, kind, opts);
  const out: { name: string; namespace: string; creationTimestamp?: string; spec: S } = {
    name: meta.name, namespace: meta.namespace, spec: spec(o.o.spec, 'spec', opts.unknownKeys ?? 'reject'),
  };
  if (meta.creationTimestamp !== undefined) out.creationTimestamp = meta.creationTimestamp;
  return out;
}

export function validateHTTPRoute(obj: unknown, opts: GatewayValidateOptions = {}): HTTPRouteObject {
  return routeObject(obj, 'HTTPRoute', opts, validateHTTPRouteSpec);
}

export function validateGRPCRoute(obj: unknown, opts: GatewayValidateOptions = {}): GRPCRouteObject {
  return routeObject(obj, 'GRPCRoute', opts, validateGRPCRouteSpec);
}

/**
 * A Gateway of class `weft-waypoint`, as the waypoint record it declares. Like Istio's
 * waypoints: the ServiceAccount is the Gateway's name unless the annotation
 * `weft.io/service-account` (Istio: `gateway.istio.io/service-account`) names another;
 * `weft.io/waypoint-for` (Istio: `istio.io/waypoint-for`) picks the traffic, default
 * `service`; listeners may be left out, and if given are the one HBONE listener on 15008.
 * The name must be a DNS label because the waypoint's Service carries it.
 */
export function validateWaypointGateway(obj: unknown, opts: GatewayValidateOptions = {}): WaypointRecord {
  const unknown = opts.unknownKeys ?? 'reject';
  const { o, meta } = envelope(obj, 'Gateway', opts, rules.dnsLabel);
  const spec = new Obj(o.o.spec, 'spec', ['gatewayClassName', 'listeners'], unknown);
  const cls = spec.string('gatewayClassName');
  if (cls !== WAYPOINT_GATEWAY_CLASS) {
    throw new FieldError('spec.gatewayClassName', `must be ${WAYPOINT_GATEWAY_CLASS} (Weft deploys only Gateways of that class, as waypoints), got ${JSON.stringify(cls)}`);
  }
  if (spec.has('listeners')) {
    const listeners = spec.array('listeners', (v, p) => {
      const l = new Obj(v, p, ['name', 'port', 'protocol'], unknown);
      l.string('name', rules.dnsSubdomain);
      if (l.port('port') !== WAYPOINT_HBONE_PORT) throw new FieldError(join(p, 'port'), `must be ${WAYPOINT_HBONE_PORT} (a waypoint listens for HBONE there)`);
      if (l.string('protocol') !== 'HBONE') throw new FieldError(join(p, 'protocol'), `must be HBONE, got ${JSON.stringify(l.o.protocol)}`);
      return l;
    });
    if (listeners.length !== 1) throw new FieldError('spec.listeners', `must be the one HBONE listener (name mesh, port ${WAYPOINT_HBONE_PORT}, protocol HBONE) or left out, got ${listeners.length}`);
  }
  const forValue = meta.labels[WAYPOINT_FOR_LABEL];
  if (forValue !== undefined && !WAYPOINT_FOR_VALUES.includes(forValue as WaypointFor)) {
    throw new FieldError(`metadata.labels[${JSON.stringify(WAYPOINT_FOR_LABEL)}]`, `must be one of ${WAYPOINT_FOR_VALUES.join(', ')}, got ${JSON.stringify(forValue)}`);
  }
  const sa = meta.annotations[WAYPOINT_SERVICE_ACCOUNT_ANNOTATION];
  if (sa !== undefined) checkString(sa, `metadata.annotations[${JSON.stringify(WAYPOINT_SERVICE_ACCOUNT_ANNOTATION)}]`, rules.dnsSubdomain);
  return { name: meta.name, namespace: meta.namespace, serviceAccount: sa ?? meta.name, for: (forValue as WaypointFor | undefined) ?? 'service' };
}

export type GatewayAPIObject =
  | { kind: 'HTTPRoute'; value: HTTPRouteObject }
  | { kind: 'GRPCRoute'; value: GRPCRouteObject }
  | { kind: 'Gateway'; value: WaypointRecord };

/** Validates any of the three kinds by its `kind` field (for `weft apply`, which sees mixed documents). */
export function validateGatewayAPIObject(obj: unknown, opts: GatewayValidateOptions = {}): GatewayAPIObject {
  const kind = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>).kind : undefined;
  switch (kind) {
    case 'HTTPRoute': return { kind, value: validateHTTPRoute(obj, opts) };
    case 'GRPCRoute': return { kind, value: validateGRPCRoute(obj, opts) };
    case 'Gateway': return { kind, value: validateWaypointGateway(obj, opts) };
    default: throw new FieldError('kind', `must be HTTPRoute, GRPCRoute or Gateway, got ${JSON.stringify(kind)}`);
  }
}
