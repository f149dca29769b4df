/**
 * Validation of registry records. Every record is checked when written (the writer
 * refuses it, unknown keys included, so typos surface at the edge) and when read (a
 * follower skips a bad record and keeps the rest; unknown keys are dropped there so
 * that a newer writer's extra fields do not make older readers discard records).
 * Either way the result is a fresh object holding only known keys.
 */
import { validateGRPCRouteSpec, validateHTTPRouteSpec } from '../gateway/validate';
import { WeftError } from '../lib/errors';
import { L7_MATCH_KEYS } from '../authz/match';
import { validateTrafficPolicySpec } from '../resilience/validate';
import { FieldError, Obj, checkPort, checkString, rules, type StringRule, type UnknownKeys } from './checks';
import {
  KINDS,
  ROOT_NAMESPACE,
  recordKey,
  type AuthorizationPolicyRecord,
  type Kind,
  type NamespaceRecord,
  type NodeRecord,
  type PeerAuthenticationRecord,
  type PolicyClause,
  type PolicyHeaderMatch,
  type PolicyInvalid,
  type PolicyMatch,
  type PolicyRule,
  type PolicyTargetRef,
  type RecordsByKind,
  type RouteRecord,
  type WaypointRecord,
  type ServicePort,
  type ServiceRecord,
  type WorkloadRecord,
} from './types';

export interface ValidateOptions {
  /** The key the record is stored under; it must equal the key the record implies. */
  key?: string;
  /** 'reject' for writers, 'drop' (default) for readers. */
  unknownKeys?: UnknownKeys;
}

/** Returns a fresh, checked copy of `value`, or throws WEFT_REGISTRY_RECORD_INVALID naming kind, key and field. */
export function validateRecord<K extends Kind>(kind: K, value: unknown, opts: ValidateOptions = {}): RecordsByKind[K] {
  const unknown = opts.unknownKeys ?? 'drop';
  try {
    if (!KINDS.includes(kind)) throw new FieldError('kind', `must be one of ${KINDS.join(', ')}`);
    const record = VALIDATORS[kind](value, unknown) as RecordsByKind[K];
    const key = recordKey(kind, record);
    if (opts.key !== undefined && opts.key !== key) {
      throw new FieldError('(key)', `${JSON.stringify(opts.key)} does not match the record, which implies ${JSON.stringify(key)}`);
    }
    return record;
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    const key = opts.key ?? guessKey(kind, value);
    throw new WeftError('WEFT_REGISTRY_RECORD_INVALID',
      `${kind} ${key}: ${err.field} ${err.problem}; fix the writer of this record`,
      { details: { kind, key, field: err.field } });
  }
}

/** The key of a record that may be malformed, for error messages only. */
function guessKey(kind: Kind, value: unknown): string {
  if (typeof value !== 'object' || value === null) return '(unknown)';
  const v = value as Record<string, unknown>;
  const s = (x: unknown) => (typeof x === 'string' && x !== '' ? x : '?');
  if (kind === 'workload') return typeof v.uid === 'string' && v.uid !== '' ? v.uid : `${s(v.namespace)}/${s(v.name)}`;
  if (kind === 'node' || kind === 'namespace') return s(v.name);
  return `${s(v.namespace)}/${s(v.name)}`;
}

const VALIDATORS: { [K in Kind]: (v: unknown, unknown: UnknownKeys) => RecordsByKind[K] } = {
  node: validateNode,
  namespace: validateNamespace,
  workload: validateWorkload,
  service: validateService,
  policy: validatePolicy,
  peerauth: validatePeerAuth,
  waypoint: validateWaypoint,
  httproute: (v, unknown) => validateRoute(v, unknown, validateHTTPRouteSpec),
  grpcroute: (v, unknown) => validateRoute(v, unknown, validateGRPCRouteSpec),
  trafficpolicy: (v, unknown) => validateRoute(v, unknown, validateTrafficPolicySpec),
};

function validateWaypoint(v: unknown, unknown: UnknownKeys): WaypointRecord {
  const o = new Obj(v, '', ['name', 'namespace', 'serviceAccount', 'for'], unknown);
  return {
    name: o.string('name', rules.dnsLabel),
    namespace: o.string('namespace', rules.dnsLabel),
    serviceAccount: o.string('serviceAccount', rules.dnsSubdomain),
    for: o.oneOf('for', ['service', 'workload', 'all', 'none'] as const),
  };
}

/** RFC 3339 as Kubernetes writes it (`2026-11-30T15:00:00Z`, optional fraction and offset). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function validateRoute<S>(v: unknown, unknown: UnknownKeys, spec: (v: unknown, path: string, unknown: UnknownKeys) => S): RouteRecord<S> {
  const o = new Obj(v, '', ['name', 'namespace', 'creationTimestamp', 'spec'], unknown);
  return {
    name: o.string('name', rules.dnsSubdomain),
    namespace: o.string('namespace', rules.dnsLabel),
    creationTimestamp: o.string('creationTimestamp', (s) => (RFC3339.test(s) && !Number.isNaN(Date.parse(s)) ? undefined
      : 'must be an RFC 3339 time such as 2026-11-30T15:00:00Z')),
    spec: spec(o.o.spec, 'spec', unknown),
  };
}

function validateNode(v: unknown, unknown: UnknownKeys): NodeRecord {
  const o = new Obj(v, '', ['name', 'address', 'podCidr', 'labels'], unknown);
  const out: NodeRecord = { name: o.string('name', rules.dnsSubdomain), address: o.string('address', rules.ip) };
  const podCidr = o.optString('podCidr', rules.cidr);
  if (podCidr !== undefined) out.podCidr = podCidr;
  const labels = o.optLabels('labels');
  if (labels !== undefined) out.labels = labels;
  return out;
}

function validateNamespace(v: unknown, unknown: UnknownKeys): NamespaceRecord {
  const o = new Obj(v, '', ['name', 'labels'], unknown);
  return { name: o.string('name', rules.dnsLabel), labels: o.labels('labels') };
}

function validateWorkload(v: unknown, unknown: UnknownKeys): WorkloadRecord {
  const o = new Obj(v, '', ['uid', 'name', 'namespace', 'node', 'addresses', 'serviceAccount', 'labels', 'ports', 'status'], unknown);
  const out: WorkloadRecord = {
    uid: o.string('uid', rules.noSpace),
    name: o.string('name', rules.dnsSubdomain),
    namespace: o.string('namespace', rules.dnsLabel),
    node: o.string('node', rules.dnsSubdomain),
    addresses: o.array('addresses', (x, p) => checkString(x, p, rules.ip)),
    serviceAccount: o.string('serviceAccount', rules.dnsSubdomain),
    labels: o.labels('labels'),
    status: o.oneOf('status', ['Healthy', 'Unhealthy'] as const),
  };
  const ports = o.optArray('ports', checkPort);
  if (ports !== undefined) out.ports = ports;
  return out;
}

function validateService(v: unknown, unknown: UnknownKeys): ServiceRecord {
  const o = new Obj(v, '', ['name', 'namespace', 'hostname', 'vips', 'ports', 'selector', 'waypoint', 'loadBalancing'], unknown);
  const out: ServiceRecord = {
    name: o.string('name', rules.dnsLabel),
    namespace: o.string('namespace', rules.dnsLabel),
    hostname: o.string('hostname', rules.dnsSubdomain),
    vips: o.array('vips', (x, p) => checkString(x, p, rules.ip)),
    ports: o.array('ports', (x, p) => servicePort(x, p, unknown)),
    selector: o.labels('selector'),
  };
  const seen = new Map<number, number>();
  out.ports.forEach((port, i) => {
    const first = seen.get(port.port);
    if (first !== undefined) throw new FieldError(`ports[${i}].port`, `${port.port} duplicates ports[${first}].port`);
    seen.set(port.port, i);
  });
  const waypoint = o.optString('waypoint', rules.dnsSubdomain);
  if (waypoint !== undefined) out.waypoint = waypoint;
  const lb = o.optOneOf('loadBalancing', ['ROUND_ROBIN', 'LEAST_CONN'] as const);
  if (lb !== undefined) out.loadBalancing = lb;
  return out;
}

function servicePort(v: unknown, path: string, unknown: UnknownKeys): ServicePort {
  const o = new Obj(v, path, ['name', 'port', 'targetPort', 'appProtocol'], unknown);
  const out: ServicePort = { port: o.port('port'), targetPort: o.port('targetPort') };
  const name = o.optString('name', rules.dnsLabel);
  if (name !== undefined) out.name = name;
  const appProtocol = o.optString('appProtocol', rules.noSpace);
  if (appProtocol !== undefined) out.appProtocol = appProtocol;
  return out;
}

function validatePolicy(v: unknown, unknown: UnknownKeys): AuthorizationPolicyRecord {
  const o = new Obj(v, '', ['name', 'namespace', 'scope', 'selector', 'targetRefs', 'action', 'rules', 'invalid'], unknown);
  const out: AuthorizationPolicyRecord = {
    name: o.string('name', rules.dnsSubdomain),
    namespace: o.string('namespace', rules.dnsLabel),
    scope: o.oneOf('scope', ['GLOBAL', 'NAMESPACE', 'WORKLOAD_SELECTOR'] as const),
    action: o.oneOf('action', ['ALLOW', 'DENY', 'AUDIT'] as const),
    rules: o.array('rules', (x, p) => policyRule(x, p, unknown)),
  };
  const selector = o.optLabels('selector');
  const targetRefs = o.optArray('targetRefs', (x, p) => policyTargetRef(x, p, unknown));
  if (targetRefs !== undefined) {
    // Waypoint-bound: the waypoint finds it by its targets, the ztunnel ignores it.
    if (targetRefs.length === 0 || targetRefs.length > 16) throw new FieldError('targetRefs', `must list 1 to 16 targets, got ${targetRefs.length}`);
    if (out.scope !== 'NAMESPACE') throw new FieldError('scope', `must be NAMESPACE when targetRefs is set (got ${out.scope})`);
    if (selector !== undefined) throw new FieldError('selector', 'is not allowed with targetRefs (a policy is bound either to workloads or to Services/waypoints)');
    out.targetRefs = targetRefs;
  } else {
    if (out.action === 'AUDIT') throw new FieldError('action', 'AUDIT is enforced by waypoints only: bind the policy with targetRefs');
    const l7 = l7Field(out.rules);
    if (l7) {
      throw new FieldError(l7, 'is an L7 attribute, which only a waypoint can check, and this policy has no targetRefs (the ztunnel enforces it at L4): '
        + 'bind it to a Service or waypoint with targetRefs');
    }
  }
  if (out.scope === 'GLOBAL' && out.namespace !== ROOT_NAMESPACE) {
    throw new FieldError('scope', `GLOBAL is only allowed for policies in the root namespace ${ROOT_NAMESPACE}`);
  }
  if (out.scope === 'WORKLOAD_SELECTOR') {
    if (selector === undefined || Object.keys(selector).length === 0) {
      throw new FieldError('selector', 'is required and must not be empty when scope is WORKLOAD_SELECTOR');
    }
    out.selector = selector;
  } else if (selector !== undefined) {
    throw new FieldError('selector', `is only allowed when scope is WORKLOAD_SELECTOR (scope is ${out.scope})`);
  }
  if (o.has('invalid')) out.invalid = policyInvalid(o.o.invalid, 'invalid', unknown);
  return out;
}

function policyTargetRef(v: unknown, path: string, unknown: UnknownKeys): PolicyTargetRef {
  const o = new Obj(v, path, ['kind', 'name'], unknown);
  return { kind: o.oneOf('kind', ['Service', 'Gateway'] as const), name: o.string('name', rules.dnsSubdomain) };
}

/** The path of the first L7 field in the rules (`rules[0].clauses[1].matches[0].paths`), if any. */
function l7Field(ruleList: PolicyRule[]): string | undefined {
  for (const [r, rule] of ruleList.entries()) {
    for (const [c, clause] of rule.clauses.entries()) {
      for (const [m, match] of clause.matches.entries()) {
        const k = L7_MATCH_KEYS.find((key) => (match[key]?.length ?? 0) > 0);
        if (k) return `rules[${r}].clauses[${c}].matches[${m}].${k}`;
      }
    }
  }
  return undefined;
}

/** The reason is capped: it comes from user input and is shown in status, logs and tables. */
function policyInvalid(v: unknown, path: string, unknown: UnknownKeys): PolicyInvalid {
  const o = new Obj(v, path, ['state', 'reason'], unknown);
  return {
    state: o.oneOf('state', ['LastGood', 'FailClosed'] as const),
    reason: o.string('reason', (s) => (s.length === 0 ? 'must not be empty' : s.length > 1024 ? 'must be at most 1024 characters' : undefined)),
  };
}

function policyRule(v: unknown, path: string, unknown: UnknownKeys): PolicyRule {
  const o = new Obj(v, path, ['clauses'], unknown);
  return { clauses: o.array('clauses', (x, p) => policyClause(x, p, unknown)) };
}

function policyClause(v: unknown, path: string, unknown: UnknownKeys): PolicyClause {
  const o = new Obj(v, path, ['matches'], unknown);
  return { matches: o.array('matches', (x, p) => policyMatch(x, p, unknown)) };
}

const MATCH_STRING_FIELDS = {
  namespaces: rules.dnsLabel,
  notNamespaces: rules.dnsLabel,
  principals: rules.spiffe,
  notPrincipals: rules.spiffe,
  serviceAccounts: rules.noSpace,
  notServiceAccounts: rules.noSpace,
  sourceIps: rules.ipOrCidr,
  notSourceIps: rules.ipOrCidr,
  destinationIps: rules.ipOrCidr,
  notDestinationIps: rules.ipOrCidr,
} as const;
const MATCH_PORT_FIELDS = ['destinationPorts', 'notDestinationPorts'] as const;
/** Istio's string forms: exact, `pre*`, `*suf`, or `*` (present). A `*` elsewhere would be read literally: refuse it. */
const wildcard = (inner: StringRule): StringRule => (s) => {
  if (s !== '*' && s.slice(1, -1).includes('*')) return 'may hold `*` only as its first or last character (exact, prefix*, *suffix or *)';
  return inner(s);
};
/** The checks of the L7 string fields, by field; the Istio translation reads its values with them too, to name its own field path. */
export const L7_STRING_FIELDS = {
  methods: wildcard(rules.noSpace),
  notMethods: wildcard(rules.noSpace),
  paths: wildcard((s) => (s.startsWith('/') || s.startsWith('*') ? rules.noSpace(s) : 'must start with / (or be a *suffix form)')),
  notPaths: wildcard((s) => (s.startsWith('/') || s.startsWith('*') ? rules.noSpace(s) : 'must start with / (or be a *suffix form)')),
  hosts: wildcard(rules.noSpace),
  notHosts: wildcard(rules.noSpace),
} as const;
/** A header value condition: any text, with `*` only as its first or last character. */
export const L7_HEADER_VALUE: StringRule = wildcard(rules.nonEmpty);
const HEADER_FIELDS = ['requestHeaders', 'notRequestHeaders'] as const;
const MATCH_FIELDS = [...Object.keys(MATCH_STRING_FIELDS), ...MATCH_PORT_FIELDS, ...Object.keys(L7_STRING_FIELDS), ...HEADER_FIELDS];

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function headerMatch(v: unknown, path: string, unknown: UnknownKeys): PolicyHeaderMatch {
  const o = new Obj(v, path, ['name', 'values'], unknown);
  return {
    name: o.string('name', (s) => (HEADER_NAME.test(s) && s.length <= 253 ? undefined : 'must be a lower-case HTTP header name')),
    values: o.array('values', (x, p) => checkString(x, p, L7_HEADER_VALUE)),
  };
}

function policyMatch(v: unknown, path: string, unknown: UnknownKeys): PolicyMatch {
  const o = new Obj(v, path, MATCH_FIELDS, unknown);
  const out: PolicyMatch = {};
  for (const [field, rule] of Object.entries(MATCH_STRING_FIELDS) as [keyof typeof MATCH_STRING_FIELDS, typeof rules.nonEmpty][]) {
    const values = o.optArray(field, (x, p) => checkString(x, p, rule));
    if (values !== undefined) out[field] = values;
  }
  for (const field of MATCH_PORT_FIELDS) {
    const values = o.optArray(field, checkPort);
    if (values !== undefined) out[field] = values;
  }
  for (const [field, rule] of Object.entries(L7_STRING_FIELDS) as [keyof typeof L7_STRING_FIELDS, StringRule][]) {
    const values = o.optArray(field, (x, p) => checkString(x, p, rule));
    if (values !== undefined) out[field] = values;
  }
  for (const field of HEADER_FIELDS) {
    const values = o.optArray(field, (x, p) => headerMatch(x, p, unknown));
    if (values !== undefined) out[field] = values;
  }
  return out;
}

function validatePeerAuth(v: unknown, unknown: UnknownKeys): PeerAuthenticationRecord {
  const o = new Obj(v, '', ['name', 'namespace', 'selector', 'mode'], unknown);
  const out: PeerAuthenticationRecord = {
    name: o.string('name', rules.dnsSubdomain),
    namespace: o.string('namespace', rules.dnsLabel),
    mode: o.oneOf('mode', ['STRICT', 'PERMISSIVE'] as const),
  };
  const selector = o.optLabels('selector');
  if (selector !== undefined) out.selector = selector;
  return out;
}
