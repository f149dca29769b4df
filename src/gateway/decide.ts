/**
 * One request through the whole route logic: attach → table → select → rule filters →
 * backend choice → backendRef filters → mirrors → timeouts/retry. The waypoint's
 * RequestRouter turns the outcome into its plan (adding the endpoint it picks);
 * `weft explain` prints it. Both therefore run exactly this code.
 *
 * A RouteConfig is immutable: a config change builds a new one, so a request in flight
 * keeps the tables it started with.
 */
import { attachedRoutes, routeKey, type RouteRecord, type ServiceTarget } from './attach';
import { chooseBackend, resolveBackend, type BackendState, type ServiceBackend } from './backend';
import { compileRouteTable, type RouteTable } from './compile';
import { applyFilters, composeHeaderModifiers, type FilterRequest, type HeaderMap, type Redirect } from './filters';
import { compileRulePolicy, type RulePolicy } from './policy';
import { matchedPrefix, parseQuery, selectRoute, type RouteSelection } from './select';
import type { BackendObjectRef, GRPCRouteRule, HeaderModifier, HTTPRouteFilter, HTTPRouteRule } from './types';

/** Tables kept per config before the cache starts over (one per Service port × caller namespace in use). */
export const MAX_CACHED_TABLES = 10_000;

/** The routes of one config revision, with their compiled tables built on first use. */
export class RouteConfig {
  private readonly tables = new Map<string, RouteTable>();
  private readonly policies = new WeakMap<object, RulePolicy>();

  constructor(readonly routes: readonly RouteRecord[]) {}

  /** The table for requests to `target` from `callerNamespace` (attachment applied). */
  table(target: ServiceTarget, callerNamespace: string): RouteTable {
    const key = `${target.namespace}/${target.name}:${target.port}/${target.portName ?? ''}|${callerNamespace}`;
    let t = this.tables.get(key);
    if (t === undefined) {
      t = compileRouteTable(attachedRoutes(this.routes, target, callerNamespace), target, callerNamespace);
      // Caller namespaces come from verified identities, so this stays small; the bound
      // only guards against a pathological mesh.
      if (this.tables.size >= MAX_CACHED_TABLES) this.tables.clear();
      this.tables.set(key, t);
    }
    return t;
  }

  /** Timeouts and retry of a rule (GRPCRoute rules have neither). */
  policy(rule: HTTPRouteRule | GRPCRouteRule): RulePolicy {
    let p = this.policies.get(rule);
    if (p === undefined) {
      p = compileRulePolicy(rule as HTTPRouteRule); // a GRPCRoute rule has neither field: {}
      this.policies.set(rule, p);
    }
    return p;
  }
}

export interface RouteInput {
  target: ServiceTarget;
  callerNamespace: string;
  scheme?: 'http' | 'https';
  method: string;
  /** Host / :authority as sent. */
  authority: string;
  /** Path without the query. */
  path: string;
  /** Raw query without `?`. */
  query: string;
  /** Lower-case names, every value. */
  headers: HeaderMap;
}

/** Where the decision came from, for logs and explain. */
export interface DecidedBy {
  /** `ns/name` of the route. */
  route: string;
  kind: RouteRecord['kind'];
  ruleIndex: number;
  ruleName?: string;
  matchIndex: number;
  selection: RouteSelection;
}

export interface MirrorDecision {
  ref: BackendObjectRef;
  /** Set when the mirror backend resolves; unresolvable mirrors are skipped (the request is not affected). */
  backend?: ServiceBackend;
  skipped?: string;
}

export type RouteOutcome =
  /** No route attached to this Service port: forward to the Service as addressed. */
  | { kind: 'passthrough' }
  /** Routes attached, none matched: answer 404. */
  | { kind: 'no-route'; status: 404 }
  | { kind: 'redirect'; by: DecidedBy; redirect: Redirect }
  /** 500 (invalid backend or none) or 503 (no ready endpoint). */
  | { kind: 'error'; by: DecidedBy; status: 500 | 503; reason: string; backendIndex?: number }
  | {
    kind: 'forward';
    by: DecidedBy;
    backend: ServiceBackend;
    backendIndex: number;
    /** The request to send: rewritten authority/path, edited headers, query kept. */
    request: FilterRequest;
    /** Apply to the upstream response, in order (rule level, then backendRef level). */
    responseHeaders: HeaderModifier[];
    /** The request header edits already applied to `request.headers`, as one modifier (rule then backendRef level). */
    requestHeaderEdits: HeaderModifier;
    /** `responseHeaders` as one modifier. */
    responseHeaderEdits: HeaderModifier;
    mirrors: MirrorDecision[];
    policy: RulePolicy;
  };

/** Decides one request. `random` drives weights and mirror fractions (Math.random in the waypoint). */
export function decideRoute(config: RouteConfig, state: BackendState, input: RouteInput, random: () => number = Math.random): RouteOutcome {
  const table = config.table(input.target, input.callerNamespace);
  if (table.routes.length === 0) return { kind: 'passthrough' };
  const sel = selectRoute(table, { method: input.method, path: input.path, query: parseQuery(input.query), headers: input.headers });
  if (sel === undefined) return { kind: 'no-route', status: 404 };
  const by: DecidedBy = {
    route: routeKey(sel.route), kind: sel.route.kind, ruleIndex: sel.ruleIndex, matchIndex: sel.matchIndex, selection: sel,
    ...(sel.rule.name !== undefined ? { ruleName: sel.rule.name } : {}),
  };
  const prefix = matchedPrefix(sel);
  const ctx = { servicePort: input.target.port, random, ...(prefix !== undefined ? { matchedPrefix: prefix } : {}) };
  const request: FilterRequest = {
    scheme: input.scheme ?? 'http', authority: input.authority, path: input.path, query: input.query, headers: input.headers,
  };
  const ruleOut = applyFilters(sel.rule.filters as readonly HTTPRouteFilter[], request, ctx);
  if (ruleOut.redirect !== undefined) return { kind: 'redirect', by, redirect: ruleOut.redirect };
  const refs = sel.rule.backendRefs as readonly (BackendObjectRef & { weight: number; filters: readonly HTTPRouteFilter[] })[];
  const choice = chooseBackend(refs, sel.route, state, random);
  if (choice.action === 'error') {
    return { kind: 'error', by, status: choice.status, reason: choice.reason, ...(choice.index !== undefined ? { backendIndex: choice.index } : {}) };
  }
  const backendOut = applyFilters(choice.ref.filters, ruleOut.request, ctx);
  if (backendOut.redirect !== undefined) return { kind: 'redirect', by, redirect: backendOut.redirect };
  const mirrors = [...ruleOut.mirrors, ...backendOut.mirrors].map((ref): MirrorDecision => {
    const res = resolveBackend(ref, sel.route, state);
    return res.ok ? { ref, backend: res.backend } : { ref, skipped: res.message };
  });
  const responseHeaders = [...ruleOut.responseHeaders, ...backendOut.responseHeaders];
  return {
    kind: 'forward', by, backend: choice.backend, backendIndex: choice.index, request: backendOut.request,
    responseHeaders, mirrors, policy: config.policy(sel.rule),
    requestHeaderEdits: composeHeaderModifiers([...ruleOut.requestHeaders, ...backendOut.requestHeaders]),
    responseHeaderEdits: composeHeaderModifiers(responseHeaders),
  };
}
