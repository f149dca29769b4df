/**
 * Route status on the API server: for each mirrored HTTPRoute and GRPCRoute, the
 * RouteParentStatus entries of Weft (controllerName weft.io/waypoint) per Service
 * parentRef, as src/gateway/status.ts computes them from the registry the API view
 * implies; `weft routes` and `kubectl get httproute -o yaml` show them.
 *
 * Written only when they changed (ignoring lastTransitionTime), by a merge patch of the
 * /status subresource carrying the object's resourceVersion (a conflict is retried on
 * the next event). A merge patch replaces the whole `parents` list, so entries of other
 * controllers (a Gateway parent of an ingress, say) are copied through unchanged. An
 * invalid route gets Accepted=False/UnsupportedValue with the validation message.
 */
import { routeStatus, WEFT_CONTROLLER_NAME } from '../gateway/status';
import type { RouteRecord } from '../gateway/attach';
import type { ServiceLookup, ServiceView } from '../gateway/backend';
import type { ParentRef, RouteCondition, RouteParentStatus } from '../gateway/types';
import type { KubeClient } from '../k8s/client';
import type { Logger } from '../lib/log';
import type { ServiceRecord } from '../registry/types';
import type { DesiredState } from './desired';
import { gatewayAPIPath, type K8sGatewayAPIObject } from './k8s-types';
import { stableStringify } from './stable-json';
import { stampCondition, statusTime, StatusPatches } from './status-patch';

type K8sCondition = RouteCondition & { observedGeneration?: number; lastTransitionTime: string };
interface K8sParentStatus { parentRef: ParentRef; controllerName: string; conditions: K8sCondition[] }

/** Weft's parent entries each route should carry, keyed like DesiredState.routes. */
export function desiredRouteParents(d: DesiredState): Map<string, RouteParentStatus[]> {
  const services = new Map<string, ServiceView>();
  for (const e of d.records.values()) {
    if (e.kind === 'service') services.set(e.key, e.record as ServiceRecord);
  }
  const lookup: ServiceLookup = { service: (ns, name) => services.get(`${ns}/${name}`) };
  const valid: RouteRecord[] = [];
  for (const { kind, result } of d.routes.values()) {
    if (result.ok) valid.push({ ...result.record, kind } as RouteRecord);
  }
  const out = new Map<string, RouteParentStatus[]>();
  for (const [key, { kind, result }] of d.routes) {
    if (result.ok) {
      out.set(key, routeStatus({ ...result.record, kind } as RouteRecord, lookup, valid));
    } else {
      out.set(key, result.parentRefs.map((parentRef) => ({
        parentRef, controllerName: WEFT_CONTROLLER_NAME,
        conditions: [{ type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: `the route is invalid and not applied: ${result.message}` }],
      })));
    }
  }
  return out;
}

/**
 * The `status.parents` to write, or undefined when the object already carries `want`
 * (same conditions and observedGeneration). Other controllers' entries come first, as they were.
 */
export function nextParents(obj: K8sGatewayAPIObject, want: RouteParentStatus[], now: string): K8sParentStatus[] | undefined {
  const current = Array.isArray(obj.status?.parents) ? (obj.status.parents as K8sParentStatus[]) : [];
  const others = current.filter((p) => p.controllerName !== WEFT_CONTROLLER_NAME);
  const ours = current.filter((p) => p.controllerName === WEFT_CONTROLLER_NAME);
  const generation = obj.metadata.generation;
  const comparable = (ps: { parentRef: ParentRef; conditions: RouteCondition[] }[], gen?: number) => stableStringify(ps.map((p) => ({
    parentRef: p.parentRef,
    conditions: p.conditions.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message, observedGeneration: gen ?? (c as K8sCondition).observedGeneration })),
  })));
  if (comparable(ours) === comparable(want, generation)) return undefined;
  const previous = (ref: ParentRef, type: string) => ours.find((p) => stableStringify(p.parentRef) === stableStringify(ref))?.conditions.find((c) => c.type === type);
  const next = want.map((p) => ({
    parentRef: p.parentRef,
    controllerName: p.controllerName,
    conditions: p.conditions.map((c) => stampCondition(c, previous(p.parentRef, c.type), generation, now)),
  }));
  return [...others, ...next];
}

const PLURAL = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' } as const;

export class RouteStatusWriter {
  private readonly patches: StatusPatches;

  constructor(client: KubeClient, logger: Logger, private readonly clock: () => Date = () => new Date()) {
    this.patches = new StatusPatches(client, logger, 'route');
  }

  /** Writes each route's status that changed; `mayWrite` is checked before every request (leadership can be lost). */
  async report(d: DesiredState, mayWrite: () => boolean): Promise<void> {
    const wanted = desiredRouteParents(d);
    for (const [key, { obj, kind }] of d.routes) {
      const want = wanted.get(key) ?? [];
      const parents = nextParents(obj, want, statusTime(this.clock()));
      const m = obj.metadata;
      if (parents === undefined || this.patches.sentAlready(key, m.resourceVersion, wanted.get(key))) continue;
      if (!mayWrite()) return;
      await this.patches.send(key, gatewayAPIPath(PLURAL[kind], m.namespace!, m.name!, 'status'), m.resourceVersion, { parents }, wanted.get(key));
    }
    this.patches.keepOnly((key) => d.routes.has(key));
  }
}
