/**
 * HTTPRoutes and GRPCRoutes by the Services their parentRefs name: what the waypoint
 * and `weft routes` ask per Service. The records live in MeshState's stores; this
 * keeps them and the index in step.
 */
import { SetIndex, compareText } from './indexes';
import type { GRPCRouteRecord, HTTPRouteRecord } from './types';

export type RouteKind = 'httproute' | 'grpcroute';
/** A route with its kind: HTTPRoute and GRPCRoute may share a name. */
export type RouteRef =
  | { kind: 'httproute'; record: HTTPRouteRecord }
  | { kind: 'grpcroute'; record: GRPCRouteRecord };

type RouteStores = { httproute: Map<string, HTTPRouteRecord>; grpcroute: Map<string, GRPCRouteRecord> };

const SEP = '\u0000';

export class RouteIndex {
  /** `ns/service` → `kind␀ns/name` of the routes whose parentRefs name that Service. */
  private readonly byParent = new SetIndex();

  constructor(private readonly stores: RouteStores) {}

  put(kind: RouteKind, key: string, r: HTTPRouteRecord | GRPCRouteRecord): void {
    this.delete(kind, key);
    (this.stores[kind] as Map<string, HTTPRouteRecord | GRPCRouteRecord>).set(key, r);
    for (const parent of routeParents(r)) this.byParent.add(parent, `${kind}${SEP}${key}`);
  }

  delete(kind: RouteKind, key: string): void {
    const old = this.stores[kind].get(key);
    if (!old) return;
    for (const parent of routeParents(old)) this.byParent.remove(parent, `${kind}${SEP}${key}`);
    this.stores[kind].delete(key);
  }

  /** Drops the index (MeshState clears the records). */
  clear(): void {
    this.byParent.clear();
  }

  /** HTTPRoutes and GRPCRoutes with a parentRef naming the Service `namespace/name` (any port, any group: attach.ts decides). */
  forService(namespace: string, name: string): RouteRef[] {
    const out: RouteRef[] = [];
    for (const ref of this.byParent.get(`${namespace}/${name}`)) {
      const [kind, key] = ref.split(SEP) as [RouteKind, string];
      const record = this.stores[kind].get(key);
      if (record) out.push({ kind, record } as RouteRef);
    }
    return out.sort((a, b) => compareText(`${a.kind}/${a.record.namespace}/${a.record.name}`, `${b.kind}/${b.record.namespace}/${b.record.name}`));
  }
}

/** `ns/name` of every Service a route's parentRefs name (namespace defaults to the route's). */
function routeParents(r: HTTPRouteRecord | GRPCRouteRecord): Set<string> {
  const out = new Set<string>();
  for (const p of r.spec.parentRefs) out.add(`${p.namespace ?? r.namespace}/${p.name}`);
  return out;
}
