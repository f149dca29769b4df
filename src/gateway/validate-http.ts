/**
 * HTTPRoute spec validation (gateway.networking.k8s.io/v1): every field checked with the
 * CRD's limits and cross-field rules, every default filled in, as types.ts describes.
 * Throws FieldError naming the full path, e.g. `spec.rules[1].matches[0].path.value`.
 */
import { FieldError, Obj, checkString, join, type UnknownKeys } from '../registry/checks';
import { parseDuration } from './duration';
import {
  BACKEND_REF_KEYS,
  backendObjectRef,
  checkRegex,
  filterEnvelope,
  gw,
  headerMatches,
  headerModifier,
  hostnames,
  int,
  list,
  noRepeatedFilters,
  optDuration,
  optInt,
  parentRefs,
  requestMirror,
  unique,
} from './validate-common';
import type {
  HTTPBackendRef,
  HTTPRouteFilter,
  HTTPRouteMatch,
  HTTPRouteRetry,
  HTTPRouteRule,
  HTTPRouteSpec,
  HTTPRouteTimeouts,
  HttpMethod,
  PathMatch,
  PathModifier,
  RedirectStatusCode,
  RequestRedirect,
  URLRewrite,
} from './types';

const METHODS: readonly HttpMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const HTTP_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite'] as const;
const ONCE = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'];
/** Characters a literal path may hold: RFC 3986 pchar and `/`, or a %-escape (the CRD's pattern). */
const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$/;
const PATH_FORBIDDEN = ['//', '/./', '/../', '%2f', '%2F', '#'];

/** The rule-level limits of the CRD: 16 rules, 64 matches each, 128 matches in all. */
export const HTTP_ROUTE_LIMITS = { rules: 16, matchesPerRule: 64, matchesTotal: 128, filters: 16, backendRefs: 16 } as const;

export function validateHTTPRouteSpec(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteSpec {
  const o = new Obj(v, path, ['parentRefs', 'hostnames', 'rules'], unknown);
  const spec: HTTPRouteSpec = { parentRefs: parentRefs(o, unknown), hostnames: hostnames(o), rules: [] };
  const rulesPath = join(path, 'rules');
  if (Array.isArray(o.o.rules) && o.o.rules.length === 0) throw new FieldError(rulesPath, 'must have at least one rule (or be left out for the default rule)');
  spec.rules = o.has('rules')
    ? list(o, 'rules', HTTP_ROUTE_LIMITS.rules, (r, p) => rule(r, p, unknown))
    : [{ matches: [defaultMatch()], filters: [], backendRefs: [] }];
  const total = spec.rules.reduce((n, r) => n + r.matches.length, 0);
  if (total > HTTP_ROUTE_LIMITS.matchesTotal) throw new FieldError(rulesPath, `must have at most ${HTTP_ROUTE_LIMITS.matchesTotal} matches across all rules, got ${total}`);
  const named = spec.rules.map((r) => r.name).filter((n): n is string => n !== undefined);
  unique(named, rulesPath, (n) => n, 'the rule name');
  return spec;
}

const defaultMatch = (): HTTPRouteMatch => ({ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] });

function rule(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteRule {
  const o = new Obj(v, path, ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'], unknown);
  const out: HTTPRouteRule = { matches: [], filters: [], backendRefs: [] };
  const name = o.optString('name', gw.sectionName);
  if (name !== undefined) out.name = name;
  // An explicit `matches: []` is what the CRD's default turns an absent list into, too.
  out.matches = list(o, 'matches', HTTP_ROUTE_LIMITS.matchesPerRule, (m, p) => match(m, p, unknown));
  if (out.matches.length === 0) out.matches = [defaultMatch()];
  out.filters = filters(o, 'filters', unknown);
  out.backendRefs = list(o, 'backendRefs', HTTP_ROUTE_LIMITS.backendRefs, (b, p) => backendRef(b, p, unknown));
  if (out.backendRefs.length > 0 && out.filters.some((f) => f.type === 'RequestRedirect')) {
    throw new FieldError(join(path, 'backendRefs'), 'must be empty when the rule has a RequestRedirect filter (a redirect sends nothing to a backend)');
  }
  checkPrefixReplacement(out, path);
  const timeouts = o.has('timeouts') ? routeTimeouts(o.o.timeouts, join(path, 'timeouts'), unknown) : undefined;
  if (timeouts) out.timeouts = timeouts;
  const retry = o.has('retry') ? routeRetry(o.o.retry, join(path, 'retry'), unknown) : undefined;
  if (retry) out.retry = retry;
  return out;
}

/** ReplacePrefixMatch (redirect or rewrite, rule or backendRef level) needs exactly one match, a PathPrefix. */
function checkPrefixReplacement(r: HTTPRouteRule, path: string): void {
  const uses = (fs: HTTPRouteFilter[]) => fs.some((f) =>
    (f.type === 'RequestRedirect' && f.requestRedirect.path?.type === 'ReplacePrefixMatch')
    || (f.type === 'URLRewrite' && f.urlRewrite.path?.type === 'ReplacePrefixMatch'));
  if (!uses(r.filters) && !r.backendRefs.some((b) => uses(b.filters))) return;
  if (r.matches.length !== 1 || r.matches[0]!.path.type !== 'PathPrefix') {
    throw new FieldError(join(path, 'matches'), 'must be exactly one PathPrefix match when a filter uses ReplacePrefixMatch (it replaces that prefix)');
  }
}

function match(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteMatch {
  const o = new Obj(v, path, ['path', 'headers', 'queryParams', 'method'], unknown);
  const out: HTTPRouteMatch = {
    path: o.has('path') ? pathMatch(o.o.path, join(path, 'path'), unknown) : { type: 'PathPrefix', value: '/' },
    headers: headerMatches(o, 'headers', unknown),
    queryParams: headerMatches(o, 'queryParams', unknown, 1024),
  };
  const method = o.optOneOf('method', METHODS);
  if (method !== undefined) out.method = method;
  return out;
}

function pathMatch(v: unknown, path: string, unknown: UnknownKeys): PathMatch {
  const o = new Obj(v, path, ['type', 'value'], unknown);
  const type = o.optOneOf('type', ['Exact', 'PathPrefix', 'RegularExpression'] as const) ?? 'PathPrefix';
  const valuePath = join(path, 'value');
  const value = o.has('value') ? o.string('value', (s) => (s.length <= 1024 ? undefined : 'must be at most 1024 characters')) : '/';
  if (type === 'RegularExpression') checkRegex(value, valuePath);
  else checkLiteralPath(value, valuePath, type);
  return { type, value };
}

/** The CRD's rules for Exact and PathPrefix values: absolute, normalised, only URI path characters. */
function checkLiteralPath(value: string, path: string, type: string): void {
  if (!value.startsWith('/')) throw new FieldError(path, `must start with "/" for a ${type} match, got ${JSON.stringify(value)}`);
  const bad = PATH_FORBIDDEN.find((s) => value.includes(s));
  if (bad) throw new FieldError(path, `must not contain ${JSON.stringify(bad)} for a ${type} match, got ${JSON.stringify(value)}`);
  if (value.endsWith('/..') || value.endsWith('/.')) throw new FieldError(path, `must not end with "/." or "/.." for a ${type} match, got ${JSON.stringify(value)}`);
  if (!PATH_CHARS.test(value)) {
    throw new FieldError(path, `must hold only URI path characters (letters, digits, -._~!$&'()*+,;=:@/ or %XX escapes) for a ${type} match, got ${JSON.stringify(value)}`);
  }
}

function filters(o: Obj, key: string, unknown: UnknownKeys): HTTPRouteFilter[] {
  const out = list(o, key, HTTP_ROUTE_LIMITS.filters, (v, p) => filter(v, p, unknown));
  const p = join(o.path, key);
  noRepeatedFilters(out, p, ONCE);
  const rewrite = out.findIndex((f) => f.type === 'URLRewrite');
  if (rewrite !== -1 && out.some((f) => f.type === 'RequestRedirect')) {
    throw new FieldError(`${p}[${rewrite}]`, 'URLRewrite must not be used together with RequestRedirect in one filter list; use one of them');
  }
  return out;
}

function filter(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteFilter {
  const f = filterEnvelope(v, path, unknown, HTTP_FILTERS);
  switch (f.type) {
    case 'RequestHeaderModifier': return { type: f.type, requestHeaderModifier: headerModifier(f.value, f.path, unknown) };
    case 'ResponseHeaderModifier': return { type: f.type, responseHeaderModifier: headerModifier(f.value, f.path, unknown) };
    case 'RequestMirror': return { type: f.type, requestMirror: requestMirror(f.value, f.path, unknown) };
    case 'RequestRedirect': return { type: f.type, requestRedirect: requestRedirect(f.value, f.path, unknown) };
    case 'URLRewrite': return { type: f.type, urlRewrite: urlRewrite(f.value, f.path, unknown) };
  }
}

function pathModifier(v: unknown, path: string, unknown: UnknownKeys): PathModifier {
  const o = new Obj(v, path, ['type', 'replaceFullPath', 'replacePrefixMatch'], unknown);
  const type = o.oneOf('type', ['ReplaceFullPath', 'ReplacePrefixMatch'] as const);
  const field = type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
  const other = type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
  if (o.has(other)) throw new FieldError(join(path, other), `must not be set when type is ${type}`);
  if (!o.has(field)) throw new FieldError(join(path, field), `is required when type is ${type}`);
  const value = checkString(o.o[field], join(path, field), (s) => (s.length <= 1024 ? undefined : 'must be at most 1024 characters'));
  return type === 'ReplaceFullPath' ? { type, replaceFullPath: value } : { type, replacePrefixMatch: value };
}

const STATUS_CODES: readonly RedirectStatusCode[] = [301, 302, 303, 307, 308];

function requestRedirect(v: unknown, path: string, unknown: UnknownKeys): RequestRedirect {
  const o = new Obj(v, path, ['scheme', 'hostname', 'path', 'port', 'statusCode'], unknown);
  const out: RequestRedirect = { statusCode: 302 };
  const scheme = o.optOneOf('scheme', ['http', 'https'] as const);
  if (scheme !== undefined) out.scheme = scheme;
  const hostname = o.optString('hostname', gw.preciseHostname);
  if (hostname !== undefined) out.hostname = hostname;
  if (o.has('path')) out.path = pathModifier(o.o.path, join(path, 'path'), unknown);
  if (o.has('port')) out.port = o.port('port');
  if (o.has('statusCode')) {
    const code = o.o.statusCode;
    if (!STATUS_CODES.includes(code as RedirectStatusCode)) throw new FieldError(join(path, 'statusCode'), `must be one of ${STATUS_CODES.join(', ')}, got ${JSON.stringify(code)}`);
    out.statusCode = code as RedirectStatusCode;
  }
  return out;
}

function urlRewrite(v: unknown, path: string, unknown: UnknownKeys): URLRewrite {
  const o = new Obj(v, path, ['hostname', 'path'], unknown);
  const out: URLRewrite = {};
  const hostname = o.optString('hostname', gw.preciseHostname);
  if (hostname !== undefined) out.hostname = hostname;
  if (o.has('path')) out.path = pathModifier(o.o.path, join(path, 'path'), unknown);
  return out;
}

function backendRef(v: unknown, path: string, unknown: UnknownKeys): HTTPBackendRef {
  const o = new Obj(v, path, [...BACKEND_REF_KEYS, 'weight', 'filters'], unknown);
  return { ...backendObjectRef(o), weight: optInt(o, 'weight', 0, 1_000_000) ?? 1, filters: filters(o, 'filters', unknown) };
}

function routeTimeouts(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteTimeouts {
  const o = new Obj(v, path, ['request', 'backendRequest'], unknown);
  const out: HTTPRouteTimeouts = {};
  const request = optDuration(o, 'request');
  if (request !== undefined) out.request = request;
  const backendRequest = optDuration(o, 'backendRequest');
  if (backendRequest !== undefined) out.backendRequest = backendRequest;
  if (request !== undefined && backendRequest !== undefined) {
    const total = parseDuration(request);
    if (total !== 0 && parseDuration(backendRequest) > total) {
      throw new FieldError(join(path, 'backendRequest'), `must not be longer than request (${request}), got ${backendRequest}`);
    }
  }
  return out;
}

function routeRetry(v: unknown, path: string, unknown: UnknownKeys): HTTPRouteRetry {
  const o = new Obj(v, path, ['codes', 'attempts', 'backoff'], unknown);
  const codes = list(o, 'codes', Number.MAX_SAFE_INTEGER, (c, p) => {
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 400 || c > 599) throw new FieldError(p, `must be an HTTP status code 400-599, got ${JSON.stringify(c)}`);
    return c;
  });
  unique(codes, join(path, 'codes'), String, 'the code');
  const out: HTTPRouteRetry = { codes };
  // The CRD's minimum is 1: attempts counts retries after the first try; leave retry out for none.
  const attempts = o.has('attempts') ? int(o, 'attempts', 1, 2 ** 31 - 1) : undefined;
  if (attempts !== undefined) out.attempts = attempts;
  const backoff = optDuration(o, 'backoff');
  if (backoff !== undefined) out.backoff = backoff;
  return out;
}
