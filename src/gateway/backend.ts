/**
 * Backends of a matched rule: how a backendRef resolves, and which one a request goes
 * to (weighted choice with an injectable random source).
 *
 * The spec's failure rules (httproute_types.go, HTTPRouteRule.BackendRefs):
 * - weight 0 never receives traffic; weights are relative integers (default 1);
 * - an invalid backendRef (not a core Service, a Service that does not exist, a port the
 *   Service does not have, or a cross-namespace reference Weft does not permit) keeps
 *   its weight share, and that share is answered 500; all invalid → every request 500;
 * - a valid Service with no ready endpoint is the waypoint's 503 (no healthy upstream).
 * The functions return decisions; the waypoint acts on them, `weft explain` prints them.
 *
 * Cross-namespace backendRefs: Weft has no ReferenceGrant, so a backendRef may leave the
 * route's namespace only to the Service the route is attached to (a consumer route
 * sending to the producer's Service, as MeshConsumerRoute does). Anything else is
 * RefNotPermitted: failing closed rather than letting any namespace route into another.
 */
import type { RouteRecord } from './attach';
import type { BackendObjectRef, RouteConditionReason } from './types';

/** What backend resolution needs to know of a Service (a subset of the registry's ServiceRecord). */
export interface ServiceView {
  ports: readonly { port: number; name?: string }[];
}

/** The registry view backend resolution and route status read; an interface so tests and `weft explain` can supply one. */
export interface ServiceLookup {
  service(namespace: string, name: string): ServiceView | undefined;
}

/** Adds endpoint health, which only the data path (and explain) needs. */
export interface BackendState extends ServiceLookup {
  /** True when the Service port has at least one ready endpoint. */
  hasReadyEndpoints(namespace: string, name: string, port: number): boolean;
}

export interface ServiceBackend {
  namespace: string;
  name: string;
  port: number;
}

export type BackendResolution =
  | { ok: true; backend: ServiceBackend }
  | { ok: false; reason: Extract<RouteConditionReason, 'InvalidKind' | 'BackendNotFound' | 'RefNotPermitted'>; message: string };

/** Human name of a reference, e.g. `demo/echo:80` or `example.com/Thing demo/x`. */
export function describeRef(ref: BackendObjectRef, routeNamespace: string): string {
  const where = `${ref.namespace ?? routeNamespace}/${ref.name}${ref.port !== undefined ? `:${ref.port}` : ''}`;
  return ref.group === '' && ref.kind === 'Service' ? where : `${ref.group === '' ? 'core' : ref.group}/${ref.kind} ${where}`;
}

/** Resolves one backendRef (or mirror backendRef) of `route` against the registry. */
export function resolveBackend(ref: BackendObjectRef, route: Pick<RouteRecord, 'namespace' | 'spec'>, lookup: ServiceLookup): BackendResolution {
  const name = describeRef(ref, route.namespace);
  if (ref.group !== '' || ref.kind !== 'Service') {
    return { ok: false, reason: 'InvalidKind', message: `backendRef ${name}: only core Services can be backends (group "" kind Service)` };
  }
  const namespace = ref.namespace ?? route.namespace;
  if (namespace !== route.namespace && !isParentService(route, namespace, ref.name)) {
    return {
      ok: false, reason: 'RefNotPermitted',
      message: `backendRef ${name}: a route may reference a Service in another namespace only when it is the Service the route is attached to; move the route to ${namespace}`,
    };
  }
  const svc = lookup.service(namespace, ref.name);
  if (svc === undefined) {
    return { ok: false, reason: 'BackendNotFound', message: `backendRef ${name}: Service ${namespace}/${ref.name} does not exist` };
  }
  if (ref.port === undefined) {
    return { ok: false, reason: 'BackendNotFound', message: `backendRef ${name}: a Service backend needs a port` };
  }
  if (!svc.ports.some((p) => p.port === ref.port)) {
    const ports = svc.ports.map((p) => p.port).join(', ') || 'none';
    return { ok: false, reason: 'BackendNotFound', message: `backendRef ${name}: Service ${namespace}/${ref.name} has no port ${ref.port} (ports: ${ports})` };
  }
  return { ok: true, backend: { namespace, name: ref.name, port: ref.port } };
}

function isParentService(route: Pick<RouteRecord, 'namespace' | 'spec'>, namespace: string, name: string): boolean {
  return route.spec.parentRefs.some((p) => p.group === '' && p.kind === 'Service' && p.name === name
    && (p.namespace ?? route.namespace) === namespace);
}

export type BackendDecision<R extends BackendObjectRef & { weight: number }> =
  /** Send to this backend (apply the ref's own filters first). */
  | { action: 'forward'; index: number; ref: R; backend: ServiceBackend }
  /** Answer this status: 500 for an invalid backend's share or no usable backend, 503 for no ready endpoint. */
  | { action: 'error'; status: 500 | 503; index?: number; ref?: R; reason: string };

/**
 * Picks the backend for one request. `random` returns [0, 1) (Math.random in the
 * waypoint, a fixed sequence in tests). Refs with weight 0 are never picked; when no
 * ref has weight left (none listed, or all 0) the answer is 500, as for all invalid.
 */
export function chooseBackend<R extends BackendObjectRef & { weight: number }>(
  refs: readonly R[], route: Pick<RouteRecord, 'namespace' | 'spec'>, state: BackendState, random: () => number = Math.random,
): BackendDecision<R> {
  let total = 0;
  for (const r of refs) total += Math.max(0, r.weight);
  if (total === 0) {
    return { action: 'error', status: 500, reason: refs.length === 0 ? 'the rule has no backendRefs' : 'every backendRef has weight 0' };
  }
  let pick = Math.min(total - 1, Math.floor(random() * total));
  let index = 0;
  for (; index < refs.length; index++) {
    const w = Math.max(0, refs[index]!.weight);
    if (pick < w) break;
    pick -= w;
  }
  const ref = refs[index]!;
  const res = resolveBackend(ref, route, state);
  if (!res.ok) return { action: 'error', status: 500, index, ref, reason: res.message };
  if (!state.hasReadyEndpoints(res.backend.namespace, res.backend.name, res.backend.port)) {
    return { action: 'error', status: 503, index, ref, reason: `Service ${res.backend.namespace}/${res.backend.name}:${res.backend.port} has no ready endpoint` };
  }
  return { action: 'forward', index, ref, backend: res.backend };
}
