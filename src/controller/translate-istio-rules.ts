/**
 * Istio's AuthorizationPolicy rule syntax (security.istio.io: `from`, `to`, `when`) →
 * the registry's rules (registry/checks.ts), for istioPolicyRecord (translate-istio.ts).
 */
import type { StringRule } from '../registry/checks';
import { L7_HEADER_VALUE, L7_STRING_FIELDS } from '../registry/validate';

/**
 * Istio's AuthorizationPolicy rule syntax (security.istio.io: `from`, `to`, `when`) →
 * the registry's rules, L4 attributes only, as Istio's ztunnel enforces them: a rule's
 * `from` becomes one clause whose matches are its sources (any may hold), `to` one
 * clause of its operations, each `when` condition one clause; the clauses must all
 * hold. Principals gain the `spiffe://` prefix Istio leaves out. What an L4 proxy
 * cannot check (methods, paths, hosts, request principals, wildcards) is refused by
 * field rather than dropped: dropping it would widen an ALLOW or narrow a DENY.
 */
export function istioPolicyRules(rules: unknown, opts: { waypoint?: boolean } = {}): { ok: true; rules: unknown[] } | { ok: false; field: string; message: string } {
  try {
    if (rules === undefined || rules === null) return { ok: true, rules: [] };
    return { ok: true, rules: list(rules, 'spec.rules').map((r, i) => istioRule(r, `spec.rules[${i}]`, opts.waypoint ?? false)) };
  } catch (err) {
    if (err instanceof IstioFieldError) return { ok: false, field: err.field, message: `${err.field} ${err.problem}` };
    throw err;
  }
}

class IstioFieldError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`${field} ${problem}`);
  }
}

/**
 * Istio enforces an L7 rule on a policy without targetRefs nowhere in ambient mode, and
 * says nothing (users lose hours to it): Weft refuses it and says what to do instead.
 */
const L7_ONLY = 'is an L7 attribute; without targetRefs this AuthorizationPolicy is enforced at L4 by the ztunnel, which cannot check it. '
  + 'Put a waypoint in front of the workloads (a waypoint Gateway; on the lab: weft waypoint add <namespace>/<name> --node <node>, then weft namespace use-waypoint <namespace> <name>) '
  + 'and bind the policy with targetRefs: [{group: "", kind: Service, name: <service>}] instead of selector';
const NO_JWT = 'needs request authentication (JWT), which Weft does not have; remove it';

function obj(v: unknown, path: string, known: readonly string[], l7: readonly string[] = []): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new IstioFieldError(path, 'must be an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k === 'requestPrincipals' || k === 'notRequestPrincipals') throw new IstioFieldError(`${path}.${k}`, NO_JWT);
    if (l7.includes(k)) throw new IstioFieldError(`${path}.${k}`, L7_ONLY);
    if (!known.includes(k)) throw new IstioFieldError(`${path}.${k}`, `is not a field Weft reads here (expected ${known.join(', ')})`);
  }
  return o;
}

function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new IstioFieldError(path, 'must be a list');
  return v;
}

function strings(v: unknown, path: string, map: (s: string) => string = (s) => s): string[] {
  return list(v, path).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new IstioFieldError(`${path}[${i}]`, 'must be a non-empty string');
    if (x.includes('*')) throw new IstioFieldError(`${path}[${i}]`, `is ${JSON.stringify(x)}: wildcards are not supported by Weft; list the exact values`);
    return map(x);
  });
}

function ports(v: unknown, path: string): number[] {
  return strings(v, path).map((s, i) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw new IstioFieldError(`${path}[${i}]`, `is ${JSON.stringify(s)}: must be a port number 1-65535`);
    return n;
  });
}

const spiffe = (p: string): string => (p.startsWith('spiffe://') ? p : `spiffe://${p}`);

/** L7 values take Istio's string forms (exact, `prefix*`, `*suffix`, `*`), checked as the registry checks them (`rule`). */
function patterns(v: unknown, path: string, rule: StringRule = L7_STRING_FIELDS.hosts): string[] {
  return list(v, path).map((x, i) => {
    if (typeof x !== 'string' || x === '') throw new IstioFieldError(`${path}[${i}]`, 'must be a non-empty string');
    const problem = rule(x);
    if (problem) throw new IstioFieldError(`${path}[${i}]`, problem);
    return x;
  });
}
const pathPatterns = (v: unknown, p: string) => patterns(v, p, L7_STRING_FIELDS.paths);

/** Istio source field → registry match field (and how to read its values). */
const SOURCE_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  principals: ['principals', (v, p) => strings(v, p, spiffe)],
  notPrincipals: ['notPrincipals', (v, p) => strings(v, p, spiffe)],
  namespaces: ['namespaces', strings],
  notNamespaces: ['notNamespaces', strings],
  ipBlocks: ['sourceIps', strings],
  notIpBlocks: ['notSourceIps', strings],
  remoteIpBlocks: ['sourceIps', strings],
  notRemoteIpBlocks: ['notSourceIps', strings],
  serviceAccounts: ['serviceAccounts', strings],
  notServiceAccounts: ['notServiceAccounts', strings],
};
const OPERATION_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  ports: ['destinationPorts', ports],
  notPorts: ['notDestinationPorts', ports],
};
/** Read only for a waypoint-bound policy (targetRefs). */
const L7_OPERATION_FIELDS: Record<string, [string, (v: unknown, p: string) => unknown[]]> = {
  methods: ['methods', patterns],
  notMethods: ['notMethods', patterns],
  paths: ['paths', pathPatterns],
  notPaths: ['notPaths', pathPatterns],
  hosts: ['hosts', patterns],
  notHosts: ['notHosts', patterns],
};
const REQUEST_HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;
const WHEN_KEYS: Record<string, [string, string, (v: unknown, p: string) => unknown[]]> = {
  'source.ip': ['sourceIps', 'notSourceIps', strings],
  'remote.ip': ['sourceIps', 'notSourceIps', strings],
  'source.namespace': ['namespaces', 'notNamespaces', strings],
  'source.principal': ['principals', 'notPrincipals', (v, p) => strings(v, p, spiffe)],
  'destination.ip': ['destinationIps', 'notDestinationIps', strings],
  'destination.port': ['destinationPorts', 'notDestinationPorts', ports],
};

function match(o: Record<string, unknown>, path: string, fields: typeof SOURCE_FIELDS): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [k, v] of Object.entries(o)) {
    const [field, read] = fields[k]!;
    out[field] = [...(out[field] ?? []), ...read(v, `${path}.${k}`)];
  }
  return out;
}

function istioRule(v: unknown, path: string, waypoint: boolean): { clauses: { matches: Record<string, unknown[]>[] }[] } {
  const r = obj(v, path, ['from', 'to', 'when']);
  const clauses: { matches: Record<string, unknown[]>[] }[] = [];
  if (r.from !== undefined) {
    clauses.push({
      matches: list(r.from, `${path}.from`).map((f, i) => {
        const p = `${path}.from[${i}]`;
        const src = obj(obj(f, p, ['source']).source, `${p}.source`, Object.keys(SOURCE_FIELDS));
        return match(src, `${p}.source`, SOURCE_FIELDS);
      }),
    });
  }
  if (r.to !== undefined) {
    clauses.push({
      matches: list(r.to, `${path}.to`).map((t, i) => {
        const p = `${path}.to[${i}]`;
        const fields = waypoint ? { ...OPERATION_FIELDS, ...L7_OPERATION_FIELDS } : OPERATION_FIELDS;
        const op = obj(obj(t, p, ['operation']).operation, `${p}.operation`, Object.keys(fields), waypoint ? [] : Object.keys(L7_OPERATION_FIELDS));
        return match(op, `${p}.operation`, fields);
      }),
    });
  }
  if (r.when !== undefined) {
    list(r.when, `${path}.when`).forEach((w, i) => {
      const p = `${path}.when[${i}]`;
      const c = obj(w, p, ['key', 'values', 'notValues']);
      const header = typeof c.key === 'string' ? REQUEST_HEADER_KEY.exec(c.key) : null;
      if (header) {
        if (!waypoint) throw new IstioFieldError(`${p}.key`, `${c.key} ${L7_ONLY}`);
        if (c.values === undefined && c.notValues === undefined) throw new IstioFieldError(p, 'needs values or notValues');
        const name = header[1]!.toLowerCase();
        const m: Record<string, unknown[]> = {};
        if (c.values !== undefined) m.requestHeaders = [{ name, values: patterns(c.values, `${p}.values`, L7_HEADER_VALUE) }];
        if (c.notValues !== undefined) m.notRequestHeaders = [{ name, values: patterns(c.notValues, `${p}.notValues`, L7_HEADER_VALUE) }];
        clauses.push({ matches: [m] });
        return;
      }
      const spec = typeof c.key === 'string' ? WHEN_KEYS[c.key] : undefined;
      if (!spec) {
        const l7 = waypoint ? ', request.headers[<name>]' : ' (L4 attributes; request.headers[<name>] on a policy bound with targetRefs)';
        throw new IstioFieldError(`${p}.key`, `is ${JSON.stringify(c.key ?? null)}; Weft reads ${Object.keys(WHEN_KEYS).join(', ')}${l7}`);
      }
      const [field, notField, read] = spec;
      if (c.values === undefined && c.notValues === undefined) throw new IstioFieldError(p, 'needs values or notValues');
      const m: Record<string, unknown[]> = {};
      if (c.values !== undefined) m[field] = read(c.values, `${p}.values`);
      if (c.notValues !== undefined) m[notField] = read(c.notValues, `${p}.notValues`);
      clauses.push({ matches: [m] });
    });
  }
  return { clauses };
}
