/**
 * `weft routes`: the HTTPRoutes and GRPCRoutes of the mesh, what they attach to, where
 * they send traffic, and their Gateway API status (Accepted, ResolvedRefs) with the
 * reason when a condition is not True, so "why does my route do nothing" has an answer
 * on one screen.
 */
import type { RouteRecord } from '../../gateway/attach';
import type { ServiceLookup } from '../../gateway/backend';
import { routeStatus } from '../../gateway/status';
import type { RouteCondition, RouteParentStatus } from '../../gateway/types';
import type { MeshState } from '../../registry/state';
import { defineCommand, noPositionals } from '../io';
import type { Frame, Table } from '../output';
import { byKey, namespaceOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface RouteBackendItem {
  /** `name` in the route's namespace, else `namespace/name`; a non-Service kind is prefixed with it. */
  ref: string;
  port?: number;
  weight: number;
}

export interface ConditionSummary {
  /** Unknown: ResolvedRefs of a route that attaches to no Service (nothing checks its backends). */
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface RouteItem {
  namespace: string;
  name: string;
  kind: 'HTTPRoute' | 'GRPCRoute';
  creationTimestamp: string;
  /** `echo`, `echo:80`, `other/echo` (a consumer route's parent in another namespace). */
  parents: string[];
  hostnames: string[];
  rules: number;
  /** Per rule, its backends. */
  backends: RouteBackendItem[][];
  /** Over all parents: True when every parent says True, else the first False. */
  accepted: ConditionSummary;
  resolvedRefs: ConditionSummary;
  /** Gateway API's status.parents, as the controller writes it on a cluster. */
  status: { parents: RouteParentStatus[] };
}

function lookupOf(state: MeshState): ServiceLookup {
  return { service: (ns, name) => state.get('service', `${ns}/${name}`) };
}

function summary(statuses: RouteParentStatus[], type: RouteCondition['type']): ConditionSummary {
  const conds = statuses.map((s) => s.conditions.find((c) => c.type === type)!).filter(Boolean);
  const bad = conds.find((c) => c.status !== 'True');
  const c = bad ?? conds[0];
  // status.ts writes none for parents that are not Services: they are another controller's.
  if (!c) {
    return type === 'Accepted'
      ? { status: 'False', reason: 'NoMatchingParent', message: 'no parentRef names a Service (group "", kind Service); Weft attaches routes to Services only' }
      : { status: 'Unknown', reason: 'NoMatchingParent', message: 'not checked: the route attaches to no Service' };
  }
  return { status: c.status, reason: c.reason, message: c.message };
}

function item(state: MeshState, r: RouteRecord, all: readonly RouteRecord[]): RouteItem {
  const local = (ns: string | undefined, name: string) => (ns === undefined || ns === r.namespace ? name : `${ns}/${name}`);
  const statuses = routeStatus(r, lookupOf(state), all);
  const kind = r.kind;
  return {
    namespace: r.namespace, name: r.name, kind, creationTimestamp: r.creationTimestamp,
    parents: r.spec.parentRefs.map((p) => {
      const what = p.group === '' && p.kind === 'Service' ? '' : `${p.group || 'core'}/${p.kind} `;
      return `${what}${local(p.namespace, p.name)}${p.port !== undefined ? `:${p.port}` : ''}`;
    }),
    hostnames: [...r.spec.hostnames],
    rules: r.spec.rules.length,
    backends: r.spec.rules.map((rule) => rule.backendRefs.map((b) => {
      const what = b.group === '' && b.kind === 'Service' ? '' : `${b.group || 'core'}/${b.kind} `;
      const out: RouteBackendItem = { ref: `${what}${local(b.namespace, b.name)}`, weight: b.weight };
      if (b.port !== undefined) out.port = b.port;
      return out;
    })),
    accepted: summary(statuses, 'Accepted'),
    resolvedRefs: summary(statuses, 'ResolvedRefs'),
    status: { parents: statuses },
  };
}

export function listRoutes(state: MeshState, f: { namespace?: string } = {}): RouteItem[] {
  // All routes, not only the namespace's: an older route of the other kind on the same
  // Service port makes this one NotAllowedByListeners.
  const all: RouteRecord[] = [
    ...state.list('httproute').map((r): RouteRecord => ({ kind: 'HTTPRoute', ...r })),
    ...state.list('grpcroute').map((r): RouteRecord => ({ kind: 'GRPCRoute', ...r })),
  ];
  return all.filter((r) => !f.namespace || r.namespace === f.namespace)
    .map((r) => item(state, r, all))
    .sort(byKey((r) => `${r.namespace}\u0000${r.name}\u0000${r.kind}`));
}

function conditionText(c: ConditionSummary): string {
  return c.status === 'True' ? 'True' : c.status === 'Unknown' ? 'Unknown' : `False (${c.reason}: ${c.message})`;
}

/** `echo-v1:80 95, echo-v2:80 5`; rules separated by `; `; a rule without backends is `(none)`. */
export function backendsText(backends: RouteBackendItem[][]): string {
  return backends.map((rule) => rule.length === 0 ? '(none)'
    : rule.map((b) => `${b.ref}${b.port !== undefined ? `:${b.port}` : ''} ${b.weight}`).join(', ')).join('; ');
}

export function routesTable(items: readonly RouteItem[]): Table {
  return {
    headers: ['NAMESPACE', 'NAME', 'KIND', 'PARENTS', 'HOSTNAMES', 'RULES', 'BACKENDS', 'ACCEPTED', 'RESOLVED REFS'],
    rows: items.map((r) => [r.namespace, r.name, r.kind, r.parents.join(','), r.hostnames.join(','), r.rules,
      backendsText(r.backends), conditionText(r.accepted), conditionText(r.resolvedRefs)]),
  };
}

export function routesFrame(state: MeshState, f: { namespace?: string }): Frame {
  const items = listRoutes(state, f);
  return { table: routesTable(items), data: { revision: state.revision, items }, warnings: [], empty: `No routes found${scopeText(f)}.` };
}

const USAGE = 'weft routes [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list HTTPRoutes and GRPCRoutes: parents, backends, Accepted and ResolvedRefs',
  description: `PARENTS are the Services a route attaches to (service[:port]; ns/service for a consumer route's parent in
another namespace). BACKENDS lists each rule's backends as name:port weight, rules separated by ";".
ACCEPTED is False (NoMatchingParent) when a parent Service or its port does not exist, or (NotAllowedByListeners)
when an older route of the other kind (HTTPRoute vs GRPCRoute) holds that Service port. RESOLVED REFS is False when
a backend (or mirror) is not a core Service (InvalidKind), is in another namespace and not the parent Service
(RefNotPermitted), or does not exist or lacks the port (BackendNotFound): requests to such a backend's share get 500.
-o yaml shows status.parents per parent, as the controller writes it on a cluster.`,
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runRegistryView(values, io, 'weft routes', (state) => routesFrame(state, { namespace: values.namespace }));
  },
});
