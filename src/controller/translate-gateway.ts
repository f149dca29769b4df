/**
 * Gateway API objects (as the API server serves them) to registry records: HTTPRoute →
 * httproute, GRPCRoute → grpcroute, Gateway of class `weft-waypoint` → waypoint. The
 * validation is src/gateway/validate.ts with unknown fields dropped: the API server is
 * the writer, and a field of a newer Gateway API release must not make the controller
 * discard a route. An object that fails validation is skipped (never a crash); the
 * caller reports it in the object's status and in a log line naming the field.
 */
import { parentRef } from '../gateway/validate-common';
import { validateGRPCRoute, validateHTTPRoute, validateWaypointGateway } from '../gateway/validate';
import { WAYPOINT_GATEWAY_CLASS, type ParentRef, type WaypointRecord } from '../gateway/types';
import { FieldError } from '../registry/checks';
import type { GRPCRouteRecord, HTTPRouteRecord } from '../registry/types';
import type { K8sGatewayAPIObject } from './k8s-types';

export type RouteTranslation =
  | { ok: true; kind: 'httproute'; record: HTTPRouteRecord }
  | { ok: true; kind: 'grpcroute'; record: GRPCRouteRecord }
  | {
    ok: false;
    /** The field and what is wrong with it, e.g. `spec.rules[0].matches[0].path.value must ...`. */
    message: string;
    /** The Service parentRefs that could still be read, for the Accepted=False status. */
    parentRefs: ParentRef[];
  };

/** Translates an HTTPRoute or GRPCRoute; `kind` is the API kind the informer serves. */
export function routeRecord(obj: K8sGatewayAPIObject, kind: 'HTTPRoute' | 'GRPCRoute'): RouteTranslation {
  // The list endpoint's items carry no apiVersion/kind on every server; the informer knows them.
  const full = { ...obj, apiVersion: obj.apiVersion ?? 'gateway.networking.k8s.io/v1', kind };
  try {
    const v = kind === 'HTTPRoute' ? validateHTTPRoute(full, { unknownKeys: 'drop' }) : validateGRPCRoute(full, { unknownKeys: 'drop' });
    // The API server always sets creationTimestamp; without one (never seen) the epoch sorts it first, deterministically.
    const record = { name: v.name, namespace: v.namespace, creationTimestamp: v.creationTimestamp ?? new Date(0).toISOString(), spec: v.spec };
    return kind === 'HTTPRoute'
      ? { ok: true, kind: 'httproute', record: record as HTTPRouteRecord }
      : { ok: true, kind: 'grpcroute', record: record as GRPCRouteRecord };
  } catch (err) {
    return { ok: false, message: describe(err), parentRefs: readableParentRefs(obj) };
  }
}

export type WaypointTranslation =
  | { ok: true; record: WaypointRecord }
  /** Not of class weft-waypoint: another controller's Gateway, not ours to report on. */
  | { ok: false; foreign: true }
  | { ok: false; foreign: false; message: string; field: string };

export function waypointRecord(obj: K8sGatewayAPIObject): WaypointTranslation {
  if (obj.spec?.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) return { ok: false, foreign: true };
  try {
    return { ok: true, record: validateWaypointGateway({ ...obj, apiVersion: obj.apiVersion ?? 'gateway.networking.k8s.io/v1', kind: 'Gateway' }, { unknownKeys: 'drop' }) };
  } catch (err) {
    return { ok: false, foreign: false, message: describe(err), field: err instanceof FieldError ? err.field : '' };
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The Service parentRefs of an invalid route that are themselves valid (status needs a parentRef to hang on). */
function readableParentRefs(obj: K8sGatewayAPIObject): ParentRef[] {
  const refs = obj.spec?.parentRefs;
  if (!Array.isArray(refs)) return [];
  const out: ParentRef[] = [];
  refs.forEach((v, i) => {
    try {
      const ref = parentRef(v, `spec.parentRefs[${i}]`, 'drop');
      if (ref.group === '' && ref.kind === 'Service') out.push(ref);
    } catch { /* unreadable: no status entry for it */ }
  });
  return out;
}
