/**
 * Which routes apply to one request: GAMMA attachment (Gateway API for the mesh).
 *
 * In the mesh a route is chosen by the destination Service VIP:port the caller dialled,
 * never by the Host header, and by who is calling:
 * - a parentRef names a Service (group "" kind Service); its namespace defaults to the
 *   route's; a `port` (and a `sectionName`, the Service port's name) scopes it to one port;
 * - a *producer* route (in the Service's namespace) applies to every caller;
 * - a *consumer* route (in another namespace) applies only to callers in the route's own
 *   namespace, and for those callers the consumer routes replace the producer routes.
 *   A route in a third namespace (neither the Service's nor the caller's) never applies.
 * - HTTPRoutes and GRPCRoutes are never merged: when both kinds attach to the same
 *   port, only the kind of the oldest route (then `ns/name` first) is kept
 *   (grpcroute_types.go, Hostnames; in the mesh the hostnames always intersect).
 *
 * Pure: the waypoint, `weft explain` and `weft routes` all call it.
 */
import type { GRPCRouteSpec, HTTPRouteSpec, ParentRef } from './types';

/** A route as the registry and the controller hand it over (validated spec). */
export type RouteRecord =
  | { kind: 'HTTPRoute'; name: string; namespace: string; creationTimestamp: string; spec: HTTPRouteSpec }
  | { kind: 'GRPCRoute'; name: string; namespace: string; creationTimestamp: string; spec: GRPCRouteSpec };

export type RouteKind = RouteRecord['kind'];

/** The Service VIP:port a request was sent to. */
export interface ServiceTarget {
  namespace: string;
  name: string;
  port: number;
  /** The Service port's name, for parentRefs that use `sectionName`. */
  portName?: string;
}

/** True when `ref` (of a route in `routeNamespace`) names this Service and port. */
export function parentRefTargets(ref: ParentRef, routeNamespace: string, target: ServiceTarget): boolean {
  if (ref.group !== '' || ref.kind !== 'Service') return false;
  if (ref.name !== target.name || (ref.namespace ?? routeNamespace) !== target.namespace) return false;
  if (ref.port !== undefined && ref.port !== target.port) return false;
  if (ref.sectionName !== undefined && ref.sectionName !== target.portName) return false;
  return true;
}

/** True when the route has a parentRef naming this Service and port (whoever calls). */
export function routeTargets(route: RouteRecord, target: ServiceTarget): boolean {
  return route.spec.parentRefs.some((ref) => parentRefTargets(ref, route.namespace, target));
}

/** `ns/name`, the spec's second tie-breaker and the name routes are shown by. */
export function routeKey(route: { namespace: string; name: string }): string {
  return `${route.namespace}/${route.name}`;
}

/** What compareRouteAge reads: also used for Weft's own policies (TrafficPolicy), which follow the same rule. */
export type AgedObject = Pick<RouteRecord, 'namespace' | 'name' | 'creationTimestamp'>;

/**
 * The spec's order between routes: the oldest first, then `ns/name` alphabetically.
 * Timestamps are ISO strings; an unparsable one sorts last (it cannot be older).
 */
export function compareRouteAge(a: AgedObject, b: AgedObject): number {
  const ta = timestampMs(a.creationTimestamp);
  const tb = timestampMs(b.creationTimestamp);
  if (ta !== tb) return ta - tb;
  const ka = routeKey(a);
  const kb = routeKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function timestampMs(iso: string): number {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : Number.MAX_SAFE_INTEGER;
}

/**
 * The routes that apply to a request to `target` from a caller in `callerNamespace`,
 * oldest first. Empty means no route is attached: the waypoint then forwards to the
 * Service as plain L4/L7 passthrough (no 404).
 */
export function attachedRoutes(routes: readonly RouteRecord[], target: ServiceTarget, callerNamespace: string): RouteRecord[] {
  const producer: RouteRecord[] = [];
  const consumer: RouteRecord[] = [];
  for (const route of routes) {
    if (!routeTargets(route, target)) continue;
    if (route.namespace === target.namespace) producer.push(route);
    else if (route.namespace === callerNamespace) consumer.push(route);
    // A route in a third namespace: it can only ever affect its own namespace's callers.
  }
  const chosen = consumer.length > 0 ? consumer : producer;
  chosen.sort(compareRouteAge);
  return oneKind(chosen);
}

/** Keeps only the routes of the kind of the first (oldest) route: no HTTP/gRPC merging. */
function oneKind(sorted: RouteRecord[]): RouteRecord[] {
  const first = sorted[0];
  return first === undefined ? sorted : sorted.filter((r) => r.kind === first.kind);
}
