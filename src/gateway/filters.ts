/**
 * HTTPRoute filters as pure functions: header modifiers, RequestRedirect (the Location
 * to answer with), URLRewrite (the path and authority to send upstream) and the
 * RequestMirror decision. The waypoint runs `applyFilters` once with the rule's filters
 * and once with the chosen backendRef's, feeding the first result into the second;
 * `weft explain` runs the same calls and prints the outcome.
 *
 * Filters apply in list order (the spec leaves ordering unspecified). A rule holding a
 * RequestRedirect answers with it; validation refuses a rule with both a redirect and a
 * URLRewrite.
 */
import type { BackendObjectRef, HeaderModifier, HTTPRouteFilter, PathModifier, RedirectStatusCode, RequestMirror, RequestRedirect, URLRewrite } from './types';

/** Header names lower-case; a repeated header keeps every value in order. */
export type HeaderMap = Map<string, string[]>;

/** Builds a HeaderMap from Node-style headers (names of any case). */
export function headerMap(headers: Readonly<Record<string, string | readonly string[] | undefined>>): HeaderMap {
  const out: HeaderMap = new Map();
  for (const [name, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    const key = name.toLowerCase();
    const list = out.get(key) ?? [];
    if (typeof v === 'string') list.push(v);
    else list.push(...v);
    out.set(key, list);
  }
  return out;
}

/**
 * RequestHeaderModifier / ResponseHeaderModifier on a copy: `set` replaces every value,
 * `add` appends a value (the receiver sees `old,new`), `remove` drops the header; names
 * compare case-insensitively (conformance: the filter says `X-Header-Set`, the request
 * sends `x-header-set`).
 */
export function modifyHeaders(headers: ReadonlyMap<string, readonly string[]>, mod: HeaderModifier): HeaderMap {
  const out: HeaderMap = new Map([...headers].map(([k, v]) => [k, [...v]]));
  for (const { name, value } of mod.set) out.set(name.toLowerCase(), [value]);
  for (const { name, value } of mod.add) {
    const key = name.toLowerCase();
    const list = out.get(key);
    if (list === undefined) out.set(key, [value]);
    else list.push(value);
  }
  for (const name of mod.remove) out.delete(name.toLowerCase());
  return out;
}

/** Applies response header modifiers collected by applyFilters, in order. */
export function modifyResponseHeaders(headers: ReadonlyMap<string, readonly string[]>, mods: readonly HeaderModifier[]): HeaderMap {
  let out: HeaderMap = new Map([...headers].map(([k, v]) => [k, [...v]]));
  for (const m of mods) out = modifyHeaders(out, m);
  return out;
}

/**
 * One HeaderModifier with the effect of applying `mods` in order (each as modifyHeaders
 * does: set, then add, then remove). Lets a caller that takes a single edit list (the
 * waypoint's ForwardPlan) receive rule-level and backendRef-level edits together.
 */
export function composeHeaderModifiers(mods: readonly HeaderModifier[]): HeaderModifier {
  // Per header: 'append' = values added to whatever the request had; 'replace' = the final values.
  const state = new Map<string, { kind: 'append' | 'replace'; values: string[] }>();
  for (const m of mods) {
    for (const { name, value } of m.set) state.set(name.toLowerCase(), { kind: 'replace', values: [value] });
    for (const { name, value } of m.add) {
      const key = name.toLowerCase();
      const s = state.get(key);
      if (s === undefined) state.set(key, { kind: 'append', values: [value] });
      else s.values.push(value);
    }
    for (const name of m.remove) state.set(name.toLowerCase(), { kind: 'replace', values: [] });
  }
  const out: HeaderModifier = { set: [], add: [], remove: [] };
  for (const [name, s] of state) {
    if (s.kind === 'append') for (const value of s.values) out.add.push({ name, value });
    else if (s.values.length === 0) out.remove.push(name);
    else {
      out.set.push({ name, value: s.values[0]! });
      for (const value of s.values.slice(1)) out.add.push({ name, value });
    }
  }
  return out;
}

/**
 * ReplacePrefixMatch, segment-wise as the spec's table has it: the matched prefix (its
 * trailing `/` ignored) is cut from the path and the replacement (its trailing `/`
 * ignored) put in front of what remains; an empty result is `/`.
 * `/foo/bar` with `/foo` → `/xyz` gives `/xyz/bar`; `/foo` with `/foo` → `/` gives `/`.
 */
export function replacePrefix(path: string, matchedPrefix: string, replacement: string): string {
  const prefix = matchedPrefix.replace(/\/+$/, '');
  const rest = path.startsWith(prefix) ? path.slice(prefix.length) : path;
  const out = replacement.replace(/\/+$/, '') + rest;
  if (out === '') return '/';
  return out.startsWith('/') ? out : `/${out}`;
}

/**
 * The path a PathModifier produces. ReplacePrefixMatch needs the PathPrefix value that
 * matched; without one (validation refuses it with other match types) the path is kept.
 */
export function modifyPath(path: string, mod: PathModifier, matchedPrefix: string | undefined): string {
  if (mod.type === 'ReplaceFullPath') return mod.replaceFullPath;
  return matchedPrefix === undefined ? path : replacePrefix(path, matchedPrefix, mod.replacePrefixMatch);
}

/** The request as filters see and change it. */
export interface FilterRequest {
  /** Scheme the caller used (inside HBONE the waypoint sees `http`). */
  scheme: 'http' | 'https';
  /** `Host` / `:authority` as sent, port included when the client sent one. */
  authority: string;
  /** Path without the query. */
  path: string;
  /** Query without `?`; '' when none. Kept by rewrites and redirects. */
  query: string;
  headers: HeaderMap;
}

export interface FilterContext {
  /** The Service port the request was sent to (Gateway API's "listener port" in the mesh). */
  servicePort: number;
  /** The PathPrefix value of the match that selected the rule, for ReplacePrefixMatch. */
  matchedPrefix?: string;
  /** [0, 1); Math.random in the waypoint. */
  random?: () => number;
}

export interface Redirect {
  statusCode: RedirectStatusCode;
  location: string;
}

export interface FilterOutcome {
  /** The request to send upstream (a new object; the input is untouched). */
  request: FilterRequest;
  /** Set when a RequestRedirect applies: answer with it, send nothing upstream. */
  redirect?: Redirect;
  /** RequestHeaderModifiers applied to `request.headers`, in order (for callers that apply edits themselves). */
  requestHeaders: HeaderModifier[];
  /** ResponseHeaderModifiers to apply to the upstream's response, in order. */
  responseHeaders: HeaderModifier[];
  /** Mirror targets chosen for this request (percent/fraction already decided). */
  mirrors: BackendObjectRef[];
}

const DEFAULT_PORT = { http: 80, https: 443 } as const;

/** Host part of an authority: `echo:8080` → `echo`, `[::1]:80` → `[::1]`. */
export function authorityHost(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end === -1 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon === -1 ? authority : authority.slice(0, colon);
}

/**
 * The redirect answer. Port rules (HTTPRequestRedirectFilter.Port): the filter's port;
 * else the scheme's well-known port when the filter sets a scheme; else the port the
 * request was sent to. The port is left out of Location when it is the scheme's default.
 * Hostname defaults to the request's; the query is kept.
 */
export function computeRedirect(r: RequestRedirect, req: FilterRequest, ctx: Pick<FilterContext, 'servicePort' | 'matchedPrefix'>): Redirect {
  const scheme = r.scheme ?? req.scheme;
  const port = r.port ?? (r.scheme !== undefined ? DEFAULT_PORT[r.scheme] : ctx.servicePort);
  const host = r.hostname ?? authorityHost(req.authority);
  const path = r.path !== undefined ? modifyPath(req.path, r.path, ctx.matchedPrefix) : req.path;
  const portPart = port === DEFAULT_PORT[scheme] ? '' : `:${port}`;
  const query = req.query === '' ? '' : `?${req.query}`;
  return { statusCode: r.statusCode, location: `${scheme}://${host}${portPart}${path}${query}` };
}

/**
 * URLRewrite: a new authority (hostname only: the upstream port is the backend's) and
 * path; everything else unchanged.
 */
export function rewriteUrl(rw: URLRewrite, req: FilterRequest, matchedPrefix: string | undefined): FilterRequest {
  return {
    ...req,
    authority: rw.hostname ?? req.authority,
    path: rw.path !== undefined ? modifyPath(req.path, rw.path, matchedPrefix) : req.path,
  };
}

/**
 * Whether this request is mirrored: `percent` (0-100) or `fraction`
 * (numerator/denominator) of requests, every request when neither is set.
 */
export function shouldMirror(m: RequestMirror, random: () => number = Math.random): boolean {
  if (m.fraction !== undefined) {
    if (m.fraction.numerator <= 0 || m.fraction.denominator <= 0) return false;
    if (m.fraction.numerator >= m.fraction.denominator) return true;
    return random() * m.fraction.denominator < m.fraction.numerator;
  }
  if (m.percent !== undefined) {
    if (m.percent <= 0) return false;
    if (m.percent >= 100) return true;
    return random() * 100 < m.percent;
  }
  return true;
}

/** Runs one list of filters (a rule's or a backendRef's) over the request. */
export function applyFilters(filters: readonly HTTPRouteFilter[], req: FilterRequest, ctx: FilterContext): FilterOutcome {
  const out: FilterOutcome = { request: { ...req, headers: new Map(req.headers) }, requestHeaders: [], responseHeaders: [], mirrors: [] };
  for (const f of filters) {
    switch (f.type) {
      case 'RequestHeaderModifier':
        out.request = { ...out.request, headers: modifyHeaders(out.request.headers, f.requestHeaderModifier) };
        out.requestHeaders.push(f.requestHeaderModifier);
        break;
      case 'ResponseHeaderModifier':
        out.responseHeaders.push(f.responseHeaderModifier);
        break;
      case 'RequestRedirect':
        // Computed from the request as the client sent it (earlier filters only touch headers).
        if (out.redirect === undefined) out.redirect = computeRedirect(f.requestRedirect, req, ctx);
        break;
      case 'URLRewrite':
        out.request = rewriteUrl(f.urlRewrite, out.request, ctx.matchedPrefix);
        break;
      case 'RequestMirror':
        if (shouldMirror(f.requestMirror, ctx.random)) out.mirrors.push(f.requestMirror.backendRef);
        break;
    }
  }
  return out;
}
