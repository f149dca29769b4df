/**
 * Whether one AuthorizationPolicy record matches a connection or a request: the
 * structure both enforcement points share (the ztunnel at L4, the waypoint at L7), as
 * in Istio's authorization.proto:
 *
 * a policy matches when ANY rule matches; a rule when ALL of its clauses hold (a rule
 * without clauses holds); a clause when ANY of its matches holds (a clause without
 * matches holds); a match when every field it sets holds — within a field any value
 * may hold, a `not*` field must hold for none of its values. A match that sets no
 * field is ignored, and a policy without rules matches nothing.
 *
 * L7 fields (methods, paths, hosts, request headers) hold only against a request: at
 * L4 there is none, so a match naming one never holds there (unless `broaden`). The
 * registry refuses L7 fields on a policy the ztunnel enforces (validate.ts), so at the
 * ztunnel that case is a guard only.
 *
 * Pure; the ordering of ALLOW/DENY/AUDIT is the callers' (ztunnel/authorization.ts,
 * waypoint/authorize.ts).
 */
import { parseIdentity } from '../lib/identity';
import type { AuthorizationPolicyRecord, PolicyHeaderMatch, PolicyMatch } from '../registry/types';
import { cidrContains } from './cidr';

/** Where inside a policy the request matched: 1-based, as people count. */
export interface PolicyMatchResult {
  matched: boolean;
  rule?: number;
}

/** What an L7 match compares, for one HTTP request. */
export interface RequestAttributes {
  method: string;
  /** Host header or :authority, as sent (a port may follow). */
  host: string;
  /** Path without the query, normalised (normalizePath) before matching. */
  path: string;
  /** Lower-case names, as Node delivers them. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** A connection (and, at the waypoint, its request) reduced to what matches compare; built once per evaluation. */
export interface MatchFacts {
  principal: string;
  namespace: string;
  serviceAccount: string;
  hasIdentity: boolean;
  srcIp: string;
  dstIp: string;
  dstPort: number;
  request?: RequestFacts;
}

/** A request's attributes as matched: the method upper-cased, the host lower-cased; the path's normalised form and the host without its port are worked out when a policy first compares them. */
interface RequestFacts extends RequestAttributes {
  normalizedPath?: string;
  hostNoPort?: string;
}

export function matchFacts(
  source: { identity?: string | undefined; ip: string },
  destination: { ip: string; port: number },
  request?: RequestAttributes,
): MatchFacts {
  const id = source.identity ? parsedIdentity(source.identity) : undefined;
  const facts: MatchFacts = {
    principal: source.identity ?? '',
    // An identity that is not of Weft's shape still counts as a principal, but has no namespace or service account.
    namespace: id?.namespace ?? '',
    serviceAccount: id?.serviceAccount ?? '',
    hasIdentity: id !== undefined,
    srcIp: source.ip,
    dstIp: destination.ip,
    dstPort: destination.port,
  };
  if (request) {
    const host = request.host.toLowerCase();
    // Upper-cased: an HTTP/1 upstream is sent `post` as `POST` (Node's client), and apps
    // route methods case-insensitively, so `:method: post` over HTTP/2 must not slip past
    // a rule on POST.
    facts.request = { method: request.method.toUpperCase(), host, path: request.path, headers: request.headers };
  }
  return facts;
}

/**
 * The waypoint evaluates every request of a connection with the same identity:
 * remember the last one parsed rather than parse it per request.
 */
let lastIdentity: { text: string; parsed: ReturnType<typeof parseIdentity> } | undefined;
function parsedIdentity(text: string): ReturnType<typeof parseIdentity> {
  if (lastIdentity?.text !== text) lastIdentity = { text, parsed: parseIdentity(text) };
  return lastIdentity.parsed;
}

/**
 * Whether `policy` matches. Without request attributes (a stream that is not HTTP), an
 * L7 field never holds by default; `broaden` makes it hold instead, which is how Istio
 * evaluates a DENY policy for TCP traffic: its HTTP-only conditions are dropped, so it
 * denies at least what it was written to deny.
 */
export function evaluatePolicy(policy: AuthorizationPolicyRecord, f: MatchFacts, broaden = false): PolicyMatchResult {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    if (rules[i]!.clauses.every((clause) => clause.matches.length === 0 || clause.matches.some((m) => matchHolds(m, f, policy.namespace, broaden)))) {
      return { matched: true, rule: i + 1 };
    }
  }
  return { matched: false };
}

/** Per match (records are immutable: a change brings new objects): whether it is empty, whether it has L7 fields. */
const shapes = new WeakMap<PolicyMatch, { empty: boolean; l7: boolean }>();

function shapeOf(m: PolicyMatch): { empty: boolean; l7: boolean } {
  let shape = shapes.get(m);
  if (!shape) {
    const l7 = hasL7(m);
    shape = { l7, empty: !l7 && L4_KEYS.every((k) => (m[k]?.length ?? 0) === 0) };
    shapes.set(m, shape);
  }
  return shape;
}

function matchHolds(m: PolicyMatch, f: MatchFacts, policyNs: string, broaden: boolean): boolean {
  const shape = shapeOf(m);
  if (shape.empty) return false;
  if (!(field(m.namespaces, m.notNamespaces, (v) => stringMatches(v, f.namespace))
    && field(m.serviceAccounts, m.notServiceAccounts, (v) => serviceAccountMatches(v, f, policyNs))
    && field(m.principals, m.notPrincipals, (v) => stringMatches(v, f.principal))
    && field(m.sourceIps, m.notSourceIps, (v) => cidrContains(v, f.srcIp))
    && field(m.destinationIps, m.notDestinationIps, (v) => cidrContains(v, f.dstIp))
    && field(m.destinationPorts, m.notDestinationPorts, (v) => v === f.dstPort))) return false;
  if (!shape.l7) return true;
  const r = f.request;
  if (!r) return broaden;
  return field(m.methods, m.notMethods, (v) => stringMatches(v.toUpperCase(), r.method))
    && field(m.paths, m.notPaths, (v) => stringMatches(v, r.normalizedPath ??= normalizePath(r.path)))
    && field(m.hosts, m.notHosts, (v) => hostMatches(v, r.host, r.hostNoPort ??= stripPort(r.host)))
    && (m.requestHeaders ?? []).every((h) => headerMatches(h, r))
    && (m.notRequestHeaders ?? []).every((h) => !headerMatches(h, r));
}

function field<T>(positive: readonly T[] | undefined, negative: readonly T[] | undefined, holds: (v: T) => boolean): boolean {
  if (positive && positive.length > 0 && !positive.some(holds)) return false;
  if (negative && negative.length > 0 && negative.some(holds)) return false;
  return true;
}

const L4_KEYS: readonly (keyof PolicyMatch)[] = [
  'namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'serviceAccounts', 'notServiceAccounts',
  'sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts',
];
/** The fields only a waypoint can check. */
export const L7_MATCH_KEYS = ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts', 'requestHeaders', 'notRequestHeaders'] as const;

/** Whether a match sets any field only a waypoint can check. */
function hasL7(m: PolicyMatch): boolean {
  return L7_MATCH_KEYS.some((k) => (m[k]?.length ?? 0) > 0);
}

/**
 * Istio's string match: `*` alone means "present", a leading or trailing `*` a
 * suffix or prefix match, anything else exact. An absent value (no identity) matches
 * nothing, so `notPrincipals: ["*"]` selects exactly the plaintext connections.
 */
export function stringMatches(pattern: string, value: string): boolean {
  if (value === '') return false;
  if (pattern === '*') return true;
  if (pattern.length > 1 && pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.length > 1 && pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

/** `ns/sa` names both; a bare `sa` means that service account in the policy's own namespace. */
function serviceAccountMatches(pattern: string, f: MatchFacts, policyNs: string): boolean {
  if (!f.hasIdentity) return false;
  const slash = pattern.indexOf('/');
  const ns = slash === -1 ? policyNs : pattern.slice(0, slash);
  const sa = slash === -1 ? pattern : pattern.slice(slash + 1);
  return ns === f.namespace && sa === f.serviceAccount;
}

/** Hosts compare case-insensitively; `echo.demo` also matches `echo.demo:80`, as a Host header carries a port. */
function hostMatches(pattern: string, host: string, hostNoPort: string): boolean {
  const p = pattern.toLowerCase();
  return stringMatches(p, host) || (hostNoPort !== host && stringMatches(p, hostNoPort));
}

/**
 * A header condition holds when the header is present and one of its values matches
 * (a repeated header is also tried as Envoy sees it: the values joined with `,`).
 * `host` is the request's authority, as in Envoy (HTTP/2 has no Host header, and the
 * waypoint's header map has none either: it travels as the authority).
 */
function headerMatches(h: PolicyHeaderMatch, r: RequestAttributes): boolean {
  const raw = h.name === 'host' ? r.host : r.headers[h.name];
  if (raw === undefined) return false;
  const values = Array.isArray(raw) ? [...raw, raw.join(',')] : [raw];
  return h.values.some((p) => values.some((v) => stringMatches(p, v)));
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(1, end);
  }
  const colon = host.lastIndexOf(':');
  return colon !== -1 && host.indexOf(':') === colon && /^\d+$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * The path policies compare: a fragment cut off, backslashes read as slashes,
 * percent-encoded unreserved characters decoded, repeated slashes merged, `.` and `..`
 * segments resolved (RFC 3986 §5.2.4). The waypoint forwards the path as sent;
 * comparing the normalised form means `/./admin`, `//admin` and `/%61dmin` cannot slip
 * past a rule on `/admin` to an app that normalises them. The HTTP parser passes `#`
 * and `\` in a request target, and a WHATWG URL parser (Node's `new URL`, browsers'
 * rules) drops the fragment and reads `\` as `/`: `/admin#x` is `/admin` and
 * `/admin\x` is `/admin/x` to such an app, so they must be to a rule too.
 */
export function normalizePath(path: string): string {
  const hash = path.indexOf('#');
  let p = hash === -1 ? path : path.slice(0, hash);
  if (p.includes('\\')) p = p.replaceAll('\\', '/');
  if (p.includes('%')) p = p.replace(UNRESERVED, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
  if (!p.startsWith('/')) p = `/${p}`;
  if (!p.includes('//') && !p.includes('/.')) return p;
  const out: string[] = [];
  const segments = p.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  // A path ending in `/`, `/.` or `/..` names a directory: keep its slash.
  const last = segments[segments.length - 1]!;
  const dir = last === '' || last === '.' || last === '..';
  return `/${out.join('/')}${dir && out.length > 0 ? '/' : ''}`;
}
