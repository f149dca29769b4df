/**
 * Picks the winning match for one request from a RouteTable (compile.ts): the table is
 * already in precedence order, so the first entry whose every condition holds wins.
 * No winner while routes are attached means 404 (the waypoint answers it); an empty
 * table (no route attached) is the caller's business: plain passthrough.
 *
 * Matching rules (Gateway API):
 * - Exact path: the whole path. PathPrefix: whole segments, a trailing `/` of the prefix
 *   ignored (`/abc` matches `/abc`, `/abc/`, `/abc/def`, not `/abcd`). Regex: full match.
 * - Header names case-insensitive; a header sent several times matches when any of its
 *   values does. Query param names case-sensitive; a repeated param is judged by its
 *   first value (the spec leaves repeats undefined; first-value is what Envoy does).
 * - GRPCRoute: the method match reads the `/service/method` path.
 */
import type { CompiledGrpcMethod, CompiledMatch, CompiledPathMatch, CompiledStringMatch, RouteTable } from './compile';
import type { RouteRecord } from './attach';
import type { GRPCRouteRule, HTTPRouteRule } from './types';

export interface RouteRequest {
  /** Upper-case as sent (methods are case-sensitive). */
  method: string;
  /** Without the query string. */
  path: string;
  /** Parsed query (parseQuery), values in request order. */
  query: ReadonlyMap<string, readonly string[]>;
  /** Lower-case names; every value of a repeated header (a HeaderMap, or a record like Node's `headersDistinct`). */
  headers: ReadonlyMap<string, readonly string[]> | Readonly<Record<string, readonly string[] | undefined>>;
}

/** Every value of header `name` (lower-case), from either form of RouteRequest.headers. */
function headerValues(headers: RouteRequest['headers'], name: string): readonly string[] | undefined {
  if (headers instanceof Map) return (headers as ReadonlyMap<string, readonly string[]>).get(name);
  const rec = headers as Readonly<Record<string, readonly string[] | undefined>>;
  return Object.prototype.hasOwnProperty.call(rec, name) ? rec[name] : undefined;
}

export interface RouteSelection {
  route: RouteRecord;
  ruleIndex: number;
  matchIndex: number;
  rule: HTTPRouteRule | GRPCRouteRule;
  /** The table entry that won (for `weft explain` and for ReplacePrefixMatch). */
  match: CompiledMatch;
}

/** The winning match, or undefined (→ 404 when the table has routes). */
export function selectRoute(table: RouteTable, req: RouteRequest): RouteSelection | undefined {
  for (const m of table.matches) {
    if (matchesRequest(m, req)) {
      return { route: m.route, ruleIndex: m.ruleIndex, matchIndex: m.matchIndex, rule: m.rule, match: m };
    }
  }
  return undefined;
}

/** Why one table entry did not match: the first condition that failed. */
export type Mismatch =
  | { on: 'path' | 'method' | 'grpcMethod' }
  | { on: 'header' | 'queryParam'; match: CompiledStringMatch };

/** Whether every condition of one table entry holds for the request. */
export function matchesRequest(m: CompiledMatch, req: RouteRequest): boolean {
  return firstMismatch(m, req) === undefined;
}

const ON_PATH: Mismatch = { on: 'path' };
const ON_METHOD: Mismatch = { on: 'method' };
const ON_GRPC: Mismatch = { on: 'grpcMethod' };

/** The first condition of `m` the request fails, in the order path, method, gRPC method, headers, query params. */
export function firstMismatch(m: CompiledMatch, req: RouteRequest): Mismatch | undefined {
  if (m.path !== undefined && !pathMatches(m.path, req.path)) return ON_PATH;
  if (m.method !== undefined && m.method !== req.method) return ON_METHOD;
  if (m.grpcMethod !== undefined && !grpcMethodMatches(m.grpcMethod, req.path)) return ON_GRPC;
  for (const h of m.headers) {
    const values = headerValues(req.headers, h.name);
    if (values === undefined || !values.some((v) => valueMatches(h, v))) return { on: 'header', match: h };
  }
  for (const q of m.queryParams) {
    const first = req.query.get(q.name)?.[0];
    if (first === undefined || !valueMatches(q, first)) return { on: 'queryParam', match: q };
  }
  return undefined;
}

/**
 * For `weft explain`: every table entry in precedence order up to the winner, each with
 * why it did not match (no `mismatch` on the last one when it won).
 */
export function explainSelection(table: RouteTable, req: RouteRequest): { entry: CompiledMatch; mismatch?: Mismatch }[] {
  const out: { entry: CompiledMatch; mismatch?: Mismatch }[] = [];
  for (const entry of table.matches) {
    const mismatch = firstMismatch(entry, req);
    if (mismatch === undefined) {
      out.push({ entry });
      break;
    }
    out.push({ entry, mismatch });
  }
  return out;
}

export function pathMatches(p: CompiledPathMatch, path: string): boolean {
  switch (p.type) {
    case 'Exact': return path === p.value;
    case 'PathPrefix': return prefixMatches(p.prefix ?? p.value.replace(/\/+$/, ''), path);
    case 'RegularExpression': return p.regex !== undefined && p.regex.matches(path);
  }
}

/** Segment-wise prefix test; `prefix` has no trailing `/` ('' is the prefix `/`). */
export function prefixMatches(prefix: string, path: string): boolean {
  if (prefix === '') return path.startsWith('/');
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 0x2f; // '/'
}

function valueMatches(m: CompiledStringMatch, value: string): boolean {
  return m.regex !== undefined ? m.regex.matches(value) : m.value === value;
}

/** `/pkg.Service/Method` → its two parts; anything else is not a gRPC method path. */
export function splitGrpcPath(path: string): { service: string; method: string } | undefined {
  if (!path.startsWith('/')) return undefined;
  const slash = path.indexOf('/', 1);
  if (slash <= 1 || slash === path.length - 1 || path.indexOf('/', slash + 1) !== -1) return undefined;
  return { service: path.slice(1, slash), method: path.slice(slash + 1) };
}

function grpcMethodMatches(g: CompiledGrpcMethod, path: string): boolean {
  const parts = splitGrpcPath(path);
  if (parts === undefined) return false;
  if (g.service !== undefined) {
    if (g.serviceRegex !== undefined ? !g.serviceRegex.matches(parts.service) : g.service !== parts.service) return false;
  }
  if (g.method !== undefined) {
    if (g.methodRegex !== undefined ? !g.methodRegex.matches(parts.method) : g.method !== parts.method) return false;
  }
  return true;
}

/**
 * Parses a raw query string (without `?`) into names → values in order. Percent-decoding
 * and `+` as space follow URLSearchParams (application/x-www-form-urlencoded).
 */
export function parseQuery(raw: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, value] of new URLSearchParams(raw)) {
    const list = out.get(name);
    if (list === undefined) out.set(name, [value]);
    else list.push(value);
  }
  return out;
}

/** The PathPrefix value that selected the rule (for ReplacePrefixMatch), if it was a prefix match. */
export function matchedPrefix(sel: RouteSelection): string | undefined {
  return sel.match.path?.type === 'PathPrefix' ? sel.match.path.value : undefined;
}
