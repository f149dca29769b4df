/**
 * Builders for validated HTTPRoute / GRPCRoute records in the gateway unit tests: every
 * default the validator fills in (PathPrefix `/`, weight 1, group "" kind Service, empty
 * lists) is filled here too, so a test writes only what its case is about.
 */
import type { RouteRecord } from '../../src/gateway/attach';
import type {
  GRPCBackendRef, GRPCRouteMatch, GRPCRouteRule, HeaderMatch, HTTPBackendRef, HTTPRouteMatch, HTTPRouteRule,
  HttpMethod, ParentRef, PathMatchType,
} from '../../src/gateway/types';

export type HttpRecord = Extract<RouteRecord, { kind: 'HTTPRoute' }>;
export type GrpcRecord = Extract<RouteRecord, { kind: 'GRPCRoute' }>;

export function svcRef(name: string, extra: Partial<ParentRef> = {}): ParentRef {
  return { group: '', kind: 'Service', name, ...extra };
}

export function backend(name: string, extra: Partial<HTTPBackendRef> = {}): HTTPBackendRef {
  return { group: '', kind: 'Service', name, port: 80, weight: 1, filters: [], ...extra };
}

export interface MatchSpec {
  path?: string;
  type?: PathMatchType;
  method?: HttpMethod;
  headers?: Record<string, string>;
  headersRe?: Record<string, string>;
  query?: Record<string, string>;
  queryRe?: Record<string, string>;
}

function strMatches(exact: Record<string, string> = {}, re: Record<string, string> = {}): HeaderMatch[] {
  return [
    ...Object.entries(exact).map(([name, value]) => ({ type: 'Exact' as const, name, value })),
    ...Object.entries(re).map(([name, value]) => ({ type: 'RegularExpression' as const, name, value })),
  ];
}

export function match(m: MatchSpec = {}): HTTPRouteMatch {
  const out: HTTPRouteMatch = {
    path: { type: m.type ?? 'PathPrefix', value: m.path ?? '/' },
    headers: strMatches(m.headers, m.headersRe),
    queryParams: strMatches(m.query, m.queryRe),
  };
  if (m.method !== undefined) out.method = m.method;
  return out;
}

export function rule(matches: MatchSpec[] | undefined, backends: HTTPBackendRef[], extra: Partial<HTTPRouteRule> = {}): HTTPRouteRule {
  return { matches: (matches ?? [{}]).map(match), filters: [], backendRefs: backends, ...extra };
}

export function httpRoute(ns: string, name: string, parentRefs: ParentRef[], rules: HTTPRouteRule[],
  creationTimestamp = '2026-01-01T00:00:00Z'): HttpRecord {
  return { kind: 'HTTPRoute', name, namespace: ns, creationTimestamp, spec: { parentRefs, hostnames: [], rules } };
}

export function grpcRule(matches: GRPCRouteMatch[], backends: string[]): GRPCRouteRule {
  const refs: GRPCBackendRef[] = backends.map((name) => ({ group: '', kind: 'Service', name, port: 80, weight: 1, filters: [] }));
  return { matches, filters: [], backendRefs: refs };
}

export function grpcRoute(ns: string, name: string, parentRefs: ParentRef[], rules: GRPCRouteRule[],
  creationTimestamp = '2026-01-01T00:00:00Z'): GrpcRecord {
  return { kind: 'GRPCRoute', name, namespace: ns, creationTimestamp, spec: { parentRefs, hostnames: [], rules } };
}

/** A request for selectRoute: header names lower-cased, single values unless a list is given. */
export function request(path: string, opts: { method?: string; headers?: Record<string, string | string[]>; query?: string } = {}) {
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = Array.isArray(v) ? v : [v];
  const query = new Map<string, string[]>();
  for (const [k, v] of new URLSearchParams(opts.query ?? '')) query.set(k, [...(query.get(k) ?? []), v]);
  return { method: opts.method ?? 'GET', path, headers, query };
}
