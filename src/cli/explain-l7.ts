/**
 * `weft explain`'s L7 step: what the destination's waypoint does with one HTTP request
 * (method, URL, headers the operator gives), by running the waypoint's own route code —
 * routesOf/meshBackends (src/waypoint/router.ts) and decideRoute (src/gateway/decide.ts) —
 * plus explainSelection for why higher-precedence matches failed.
 *
 * Weights are not sampled: decideRoute is run once per weighted backendRef with a random
 * value that lands in that ref's share, so every backend is shown with its share.
 */
import { routeKey, routeTargets, type RouteRecord, type ServiceTarget } from '../gateway/attach';
import { describeRef, resolveBackend } from '../gateway/backend';
import type { CompiledMatch, CompiledStringMatch } from '../gateway/compile';
import { decideRoute, RouteConfig, type RouteInput, type RouteOutcome } from '../gateway/decide';
import { headerMap } from '../gateway/filters';
import { explainSelection, parseQuery, type Mismatch } from '../gateway/select';
import type { BackendObjectRef, HeaderModifier, HTTPRouteFilter, RequestMirror } from '../gateway/types';
import { WeftError } from '../lib/errors';
import type { MeshState } from '../registry/state';
import { explain, type Explanation } from './explain-model';
import type { ServiceRecord } from '../registry/types';
import { meshBackends, routesOf } from '../waypoint/router';
import { RBAC_DENIED } from '../waypoint/authorize';
import { explainL7Authorization, unenforcedL7Authorization, type L7AuthorizationExplanation } from './explain-l7-authz';
import type { WaypointL7Context, WaypointL7Explainer, WaypointL7Explanation } from './explain-waypoint';

/** The request the operator describes (`--method`, URL or `--path`, `-H`). */
export interface RequestSpec {
  method: string;
  scheme: 'http' | 'https';
  /** Host as the client sends it. */
  authority: string;
  path: string;
  query: string;
  headers: Record<string, string[]>;
}

/** One attached (or not applied) route and why. */
export interface AttachedRoute {
  route: string;
  kind: RouteRecord['kind'];
  role: 'producer' | 'consumer' | 'other-namespace';
  applied: boolean;
  why: string;
}

export interface BackendShare {
  backend: string;
  weight: number;
  /** Percent of requests this ref gets (0-100). */
  share: number;
  status: 'forward' | 500 | 503;
  reason?: string;
  /** The request as it leaves the waypoint for this backend. */
  authority?: string;
  path?: string;
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
}

/** The `l7` object of `-o json`. */
export interface L7Explanation {
  applied: boolean;
  note?: string;
  warning?: string;
  request?: { method: string; authority: string; path: string; query: string };
  callerNamespace?: string;
  routes?: AttachedRoute[];
  selection?: { route: string; rule: number; match: number; condition: string; result: string }[];
  /** passthrough (no route attached), no-route (404), redirect, forward, error (500/503). */
  outcome?: RouteOutcome['kind'];
  status?: number;
  reason?: string;
  route?: string;
  rule?: number;
  match?: number;
  redirect?: { statusCode: number; location: string };
  backends?: BackendShare[];
  mirrors?: string[];
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  /** The L7 AuthorizationPolicies bound to the Service or its waypoint, judged before the routes. */
  authorization?: L7AuthorizationExplanation;
  retry?: { codes: number[]; attempts: number; backoffMs: number };
}

/** Parses `-H 'name: value'` flags into lower-case names with every value. */
export function parseHeaderFlags(flags: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of flags) {
    const colon = f.indexOf(':');
    const name = colon > 0 ? f.slice(0, colon).trim().toLowerCase() : '';
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw new WeftError('WEFT_USAGE', `-H "${f}" is not "name: value"; e.g. -H 'x-user: beta'`);
    }
    (out[name] ??= []).push(f.slice(colon + 1).trim());
  }
  return out;
}

/**
 * A URL destination (`http://echo.demo/api?x=1`) → the `host:port` explain resolves
 * (port 80 for http, 443 for https) and the request's authority, path and query.
 * Undefined when `text` is not a URL.
 */
export function parseUrlDestination(text: string): { destination: string; scheme: 'http' | 'https'; authority: string; path: string; query: string } | undefined {
  if (!/^https?:\/\//i.test(text)) return undefined;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new WeftError('WEFT_USAGE', `destination "${text}" is not a valid URL; e.g. http://echo.demo/api`);
  }
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  const port = u.port !== '' ? Number(u.port) : scheme === 'https' ? 443 : 80;
  return { destination: `${u.hostname}:${port}`, scheme, authority: u.host, path: u.pathname || '/', query: u.search.replace(/^\?/, '') };
}

function describeString(m: CompiledStringMatch, what: string): string {
  return `${what} ${m.name} ${m.type === 'Exact' ? '=' : '~'} ${m.value}`;
}

function describeMatch(m: CompiledMatch): string {
  const parts: string[] = [];
  if (m.path) parts.push(`path ${m.path.type} ${m.path.value}`);
  if (m.method) parts.push(`method ${m.method}`);
  if (m.grpcMethod) parts.push(`gRPC method ${m.grpcMethod.service ?? '*'}/${m.grpcMethod.method ?? '*'}`);
  for (const h of m.headers) parts.push(describeString(h, 'header'));
  for (const q of m.queryParams) parts.push(describeString(q, 'query'));
  return parts.length ? parts.join(', ') : 'everything';
}

function describeMismatch(m: CompiledMatch, mm: Mismatch, req: RequestSpec): string {
  switch (mm.on) {
    case 'path': return `path ${req.path} does not match ${m.path!.type} ${m.path!.value}`;
    case 'method': return `method ${req.method} is not ${m.method}`;
    case 'grpcMethod': return `path ${req.path} is not that gRPC method`;
    case 'header': {
      const v = req.headers[mm.match.name];
      return v ? `header ${mm.match.name}: ${v.join(', ')} does not match ${mm.match.value}` : `no header ${mm.match.name}`;
    }
    case 'queryParam': return `query parameter ${mm.match.name} is absent or does not match ${mm.match.value}`;
  }
}

function attached(routes: readonly RouteRecord[], applied: readonly RouteRecord[], target: ServiceTarget, caller: string): AttachedRoute[] {
  const inTable = new Set(applied.map(routeKey));
  const consumers = applied.some((r) => r.namespace !== target.namespace);
  return routes.filter((r) => routeTargets(r, target)).map((r) => {
    const role: AttachedRoute['role'] = r.namespace === target.namespace ? 'producer' : r.namespace === caller ? 'consumer' : 'other-namespace';
    const on = inTable.has(routeKey(r));
    let why: string;
    if (on) why = role === 'producer' ? 'producer route (the Service\'s namespace): applies to every caller' : `consumer route in the caller's namespace ${caller}: replaces the producer routes for this caller`;
    else if (role === 'other-namespace') why = `consumer route of namespace ${r.namespace}: applies only to callers in ${r.namespace}`;
    else if (role === 'producer' && consumers) why = `not applied: consumer routes in ${caller} replace the producer routes for this caller`;
    else why = `not applied: an older ${r.kind === 'HTTPRoute' ? 'GRPCRoute' : 'HTTPRoute'} is attached, and HTTP and gRPC routes are never merged`;
    return { route: routeKey(r), kind: r.kind, role, applied: on, why };
  });
}

function refOf(r: BackendObjectRef & { weight: number }): number {
  return Math.max(0, r.weight);
}

function mirrorsOf(filters: readonly HTTPRouteFilter[], route: RouteRecord, state: MeshState): string[] {
  const out: string[] = [];
  for (const f of filters) {
    if (f.type !== 'RequestMirror') continue;
    const m: RequestMirror = f.requestMirror;
    const share = m.fraction ? `${m.fraction.numerator}/${m.fraction.denominator} of requests` : m.percent !== undefined ? `${m.percent} % of requests` : 'every request';
    const res = resolveBackend(m.backendRef, route, meshBackends(state));
    out.push(`mirror ${share} to ${describeRef(m.backendRef, route.namespace)}${res.ok ? '' : ` (skipped: ${res.message})`}`);
  }
  return out;
}

function edits(m: HeaderModifier | undefined): string | undefined {
  if (!m) return undefined;
  const parts = [
    ...m.set.map((h) => `set ${h.name}: ${h.value}`), ...m.add.map((h) => `add ${h.name}: ${h.value}`), ...m.remove.map((n) => `remove ${n}`),
  ];
  return parts.length ? parts.join(', ') : undefined;
}

/** The route target for `service:port` (with the port's name, which sectionName matches). */
function serviceTarget(service: ServiceRecord, port: number): ServiceTarget {
  const sp = service.ports.find((p) => p.port === port);
  return { namespace: service.namespace, name: service.name, port, ...(sp?.name ? { portName: sp.name } : {}) };
}

/** The L7 decision for `req` at the waypoint of `ctx`, printed and structured. */
export function explainL7(ctx: WaypointL7Context, req: RequestSpec): WaypointL7Explanation & { l7: L7Explanation } {
  const { state, service, port } = ctx;
  const caller = ctx.source.record.namespace;
  const target = serviceTarget(service, port);
  const all = routesOf(state);
  const config = new RouteConfig(all);
  const table = config.table(target, caller);
  const backends = meshBackends(state);
  const input: RouteInput = {
    target, callerNamespace: caller, scheme: req.scheme, method: req.method, authority: req.authority, path: req.path, query: req.query, headers: headerMap(req.headers),
  };
  const l7: L7Explanation = {
    applied: true, request: { method: req.method, authority: req.authority, path: req.path, query: req.query }, callerNamespace: caller,
    routes: attached(all, table.routes, target, caller),
  };
  const lines: string[] = [`Request: ${req.method} ${req.authority}${req.path}${req.query ? `?${req.query}` : ''}`
    + `${Object.keys(req.headers).length ? ` with ${Object.entries(req.headers).map(([k, v]) => `${k}: ${v.join(', ')}`).join('; ')}` : ''} (caller namespace ${caller})`];
  // The waypoint authorizes before it routes: a denied request never reaches a route.
  const authz = explainL7Authorization(ctx, req);
  if (authz) {
    l7.authorization = authz.detail;
    lines.push(...authz.lines);
    if (!authz.detail.allowed) {
      l7.status = 403;
      l7.reason = authz.detail.reason;
      return { summary: lines, detail: l7, backends: [], direct: { status: 403, reason: `${RBAC_DENIED}: ${authz.detail.reason}` }, l7 };
    }
  }
  for (const r of l7.routes!) lines.push(`Route ${r.route} (${r.kind}, ${r.role}): ${r.why}`);

  const first = decideRoute(config, backends, input, () => 0);
  l7.outcome = first.kind;
  const done = (status: number, reason: string, out: string): WaypointL7Explanation & { l7: L7Explanation } => {
    l7.status = status;
    l7.reason = reason;
    lines.push(out);
    return { summary: lines, detail: l7, backends: [], direct: { status, reason }, l7 };
  };
  if (first.kind === 'passthrough') {
    lines.push(`No route is attached to ${service.namespace}/${service.name}:${port}: the waypoint forwards to the Service as addressed`);
    return { summary: lines, detail: l7, l7 };
  }
  const sel = explainSelection(table, { method: req.method, path: req.path, query: parseQuery(req.query), headers: req.headers });
  l7.selection = sel.map((s) => ({
    route: routeKey(s.entry.route), rule: s.entry.ruleIndex, match: s.entry.matchIndex, condition: describeMatch(s.entry),
    result: s.mismatch ? describeMismatch(s.entry, s.mismatch, req) : 'matched',
  }));
  lines.push('Matches in precedence order:');
  for (const s of l7.selection) lines.push(`  ${s.route} rule ${s.rule} match ${s.match} (${s.condition}): ${s.result === 'matched' ? 'MATCHED' : `no — ${s.result}`}`);
  if (first.kind === 'no-route') return done(404, 'routes are attached but none matches the request', 'Answer: 404 — routes are attached but none matches the request');
  const by = first.by;
  l7.route = by.route;
  l7.rule = by.ruleIndex;
  l7.match = by.matchIndex;
  lines.push(`Chosen: route ${by.route}, rule ${by.ruleIndex}${by.ruleName ? ` (${by.ruleName})` : ''}, match ${by.matchIndex}`);
  const rule = by.selection.rule;
  const route = by.selection.route;
  const mirrors = mirrorsOf(rule.filters as readonly HTTPRouteFilter[], route, state);
  if (first.kind === 'redirect' && !rule.backendRefs.some((r) => (r.filters as readonly HTTPRouteFilter[]).some((f) => f.type === 'RequestRedirect'))) {
    l7.redirect = first.redirect;
    return done(first.redirect.statusCode, `RequestRedirect to ${first.redirect.location}`, `Answer: ${first.redirect.statusCode} redirect, Location: ${first.redirect.location}`);
  }
  // One decision per weighted backendRef: a random value inside that ref's share.
  const refs = rule.backendRefs as readonly (BackendObjectRef & { weight: number; filters: readonly HTTPRouteFilter[] })[];
  const total = refs.reduce((n, r) => n + refOf(r), 0);
  const shares: BackendShare[] = [];
  const targets: { service: ServiceRecord; port: number }[] = [];
  let start = 0;
  for (const ref of refs) {
    const w = refOf(ref);
    const name = describeRef(ref, route.namespace);
    if (w === 0) {
      shares.push({ backend: name, weight: 0, share: 0, status: 'forward', reason: 'weight 0: gets no traffic' });
      continue;
    }
    const at = (start + 0.5) / total;
    start += w;
    const o = decideRoute(config, backends, input, () => at);
    const share = Math.round((w / total) * 1000) / 10;
    mirrors.push(...mirrorsOf(ref.filters, route, state));
    if (o.kind === 'forward') {
      const svc = state.get('service', `${o.backend.namespace}/${o.backend.name}`);
      if (svc) targets.push({ service: svc, port: o.backend.port });
      const b: BackendShare = { backend: `${o.backend.namespace}/${o.backend.name}:${o.backend.port}`, weight: w, share, status: 'forward', authority: o.request.authority, path: o.request.path };
      if (edits(o.requestHeaderEdits)) b.requestHeaders = o.requestHeaderEdits;
      if (edits(o.responseHeaderEdits)) b.responseHeaders = o.responseHeaderEdits;
      shares.push(b);
      const p = o.policy;
      if (p.requestTimeoutMs !== undefined || p.backendRequestTimeoutMs !== undefined) {
        l7.timeouts = { ...(p.requestTimeoutMs !== undefined ? { requestMs: p.requestTimeoutMs } : {}), ...(p.backendRequestTimeoutMs !== undefined ? { backendRequestMs: p.backendRequestTimeoutMs } : {}) };
      }
      if (p.retry) l7.retry = { codes: [...p.retry.codes], attempts: p.retry.attempts, backoffMs: p.retry.backoffMs };
    } else if (o.kind === 'error') {
      shares.push({ backend: name, weight: w, share, status: o.status, reason: o.reason });
    } else if (o.kind === 'redirect') {
      shares.push({ backend: name, weight: w, share, status: 'forward', reason: `redirect ${o.redirect.statusCode} to ${o.redirect.location}` });
      l7.redirect = o.redirect;
    }
  }
  l7.backends = shares;
  if (mirrors.length) l7.mirrors = mirrors;
  const live = shares.filter((s) => s.weight > 0);
  if (live.length > 1) lines.push(`Backends: weighted: ${live.map((s) => `${s.share} % ${s.backend.replace(/^[^/]*\//, '').replace(/:\d+$/, '')}`).join(', ')}`);
  else lines.push('Backends:');
  for (const s of shares) {
    const head = `  ${s.backend} weight ${s.weight} (${s.share} % of requests)`;
    if (s.status !== 'forward') lines.push(`${head}: answered ${s.status} — ${s.reason}`);
    else if (s.reason) lines.push(`${head}: ${s.reason}`);
    else {
      lines.push(`${head}: forwarded as ${req.method} ${s.authority}${s.path}${req.query ? `?${req.query}` : ''}`);
      if (s.authority !== req.authority || s.path !== req.path) lines.push(`    rewritten (URLRewrite): authority ${req.authority} → ${s.authority}, path ${req.path} → ${s.path}`);
      if (edits(s.requestHeaders)) lines.push(`    request headers: ${edits(s.requestHeaders)}`);
      if (edits(s.responseHeaders)) lines.push(`    response headers: ${edits(s.responseHeaders)}`);
    }
  }
  for (const m of mirrors) lines.push(`Filter: ${m}`);
  if (l7.timeouts) lines.push(`Timeouts: request ${l7.timeouts.requestMs ?? 'none'} ms, per backend try ${l7.timeouts.backendRequestMs ?? 'none'} ms (answer 504 when hit)`);
  if (l7.retry) lines.push(`Retry: up to ${l7.retry.attempts} retries after the first try on ${l7.retry.codes.join(', ') || 'connection errors only'} (and connection errors), backoff ${l7.retry.backoffMs} ms`);
  if (targets.length === 0 && l7.redirect) {
    // Every live backendRef redirects (its RequestRedirect filter): the waypoint answers the redirect.
    const r = l7.redirect;
    return done(r.statusCode, `RequestRedirect to ${r.location}`, `Answer: ${r.statusCode} redirect, Location: ${r.location}`);
  }
  if (targets.length === 0) {
    const err = shares.find((s) => s.status !== 'forward');
    const status = typeof err?.status === 'number' ? err.status : 500;
    return done(status, err?.reason ?? 'no backend receives traffic', `Answer: ${status} — ${err?.reason ?? 'no backend receives traffic'}`);
  }
  return { summary: lines, detail: l7, backends: targets, l7 };
}

/** The L7 hook explain-model calls, for one request. */
export function l7Explainer(req: RequestSpec): WaypointL7Explainer {
  return (ctx) => explainL7(ctx, req);
}

/**
 * For a Service no waypoint serves: routes are not applied; a warning when some are
 * attached anyway (they have no effect without a waypoint), or when AuthorizationPolicies
 * are bound to it (enforced by nobody).
 */
export function unboundL7(state: MeshState, service: ServiceRecord, port: number): L7Explanation {
  const target = serviceTarget(service, port);
  const names = routesOf(state).filter((r) => routeTargets(r, target)).map(routeKey);
  const out: L7Explanation = { applied: false, note: `no waypoint serves ${service.namespace}/${service.name}: routes are not applied (L4 only)` };
  if (names.length) {
    out.warning = `route${names.length > 1 ? 's' : ''} ${names.join(', ')} attach${names.length > 1 ? '' : 'es'} to ${service.namespace}/${service.name} but ha${names.length > 1 ? 've' : 's'} no effect without a waypoint: `
      + `bind one with weft namespace use-waypoint ${service.namespace} <waypoint>`;
  }
  const policies = unenforcedL7Authorization(state, service);
  if (policies) out.warning = out.warning ? `${out.warning}; ${policies}` : policies;
  return out;
}

/**
 * `-H 'name: value'` may repeat, which the option parser (last flag wins) does not do:
 * every `-H`/`--header` is collected here and handed on as one `--header=<JSON list>`.
 */
export function collectHeaderFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  const headers: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (arg === '-H' || arg === '--header') {
      const v = argv[i + 1];
      if (v === undefined) throw new WeftError('WEFT_USAGE', `flag ${arg} needs a value: "name: value"`);
      headers.push(v);
      i++;
    } else if (arg.startsWith('--header=')) {
      headers.push(arg.slice('--header='.length));
    } else if (/^-H./.test(arg)) {
      headers.push(arg.slice(2));
    } else {
      out.push(arg);
    }
  }
  if (headers.length) out.push(`--header=${JSON.stringify(headers)}`);
  return out;
}

export interface RequestFlags {
  method?: string;
  path?: string;
  /** Raw `-H` values. */
  headers?: readonly string[];
}

/**
 * `weft explain` with the request described: `destination` is a URL or host:port;
 * `--path` overrides the URL's path (and query, when it has one). The L7 step is
 * evaluated when the Service is bound to a waypoint; otherwise `l7` says routes are not
 * applied, with a warning when some are attached anyway.
 */
export function explainRequest(state: MeshState, source: string, destination: string, flags: RequestFlags = {}): Explanation {
  const url = parseUrlDestination(destination);
  const dst = url?.destination ?? destination;
  const req: RequestSpec = {
    method: (flags.method ?? 'GET').toUpperCase(), scheme: url?.scheme ?? 'http',
    authority: url?.authority ?? dst.replace(/:80$/, ''), path: url?.path ?? '/', query: url?.query ?? '',
    headers: parseHeaderFlags(flags.headers ?? []),
  };
  if (flags.path !== undefined) {
    if (!flags.path.startsWith('/')) throw new WeftError('WEFT_USAGE', `--path "${flags.path}" must start with /; e.g. --path /api/v2?x=1`);
    const q = flags.path.indexOf('?');
    req.path = q === -1 ? flags.path : flags.path.slice(0, q);
    if (q !== -1) req.query = flags.path.slice(q + 1);
  }
  const e = explain(state, source, dst, { l7: l7Explainer(req) });
  const detail = e.waypoint?.l7?.detail as L7Explanation | undefined;
  if (detail) {
    e.l7 = detail;
  } else if (e.destination.kind === 'service' && e.destination.service) {
    const svc = state.get('service', `${e.destination.service.namespace}/${e.destination.service.name}`);
    if (svc) e.l7 = unboundL7(state, svc, e.destination.service.port);
    if (e.l7 && e.destination.service.waypoint !== undefined && !e.waypoint) {
      e.l7.note = `the waypoint ${e.destination.service.namespace}/${e.destination.service.waypoint} is not ready: the source refuses, routes are not evaluated`;
    }
  }
  return e;
}
