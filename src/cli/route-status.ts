/**
 * Route status as `weft routes` shows it: Gateway API's Accepted and ResolvedRefs
 * conditions per parentRef, computed from the registry. Pure.
 *
 * Interim home: the shared computation belongs in src/gateway/status.ts (helper
 * gwroute, with backend resolution in src/gateway/backend.ts); this file goes once that
 * lands, and `weft routes` imports it instead.
 *
 * - Accepted: the parentRef is a core Service (group "", kind Service) that exists,
 *   with the port the ref names; otherwise False / NoMatchingParent.
 * - ResolvedRefs: every backendRef of every rule is a core Service (else InvalidKind),
 *   in the route's namespace or the parent Service itself (else RefNotPermitted: Weft
 *   has no ReferenceGrant), that exists and has the port (else BackendNotFound).
 */
import type { BackendObjectRef, ParentRef, RouteCondition, RouteConditionReason, RouteParentStatus } from '../gateway/types';
import type { RouteRecord } from '../registry/types';

export const WEFT_CONTROLLER_NAME = 'weft.io/waypoint';

/** What status needs of the registry: a Service's ports. */
export interface StatusLookup {
  service(namespace: string, name: string): { ports: readonly { port: number }[] } | undefined;
}

type AnyRoute = RouteRecord<{ parentRefs: ParentRef[]; rules: { backendRefs: BackendObjectRef[] }[] }>;

const isService = (r: { group: string; kind: string }) => r.group === '' && r.kind === 'Service';

function ref(r: { namespace?: string; name: string; port?: number }, ns: string): string {
  return `${r.namespace ?? ns}/${r.name}${r.port !== undefined ? `:${r.port}` : ''}`;
}

function accepted(route: AnyRoute, p: ParentRef, lookup: StatusLookup): RouteCondition {
  const no = (message: string): RouteCondition => ({ type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message });
  if (!isService(p)) return no(`parentRef ${p.group || 'core'}/${p.kind} ${p.name}: Weft attaches routes to Services only (group "", kind Service)`);
  const ns = p.namespace ?? route.namespace;
  const svc = lookup.service(ns, p.name);
  if (!svc) return no(`Service ${ns}/${p.name} does not exist`);
  if (p.port !== undefined && !svc.ports.some((x) => x.port === p.port)) {
    return no(`Service ${ns}/${p.name} has no port ${p.port} (ports: ${svc.ports.map((x) => x.port).join(', ') || 'none'})`);
  }
  return { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Route was valid' };
}

function backendProblem(route: AnyRoute, b: BackendObjectRef, lookup: StatusLookup): { reason: RouteConditionReason; message: string } | undefined {
  const name = ref(b, route.namespace);
  if (!isService(b)) return { reason: 'InvalidKind', message: `backendRef ${b.group || 'core'}/${b.kind} ${name}: only core Services can be backends` };
  const ns = b.namespace ?? route.namespace;
  const toParent = route.spec.parentRefs.some((p) => isService(p) && p.name === b.name && (p.namespace ?? route.namespace) === ns);
  if (ns !== route.namespace && !toParent) {
    return { reason: 'RefNotPermitted', message: `backendRef ${name}: another namespace's Service may be a backend only when it is the route's parent` };
  }
  const svc = lookup.service(ns, b.name);
  if (!svc) return { reason: 'BackendNotFound', message: `backendRef ${name}: Service ${ns}/${b.name} does not exist` };
  if (b.port === undefined || !svc.ports.some((x) => x.port === b.port)) {
    return { reason: 'BackendNotFound', message: `backendRef ${name}: Service ${ns}/${b.name} has no port ${b.port ?? '(none given)'}` };
  }
  return undefined;
}

/** Same for every parent: the backends do not depend on the parent. The first problem's reason; every message. */
function resolvedRefs(route: AnyRoute, lookup: StatusLookup): RouteCondition {
  const problems = route.spec.rules.flatMap((r) => r.backendRefs).map((b) => backendProblem(route, b, lookup)).filter((p) => p !== undefined);
  if (problems.length === 0) return { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'All references resolved' };
  return { type: 'ResolvedRefs', status: 'False', reason: problems[0]!.reason, message: problems.map((p) => p.message).join('; ') };
}

export function routeStatus(route: AnyRoute, lookup: StatusLookup): RouteParentStatus[] {
  const refs = resolvedRefs(route, lookup);
  return route.spec.parentRefs.map((p) => ({ parentRef: p, controllerName: WEFT_CONTROLLER_NAME, conditions: [accepted(route, p, lookup), refs] }));
}
