/**
 * Compiles the routes attached to one (Service, port, caller namespace) into a
 * RouteTable: every match of every rule, regexes compiled once, in the order the
 * Gateway API says matches take precedence. Selection (select.ts) then walks the table
 * and the first entry that matches the request wins.
 *
 * HTTPRoute precedence (httproute_types.go, HTTPRouteRule.Matches), across all rules of
 * all attached routes:
 *   1. an Exact path;
 *   2. a PathPrefix, the most characters of the prefix value first;
 *   3. a RegularExpression path (the spec leaves its place to the implementation; Weft
 *      puts it after every prefix, as Istio does, so a regex never steals traffic from
 *      a prefix the user wrote);
 *   4. a method match before none;
 *   5. more header matches first; 6. more query param matches first;
 *   7. the oldest route, then `ns/name` alphabetically; 8. rule order; 9. match order.
 *
 * GRPCRoute precedence (grpcroute_types.go, GRPCRouteRule.Matches; hostnames play no
 * part in the mesh): more characters in the service, then in the method (the value as
 * written, whatever its match type), then more header matches, then 7-9 above.
 */
import { compileRegex, type SafeRegex } from './regex';
import { compareRouteAge, type RouteKind, type RouteRecord, type ServiceTarget } from './attach';
import type { GRPCRouteRule, HeaderMatch, HTTPRouteRule, HttpMethod, PathMatchType, StringMatchType } from './types';

/** A header or query param match, ready to run. */
export interface CompiledStringMatch {
  /** Lower-cased for headers (names compare case-insensitively); as written for query params. */
  name: string;
  type: StringMatchType;
  value: string;
  regex?: SafeRegex;
}

export interface CompiledPathMatch {
  type: PathMatchType;
  value: string;
  /** PathPrefix only: the prefix without its trailing `/` (`/` itself becomes ''). */
  prefix?: string;
  regex?: SafeRegex;
}

export interface CompiledGrpcMethod {
  type: StringMatchType;
  service?: string;
  method?: string;
  serviceRegex?: SafeRegex;
  methodRegex?: SafeRegex;
}

/** One entry of the table: one match of one rule of one route. */
export interface CompiledMatch {
  route: RouteRecord;
  ruleIndex: number;
  /** Index in the rule's `matches`; 0 for a GRPCRoute rule without matches (it matches everything). */
  matchIndex: number;
  rule: HTTPRouteRule | GRPCRouteRule;
  /** HTTPRoute only. */
  path?: CompiledPathMatch;
  /** HTTPRoute only. */
  method?: HttpMethod;
  /** GRPCRoute only. */
  grpcMethod?: CompiledGrpcMethod;
  headers: CompiledStringMatch[];
  queryParams: CompiledStringMatch[];
}

export interface RouteTable {
  target: ServiceTarget;
  callerNamespace: string;
  /** Kind of the attached routes (never both); undefined when none is attached. */
  kind?: RouteKind;
  /** The attached routes, oldest first. */
  routes: RouteRecord[];
  /** Highest precedence first. */
  matches: CompiledMatch[];
}

/**
 * Builds the table from routes that `attachedRoutes` returned for this target and caller.
 * Regexes are expected to be valid (validation refused the others); one that still
 * fails to compile throws here, at config time, never per request.
 */
export function compileRouteTable(attached: readonly RouteRecord[], target: ServiceTarget, callerNamespace: string): RouteTable {
  const routes = [...attached].sort(compareRouteAge);
  const entries: { m: CompiledMatch; routeOrder: number }[] = [];
  routes.forEach((route, routeOrder) => {
    if (route.kind === 'HTTPRoute') {
      route.spec.rules.forEach((rule, ruleIndex) => {
        rule.matches.forEach((match, matchIndex) => {
          entries.push({
            routeOrder,
            m: {
              route, ruleIndex, matchIndex, rule,
              path: compilePath(match.path.type, match.path.value),
              ...(match.method !== undefined ? { method: match.method } : {}),
              headers: compileStringMatches(match.headers, true),
              queryParams: compileStringMatches(match.queryParams, false),
            },
          });
        });
      });
    } else {
      route.spec.rules.forEach((rule, ruleIndex) => {
        // "If no matches are specified, the implementation MUST match every gRPC request."
        const matches = rule.matches.length > 0 ? rule.matches : [{ headers: [] }];
        matches.forEach((match, matchIndex) => {
          const gm = match.method;
          entries.push({
            routeOrder,
            m: {
              route, ruleIndex, matchIndex, rule,
              ...(gm !== undefined ? { grpcMethod: compileGrpcMethod(gm.type, gm.service, gm.method) } : {}),
              headers: compileStringMatches(match.headers, true),
              queryParams: [],
            },
          });
        });
      });
    }
  });
  entries.sort((a, b) => comparePrecedence(a.m, b.m) || a.routeOrder - b.routeOrder
    || a.m.ruleIndex - b.m.ruleIndex || a.m.matchIndex - b.m.matchIndex);
  const table: RouteTable = { target, callerNamespace, routes, matches: entries.map((e) => e.m) };
  if (routes[0] !== undefined) table.kind = routes[0].kind;
  return table;
}

const PATH_RANK: Record<PathMatchType, number> = { Exact: 0, PathPrefix: 1, RegularExpression: 2 };

/** Negative when `a` takes precedence over `b` by the match itself (steps 1-6 above). */
export function comparePrecedence(a: CompiledMatch, b: CompiledMatch): number {
  if (a.route.kind === 'GRPCRoute') { // a table holds one kind only
    return (grpcLen(b.grpcMethod?.service) - grpcLen(a.grpcMethod?.service))
      || (grpcLen(b.grpcMethod?.method) - grpcLen(a.grpcMethod?.method))
      || (b.headers.length - a.headers.length);
  }
  const pa = a.path;
  const pb = b.path;
  if (pa !== undefined && pb !== undefined) {
    const byType = PATH_RANK[pa.type] - PATH_RANK[pb.type];
    if (byType !== 0) return byType;
    if (pa.type === 'PathPrefix') {
      const byLength = pb.value.length - pa.value.length;
      if (byLength !== 0) return byLength;
    }
  }
  return (Number(b.method !== undefined) - Number(a.method !== undefined))
    || (b.headers.length - a.headers.length)
    || (b.queryParams.length - a.queryParams.length);
}

function grpcLen(s: string | undefined): number {
  return s === undefined ? 0 : s.length;
}

export function compilePath(type: PathMatchType, value: string): CompiledPathMatch {
  switch (type) {
    case 'Exact': return { type, value };
    case 'PathPrefix': return { type, value, prefix: value.replace(/\/+$/, '') };
    case 'RegularExpression': return { type, value, regex: compileRegex(value) };
  }
}

/**
 * Header names compare case-insensitively, query param names exactly. When two entries
 * name the same header (or param), only the first counts (the spec says so for both).
 */
function compileStringMatches(list: readonly HeaderMatch[], caseInsensitiveNames: boolean): CompiledStringMatch[] {
  const seen = new Set<string>();
  const out: CompiledStringMatch[] = [];
  for (const h of list) {
    const name = caseInsensitiveNames ? h.name.toLowerCase() : h.name;
    if (seen.has(name)) continue;
    seen.add(name);
    out.push(h.type === 'RegularExpression'
      ? { name, type: h.type, value: h.value, regex: compileRegex(h.value) }
      : { name, type: h.type, value: h.value });
  }
  return out;
}

function compileGrpcMethod(type: StringMatchType, service: string | undefined, method: string | undefined): CompiledGrpcMethod {
  const out: CompiledGrpcMethod = { type };
  if (service !== undefined && service !== '') {
    out.service = service;
    if (type === 'RegularExpression') out.serviceRegex = compileRegex(service);
  }
  if (method !== undefined && method !== '') {
    out.method = method;
    if (type === 'RegularExpression') out.methodRegex = compileRegex(method);
  }
  return out;
}
