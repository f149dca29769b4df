/**
 * GRPCRoute spec validation (gateway.networking.k8s.io/v1), with the CRD's limits and
 * defaults. A rule without matches matches every gRPC request (left as `[]`).
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import {
  BACKEND_REF_KEYS,
  backendObjectRef,
  checkRegex,
  filterEnvelope,
  gw,
  headerMatches,
  headerModifier,
  hostnames,
  list,
  noRepeatedFilters,
  optInt,
  parentRefs,
  requestMirror,
  unique,
} from './validate-common';
import type { GRPCBackendRef, GRPCMethodMatch, GRPCRouteFilter, GRPCRouteMatch, GRPCRouteRule, GRPCRouteSpec, StringMatchType } from './types';

const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'] as const;
/** The CRD's formats for Exact service and method names. */
const SERVICE_NAME = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const METHOD_NAME = /^[A-Za-z_][A-Za-z_0-9]*$/;

export const GRPC_ROUTE_LIMITS = { rules: 16, matchesPerRule: 64, matchesTotal: 128, filters: 16, backendRefs: 16 } as const;

export function validateGRPCRouteSpec(v: unknown, path: string, unknown: UnknownKeys): GRPCRouteSpec {
  // A GRPCRoute's spec may be left out entirely (upstream: spec,omitempty).
  const o = new Obj(v ?? {}, path, ['parentRefs', 'hostnames', 'rules'], unknown);
  const spec: GRPCRouteSpec = { parentRefs: parentRefs(o, unknown), hostnames: hostnames(o), rules: [] };
  spec.rules = list(o, 'rules', GRPC_ROUTE_LIMITS.rules, (r, p) => rule(r, p, unknown));
  const rulesPath = join(path, 'rules');
  const total = spec.rules.reduce((n, r) => n + r.matches.length, 0);
  if (total > GRPC_ROUTE_LIMITS.matchesTotal) throw new FieldError(rulesPath, `must have at most ${GRPC_ROUTE_LIMITS.matchesTotal} matches across all rules, got ${total}`);
  unique(spec.rules.map((r) => r.name).filter((n): n is string => n !== undefined), rulesPath, (n) => n, 'the rule name');
  return spec;
}

function rule(v: unknown, path: string, unknown: UnknownKeys): GRPCRouteRule {
  const o = new Obj(v, path, ['name', 'matches', 'filters', 'backendRefs'], unknown);
  const out: GRPCRouteRule = {
    matches: list(o, 'matches', GRPC_ROUTE_LIMITS.matchesPerRule, (m, p) => match(m, p, unknown)),
    filters: filters(o, 'filters', unknown),
    backendRefs: list(o, 'backendRefs', GRPC_ROUTE_LIMITS.backendRefs, (b, p) => backendRef(b, p, unknown)),
  };
  const name = o.optString('name', gw.sectionName);
  if (name !== undefined) out.name = name;
  return out;
}

function match(v: unknown, path: string, unknown: UnknownKeys): GRPCRouteMatch {
  const o = new Obj(v, path, ['method', 'headers'], unknown);
  const out: GRPCRouteMatch = { headers: headerMatches(o, 'headers', unknown) };
  if (o.has('method')) out.method = methodMatch(o.o.method, join(path, 'method'), unknown);
  return out;
}

function methodMatch(v: unknown, path: string, unknown: UnknownKeys): GRPCMethodMatch {
  const o = new Obj(v, path, ['type', 'service', 'method'], unknown);
  const type: StringMatchType = o.optOneOf('type', ['Exact', 'RegularExpression'] as const) ?? 'Exact';
  const out: GRPCMethodMatch = { type };
  const max = (s: string) => (s.length >= 1 && s.length <= 1024 ? undefined : 'must be 1-1024 characters');
  const service = o.optString('service', max);
  const method = o.optString('method', max);
  if (service === undefined && method === undefined) throw new FieldError(path, 'must set service or method (or both); leave method out to match any');
  if (service !== undefined) {
    if (type === 'RegularExpression') checkRegex(service, join(path, 'service'));
    else if (!SERVICE_NAME.test(service)) throw new FieldError(join(path, 'service'), `must be a gRPC service name such as grpc.health.v1.Health, got ${JSON.stringify(service)}`);
    out.service = service;
  }
  if (method !== undefined) {
    if (type === 'RegularExpression') checkRegex(method, join(path, 'method'));
    else if (!METHOD_NAME.test(method)) throw new FieldError(join(path, 'method'), `must be a gRPC method name such as Check (letters, digits, "_"), got ${JSON.stringify(method)}`);
    out.method = method;
  }
  return out;
}

function filters(o: Obj, key: string, unknown: UnknownKeys): GRPCRouteFilter[] {
  const out = list(o, key, GRPC_ROUTE_LIMITS.filters, (v, p) => filter(v, p, unknown));
  noRepeatedFilters(out, join(o.path, key), ['RequestHeaderModifier', 'ResponseHeaderModifier']);
  return out;
}

function filter(v: unknown, path: string, unknown: UnknownKeys): GRPCRouteFilter {
  const f = filterEnvelope(v, path, unknown, GRPC_FILTERS);
  switch (f.type) {
    case 'RequestHeaderModifier': return { type: f.type, requestHeaderModifier: headerModifier(f.value, f.path, unknown) };
    case 'ResponseHeaderModifier': return { type: f.type, responseHeaderModifier: headerModifier(f.value, f.path, unknown) };
    case 'RequestMirror': return { type: f.type, requestMirror: requestMirror(f.value, f.path, unknown) };
  }
}

function backendRef(v: unknown, path: string, unknown: UnknownKeys): GRPCBackendRef {
  const o = new Obj(v, path, [...BACKEND_REF_KEYS, 'weight', 'filters'], unknown);
  return { ...backendObjectRef(o), weight: optInt(o, 'weight', 0, 1_000_000) ?? 1, filters: filters(o, 'filters', unknown) };
}
