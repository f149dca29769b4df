/**
 * Checks shared by HTTPRoute and GRPCRoute validation: references, header matches,
 * header modifiers, mirrors, and the filter envelope. Limits and formats are the
 * Gateway API CRD's own (apis/v1/*_types.go in kubernetes-sigs/gateway-api), so what the
 * Kubernetes API server accepts on a cluster is what `weft apply` accepts in the lab;
 * where Weft is stricter (a regex the safe engine refuses, a filter type Weft does not
 * implement) the message says so.
 */
import { FieldError, Obj, checkString, join, rules, type StringRule, type UnknownKeys } from '../registry/checks';
import { DurationError, parseDuration } from './duration';
import { RegexError, compileRegex } from './regex';
import {
  GATEWAY_API_GROUP,
  type BackendObjectRef,
  type Fraction,
  type HeaderMatch,
  type HeaderModifier,
  type HeaderValue,
  type ParentRef,
  type RequestMirror,
  type StringMatchType,
} from './types';

const DNS_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const SUBDOMAIN = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);
const WILDCARD_HOST = new RegExp(`^(\\*\\.)?${DNS_LABEL}(\\.${DNS_LABEL})*$`);

const pattern = (re: RegExp, max: number, what: string): StringRule => (s) =>
  (s.length <= max && re.test(s) ? undefined : `must be ${what}`);

/** Gateway API string formats (shared_types.go). */
export const gw = {
  /** RFC 7230 token, 1-256 characters (HeaderName). */
  headerName: pattern(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 256, 'an HTTP header name (an RFC 7230 token of letters, digits and !#$%&\'*+-.^_`|~, at most 256 characters)'),
  hostname: pattern(WILDCARD_HOST, 253, 'a hostname such as foo.example.com or *.example.com (lower-case, at most 253 characters)'),
  preciseHostname: pattern(SUBDOMAIN, 253, 'a hostname such as foo.example.com (lower-case, no wildcard, at most 253 characters)'),
  sectionName: pattern(SUBDOMAIN, 253, 'a section name (lower-case DNS subdomain, at most 253 characters)'),
  group: ((s) => (s === '' ? undefined : pattern(SUBDOMAIN, 253, 'an API group ("" for core, or a DNS subdomain such as gateway.networking.k8s.io)')(s))) as StringRule,
  kind: pattern(/^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/, 63, 'a Kind such as Service (letters, digits and "-", starting with a letter, at most 63 characters)'),
  objectName: rules.nonEmpty,
  namespace: rules.dnsLabel,
  /** A header value to match or set: 1-4096 characters. */
  // RFC 9110 §5.5: a field value is visible characters, spaces and tabs. A CR/LF or
  // other control character could not be written to the wire (the waypoint would fail
  // every request the route sends) or, written, would split the header block.
  headerValue: ((s) => (s.length < 1 || s.length > 4096 ? 'must be 1-4096 characters'
    : /[\x00-\x08\x0a-\x1f\x7f]/.test(s) ? 'must not contain control characters (CR, LF, NUL, ...); a header value is visible characters, spaces and tabs' : undefined)) as StringRule,
};

export const GATEWAY_API_HEADER_LIMIT = 16;

/** An optional list: [] when absent, refused past `max` items (the CRD's MaxItems). */
export function list<T>(o: Obj, key: string, max: number, item: (v: unknown, path: string) => T): T[] {
  const v = o.o[key];
  const p = join(o.path, key);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new FieldError(p, 'must be an array');
  if (v.length > max) throw new FieldError(p, `must have at most ${max} items, got ${v.length}`);
  return v.map((x, i) => item(x, `${p}[${i}]`));
}

/** Refuses a second item with the same key (the CRD's listType=map/set), naming the later one. */
export function unique<T>(items: T[], path: string, key: (t: T) => string, what: string): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const k = key(item);
    if (seen.has(k)) throw new FieldError(`${path}[${i}]`, `repeats ${what} ${JSON.stringify(k)}; each may appear once`);
    seen.add(k);
  });
}

export function int(o: Obj, key: string, min: number, max: number): number {
  const v = o.o[key];
  const p = join(o.path, key);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new FieldError(p, `must be an integer ${min}-${max}, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  return v;
}

export function optInt(o: Obj, key: string, min: number, max: number): number | undefined {
  return o.has(key) ? int(o, key, min, max) : undefined;
}

/** A GEP-2257 duration, kept as written. */
export function optDuration(o: Obj, key: string): string | undefined {
  if (!o.has(key)) return undefined;
  const p = join(o.path, key);
  const s = checkString(o.o[key], p);
  try {
    parseDuration(s);
  } catch (err) {
    if (err instanceof DurationError) throw new FieldError(p, err.message);
    throw err;
  }
  return s;
}

/** Refuses a RegularExpression value the safe engine will not run, with the engine's reason. */
export function checkRegex(value: string, path: string): void {
  try {
    compileRegex(value);
  } catch (err) {
    if (err instanceof RegexError) throw new FieldError(path, `is not an accepted regular expression: ${err.problem}`);
    throw err;
  }
}

export function parentRef(v: unknown, path: string, unknown: UnknownKeys): ParentRef {
  const o = new Obj(v, path, ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'], unknown);
  const out: ParentRef = {
    group: o.has('group') ? o.string('group', gw.group) : GATEWAY_API_GROUP,
    kind: o.has('kind') ? o.string('kind', gw.kind) : 'Gateway',
    name: o.string('name', gw.objectName),
  };
  const namespace = o.optString('namespace', gw.namespace);
  if (namespace !== undefined) out.namespace = namespace;
  const sectionName = o.optString('sectionName', gw.sectionName);
  if (sectionName !== undefined) out.sectionName = sectionName;
  if (o.has('port')) out.port = o.port('port');
  return out;
}

/** spec.parentRefs: at most 32; the same parent twice needs a distinct sectionName or port (the CRD's rules). */
export function parentRefs(spec: Obj, unknown: UnknownKeys): ParentRef[] {
  const refs = list(spec, 'parentRefs', 32, (v, p) => parentRef(v, p, unknown));
  const p = join(spec.path, 'parentRefs');
  const parentKey = (r: ParentRef) => `${r.group}/${r.kind}/${r.namespace ?? ''}/${r.name}`;
  refs.forEach((r, i) => {
    const first = refs.findIndex((x) => parentKey(x) === parentKey(r));
    if (first === i) return;
    const f = refs[first]!;
    if ((f.sectionName === undefined) !== (r.sectionName === undefined) || (f.port === undefined) !== (r.port === undefined)) {
      throw new FieldError(`${p}[${i}]`, `refers to the same parent as ${p}[${first}]; both must set sectionName or port alike`);
    }
  });
  unique(refs, p, (r) => `${parentKey(r)}/${r.sectionName ?? ''}/${r.port ?? ''}`, 'the parent (with sectionName and port)');
  return refs;
}

export const BACKEND_REF_KEYS = ['group', 'kind', 'name', 'namespace', 'port'] as const;

/** A BackendObjectReference from an Obj the caller made (it may know more keys, e.g. weight). */
export function backendObjectRef(o: Obj): BackendObjectRef {
  const out: BackendObjectRef = {
    group: o.has('group') ? o.string('group', gw.group) : '',
    kind: o.has('kind') ? o.string('kind', gw.kind) : 'Service',
    name: o.string('name', gw.objectName),
  };
  const namespace = o.optString('namespace', gw.namespace);
  if (namespace !== undefined) out.namespace = namespace;
  if (o.has('port')) out.port = o.port('port');
  else if (out.group === '' && out.kind === 'Service') throw new FieldError(join(o.path, 'port'), 'is required for a Service backend (the Service port to send to)');
  return out;
}

export function headerMatch(v: unknown, path: string, unknown: UnknownKeys, valueMax = 4096): HeaderMatch {
  const o = new Obj(v, path, ['type', 'name', 'value'], unknown);
  const type: StringMatchType = o.optOneOf('type', ['Exact', 'RegularExpression'] as const) ?? 'Exact';
  const name = o.string('name', gw.headerName);
  const value = o.string('value', (s) => (s.length >= 1 && s.length <= valueMax ? undefined : `must be 1-${valueMax} characters`));
  if (type === 'RegularExpression') checkRegex(value, join(path, 'value'));
  return { type, name, value };
}

/** Header matches (or query parameter matches): at most 16, names unique as the CRD's listMapKey=name requires. */
export function headerMatches(o: Obj, key: string, unknown: UnknownKeys, valueMax = 4096): HeaderMatch[] {
  const out = list(o, key, GATEWAY_API_HEADER_LIMIT, (v, p) => headerMatch(v, p, unknown, valueMax));
  unique(out, join(o.path, key), (h) => h.name, 'the name');
  return out;
}

function headerValue(v: unknown, path: string, unknown: UnknownKeys): HeaderValue {
  const o = new Obj(v, path, ['name', 'value'], unknown);
  return { name: o.string('name', gw.headerName), value: o.string('value', gw.headerValue) };
}

export function headerModifier(v: unknown, path: string, unknown: UnknownKeys): HeaderModifier {
  const o = new Obj(v, path, ['set', 'add', 'remove'], unknown);
  const set = list(o, 'set', 16, (x, p) => headerValue(x, p, unknown));
  unique(set, join(path, 'set'), (h) => h.name, 'the header');
  const add = list(o, 'add', 16, (x, p) => headerValue(x, p, unknown));
  unique(add, join(path, 'add'), (h) => h.name, 'the header');
  const remove = list(o, 'remove', 16, (x, p) => checkString(x, p, gw.headerName));
  unique(remove, join(path, 'remove'), (h) => h, 'the header');
  return { set, add, remove };
}

export function requestMirror(v: unknown, path: string, unknown: UnknownKeys): RequestMirror {
  const o = new Obj(v, path, ['backendRef', 'percent', 'fraction'], unknown);
  const ref = new Obj(o.o.backendRef, join(path, 'backendRef'), BACKEND_REF_KEYS, unknown);
  const out: RequestMirror = { backendRef: backendObjectRef(ref) };
  if (o.has('percent') && o.has('fraction')) throw new FieldError(join(path, 'fraction'), 'must not be set together with percent; use one of them');
  const percent = optInt(o, 'percent', 0, 100);
  if (percent !== undefined) out.percent = percent;
  if (o.has('fraction')) {
    const f = new Obj(o.o.fraction, join(path, 'fraction'), ['numerator', 'denominator'], unknown);
    const fraction: Fraction = { numerator: int(f, 'numerator', 0, 2 ** 31 - 1), denominator: optInt(f, 'denominator', 1, 2 ** 31 - 1) ?? 100 };
    if (fraction.numerator > fraction.denominator) throw new FieldError(join(f.path, 'numerator'), `must be at most the denominator (${fraction.denominator})`);
    out.fraction = fraction;
  }
  return out;
}

/** Filter types Gateway API defines that Weft does not implement: refused, not ignored. */
const UNSUPPORTED_FILTERS = ['ExtensionRef', 'CORS', 'ExternalAuth'];
/** The field each filter type carries its settings in. */
const FILTER_FIELD: Record<string, string> = {
  RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect', URLRewrite: 'urlRewrite', ExtensionRef: 'extensionRef', CORS: 'cors', ExternalAuth: 'externalAuth',
};

/**
 * The filter envelope: `type` one of `supported`, its settings in the matching field and no
 * other filter field set. Returns the type, the settings' value and path for the caller.
 */
export function filterEnvelope<T extends string>(v: unknown, path: string, unknown: UnknownKeys, supported: readonly T[]): { type: T; value: unknown; path: string } {
  const fields = [...supported, ...UNSUPPORTED_FILTERS].map((t) => FILTER_FIELD[t]!);
  const o = new Obj(v, path, ['type', ...fields], unknown);
  const typePath = join(path, 'type');
  const raw = o.o.type;
  if (typeof raw === 'string' && UNSUPPORTED_FILTERS.includes(raw)) {
    throw new FieldError(typePath, `${raw} is not supported by Weft (supported: ${supported.join(', ')})`);
  }
  const type = o.oneOf('type', supported);
  const field = FILTER_FIELD[type]!;
  for (const other of fields) {
    if (other !== field && o.has(other)) throw new FieldError(join(path, other), `must not be set when type is ${type}`);
  }
  if (!o.has(field)) throw new FieldError(join(path, field), `is required when type is ${type}`);
  return { type, value: o.o[field], path: join(path, field) };
}

/** The CRD's "cannot be repeated" rule for the listed filter types. */
export function noRepeatedFilters(filters: Array<{ type: string }>, path: string, once: readonly string[]): void {
  const seen = new Set<string>();
  filters.forEach((f, i) => {
    if (!once.includes(f.type)) return;
    if (seen.has(f.type)) throw new FieldError(`${path}[${i}]`, `repeats a ${f.type} filter; it may appear once per list`);
    seen.add(f.type);
  });
}

/** spec.hostnames: at most 16, each a (possibly wildcard) hostname. */
export function hostnames(spec: Obj): string[] {
  return list(spec, 'hostnames', 16, (v, p) => checkString(v, p, gw.hostname));
}

