/**
 * Edge validation of a TrafficPolicy: the envelope (apiVersion, kind, metadata), the
 * targetRefs, and each mechanism's section through its own module's validateX (one
 * module per section, see spec.ts). `weft apply`, the controller's mirror of the CRD and
 * the registry's record check all call validateTrafficPolicySpec, so the lab and a
 * cluster accept exactly the same policies. Every problem names its full field path
 * (`spec.outlierDetection.maxEjectionPercent: ...`).
 */
import { envelope, type GatewayValidateOptions } from '../gateway/validate';
import { FieldError, Obj, join, rules, type UnknownKeys } from '../registry/checks';
import { validateLoadBalancer } from './balance-spec';
import { validateFaults } from './fault-spec';
import { validateOutlierDetection } from './outlier-spec';
import { validateConnectionPool } from './pool-spec';
import { validateRateLimit } from './rate-limit-spec';
import { validateRetry } from './retry-spec';
import { validateLoadShedding } from './shedding-spec';
import {
  TRAFFIC_POLICY_API_VERSION,
  type TrafficPolicySpec,
  type TrafficPolicyTargetRef,
} from './spec';

export const TRAFFIC_POLICY_KIND = 'TrafficPolicy';
/** Gateway API's bound on targetRefs of a policy (LocalPolicyTargetReference lists). */
export const MAX_TARGET_REFS = 16;

/** Each optional section: its key under spec and its module's validator. */
const SECTIONS = {
  loadBalancer: validateLoadBalancer,
  connectionPool: validateConnectionPool,
  outlierDetection: validateOutlierDetection,
  retry: validateRetry,
  faults: validateFaults,
  rateLimit: validateRateLimit,
  loadShedding: validateLoadShedding,
} as const satisfies { [K in Exclude<keyof TrafficPolicySpec, 'targetRefs'>]-?: (v: unknown, path: string, u: UnknownKeys) => TrafficPolicySpec[K] };

/** Every field of spec: what the CRD schema must list (test/manifests.test.ts checks). */
export const TRAFFIC_POLICY_SPEC_KEYS: readonly string[] = ['targetRefs', ...Object.keys(SECTIONS)];

/** Validates `spec` at `path` (fresh object, known keys only, each section's defaults filled in); throws FieldError. */
export function validateTrafficPolicySpec(v: unknown, path: string, unknown: UnknownKeys): TrafficPolicySpec {
  const o = new Obj(v, path, TRAFFIC_POLICY_SPEC_KEYS, unknown);
  const targetRefs = o.array('targetRefs', (x, p) => targetRef(x, p, unknown));
  const refsPath = join(path, 'targetRefs');
  if (targetRefs.length === 0) throw new FieldError(refsPath, 'must name at least one Service (group "", kind Service, name)');
  if (targetRefs.length > MAX_TARGET_REFS) throw new FieldError(refsPath, `must have at most ${MAX_TARGET_REFS} entries, got ${targetRefs.length}`);
  const seen = new Map<string, number>();
  targetRefs.forEach((r, i) => {
    const first = seen.get(r.name);
    if (first !== undefined) throw new FieldError(`${refsPath}[${i}].name`, `${r.name} is already targeted by ${refsPath}[${first}]; name each Service once`);
    seen.set(r.name, i);
  });
  const out: TrafficPolicySpec = { targetRefs };
  for (const [key, validate] of Object.entries(SECTIONS) as [keyof typeof SECTIONS, (v: unknown, p: string, u: UnknownKeys) => never][]) {
    if (o.has(key)) (out as unknown as Record<string, unknown>)[key] = validate(o.o[key], join(path, key), unknown);
  }
  return out;
}

/**
 * A Service in the policy's own namespace: Gateway API's LocalPolicyTargetReference
 * (group, kind, name; no namespace, so a policy cannot reach across namespaces). A
 * left-out group means the core group "", as for a Service parentRef.
 */
function targetRef(v: unknown, path: string, unknown: UnknownKeys): TrafficPolicyTargetRef {
  const o = new Obj(v, path, ['group', 'kind', 'name'], unknown);
  const group = o.has('group') ? o.o.group : '';
  if (group !== '' && group !== 'core') throw new FieldError(join(path, 'group'), `must be "" (the core group: a TrafficPolicy targets Services), got ${JSON.stringify(group)}`);
  const kind = o.string('kind');
  if (kind !== 'Service') throw new FieldError(join(path, 'kind'), `must be Service (a TrafficPolicy applies to a Service's traffic at its waypoint), got ${JSON.stringify(kind)}`);
  return { group: '', kind: 'Service', name: o.string('name', rules.dnsLabel) };
}

/** A whole TrafficPolicy object as `weft apply` reads it and the controller mirrors it. */
export interface TrafficPolicyObject {
  name: string;
  namespace: string;
  /** From metadata when given (a cluster object); `weft apply` sets its own on create. */
  creationTimestamp?: string;
  spec: TrafficPolicySpec;
}

/** Validates a whole object (apiVersion networking.weft.io/v1alpha1, kind TrafficPolicy); throws FieldError. */
export function validateTrafficPolicy(obj: unknown, opts: GatewayValidateOptions = {}): TrafficPolicyObject {
  const { o, meta } = envelope(obj, TRAFFIC_POLICY_KIND, opts, rules.dnsSubdomain, [TRAFFIC_POLICY_API_VERSION]);
  const out: TrafficPolicyObject = {
    name: meta.name,
    namespace: meta.namespace,
    spec: validateTrafficPolicySpec(o.o.spec, 'spec', opts.unknownKeys ?? 'reject'),
  };
  if (meta.creationTimestamp !== undefined) out.creationTimestamp = meta.creationTimestamp;
  return out;
}
