/**
 * Route status per parentRef (Gateway API RouteParentStatus), computed from the route
 * and a registry view: what `weft routes` shows on the lab and what the controller
 * writes to the API server. Pure; the caller adds timestamps and generations.
 *
 * - Accepted: True/Accepted when the parent Service exists and has the port (and the
 *   port name) the parentRef asks for; False/NoMatchingParent otherwise. False/
 *   NotAllowedByListeners when an older route of the other kind (HTTPRoute vs GRPCRoute)
 *   already holds that Service port: the spec accepts exactly one of the two.
 * - ResolvedRefs: True/ResolvedRefs when every backendRef and mirror backendRef
 *   resolves; else False with the first failure's reason (InvalidKind, RefNotPermitted,
 *   BackendNotFound) and a message naming every failing backend.
 * ParentRefs that are not Services (e.g. a Gateway) belong to another controller: Weft
 * writes no status for them.
 */
import { compareRouteAge, routeKey, type RouteRecord } from './attach';
import { describeRef, resolveBackend, type ServiceLookup, type ServiceView } from './backend';
import type { BackendObjectRef, ParentRef, RouteCondition, RouteParentStatus } from './types';

/** Gateway API's controllerName for Weft's waypoints. */
export const WEFT_CONTROLLER_NAME = 'weft.io/waypoint';

/**
 * Status for each Service parentRef of `route`. `routes` (all routes known, this one may
 * be among them) lets the HTTPRoute/GRPCRoute conflict be reported; without it that
 * check is skipped.
 */
export function routeStatus(route: RouteRecord, lookup: ServiceLookup, routes: readonly RouteRecord[] = []): RouteParentStatus[] {
  const resolved = resolvedRefsCondition(route, lookup);
  const out: RouteParentStatus[] = [];
  for (const ref of route.spec.parentRefs) {
    if (ref.group !== '' || ref.kind !== 'Service') continue;
    out.push({ parentRef: ref, controllerName: WEFT_CONTROLLER_NAME, conditions: [acceptedCondition(route, ref, lookup, routes), resolved] });
  }
  return out;
}

function parentName(ref: ParentRef, routeNamespace: string): string {
  const port = ref.port !== undefined ? `:${ref.port}` : ref.sectionName !== undefined ? ` port ${ref.sectionName}` : '';
  return `Service ${ref.namespace ?? routeNamespace}/${ref.name}${port}`;
}

function acceptedCondition(route: RouteRecord, ref: ParentRef, lookup: ServiceLookup, routes: readonly RouteRecord[]): RouteCondition {
  const namespace = ref.namespace ?? route.namespace;
  const svc = lookup.service(namespace, ref.name);
  const name = parentName(ref, route.namespace);
  const noParent = (message: string): RouteCondition => ({ type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message });
  if (svc === undefined) return noParent(`${name}: the Service does not exist; create it or fix parentRefs`);
  const ports = portsOf(svc, ref);
  if (ports.length === 0) {
    const have = svc.ports.map((p) => (p.name !== undefined ? `${p.port} (${p.name})` : String(p.port))).join(', ') || 'none';
    return noParent(`${name}: the Service has no such port (ports: ${have})`);
  }
  const rival = olderRivalKind(route, namespace, ref.name, ports.map((p) => p.port), routes);
  if (rival !== undefined) {
    return {
      type: 'Accepted', status: 'False', reason: 'NotAllowedByListeners',
      message: `${name}: ${rival.kind} ${routeKey(rival)} is older and already routes this port; HTTPRoutes and GRPCRoutes are never merged on one Service port`,
    };
  }
  return { type: 'Accepted', status: 'True', reason: 'Accepted', message: `attached to ${name}` };
}

/** The Service ports a parentRef selects (all of them without port or sectionName). */
function portsOf(svc: ServiceView, ref: ParentRef): ServiceView['ports'] {
  return svc.ports.filter((p) => (ref.port === undefined || p.port === ref.port)
    && (ref.sectionName === undefined || p.name === ref.sectionName));
}

/**
 * The oldest route of the other kind that attaches to one of these ports of the same
 * Service from the same side (producer routes vs one namespace's consumer routes),
 * when it is older than `route`.
 */
function olderRivalKind(route: RouteRecord, namespace: string, name: string, ports: number[], routes: readonly RouteRecord[]): RouteRecord | undefined {
  let best: RouteRecord | undefined;
  for (const other of routes) {
    if (other.kind === route.kind || other.namespace !== route.namespace) continue;
    if (compareRouteAge(other, route) >= 0) continue;
    const hits = other.spec.parentRefs.some((p) => p.group === '' && p.kind === 'Service' && p.name === name
      && (p.namespace ?? other.namespace) === namespace && (p.port === undefined || ports.includes(p.port)));
    if (hits && (best === undefined || compareRouteAge(other, best) < 0)) best = other;
  }
  return best;
}

/** Every backend a route refers to: backendRefs, and mirror targets at both filter levels. */
export function referencedBackends(route: RouteRecord): BackendObjectRef[] {
  const out: BackendObjectRef[] = [];
  for (const rule of route.spec.rules) {
    const filters = [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters)];
    out.push(...rule.backendRefs);
    for (const f of filters) if (f.type === 'RequestMirror') out.push(f.requestMirror.backendRef);
  }
  return out;
}

function resolvedRefsCondition(route: RouteRecord, lookup: ServiceLookup): RouteCondition {
  const failures: { reason: RouteCondition['reason']; message: string }[] = [];
  const seen = new Set<string>();
  for (const ref of referencedBackends(route)) {
    const key = `${ref.group}/${ref.kind}/${describeRef(ref, route.namespace)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const res = resolveBackend(ref, route, lookup);
    if (!res.ok) failures.push(res);
  }
  if (failures.length === 0) return { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all backend references resolved' };
  return { type: 'ResolvedRefs', status: 'False', reason: failures[0]!.reason, message: failures.map((f) => f.message).join('; ') };
}
