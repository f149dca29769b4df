/**
 * `weft apply` and `weft delete` against the registry (the lab, or --redis-url): the
 * checked objects become ONE RegistryStore.apply call, i.e. one revision and one
 * change-stream entry, so followers see the whole batch or none of it. The call is a
 * compare-and-set on the revision the created/configured/unchanged verdicts were
 * computed from: a concurrent writer makes it re-read and decide again, never write
 * over a change it did not see.
 */
import { stableStringify } from '../controller/stable-json';
import { WeftError, isWeftError } from '../lib/errors';
import type { KubeObject } from '../k8s/client';
import type { ChangeInput, RegistryStore } from '../registry/store';
import { recordKey, type AuthorizationPolicyRecord, type Kind } from '../registry/types';
import { validateRecord } from '../registry/validate';
import { refuseUnboundPolicies } from './apply-authz';
import type { ManifestObject } from './manifest-objects';

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyResult {
  /** `httproute.gateway.networking.k8s.io/canary` */
  ref: string;
  kind: string;
  namespace: string;
  name: string;
  action: ApplyAction;
  /** The object as it now stands (what -o json|yaml prints). */
  object: KubeObject;
}

export interface ApplyOutcome {
  results: ApplyResult[];
  /** Registry: the revision written (or, when nothing changed or on a dry run, the one read). */
  revision?: number;
  dryRun: boolean;
}

export type DeleteAction = 'deleted' | 'not found';

export interface DeleteResult {
  ref: string;
  kind: string;
  namespace: string;
  name: string;
  action: DeleteAction;
}

export interface DeleteOutcome {
  results: DeleteResult[];
  revision?: number;
  dryRun: boolean;
}

/** Re-reads and decides again this many times when another writer moves the registry meanwhile. */
export const APPLY_CAS_ATTEMPTS = 10;

/** Kinds stored as `{creationTimestamp, spec}`: the oldest wins a tie (routes) or a Service (TrafficPolicy). */
const ROUTE_KINDS: readonly Kind[] = ['httproute', 'grpcroute', 'trafficpolicy'];

/** Kubernetes' creationTimestamp form: RFC 3339, whole seconds, UTC. */
export function k8sTimestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

type Existing = Map<string, Record<string, unknown>>;

async function readExisting(store: RegistryStore): Promise<{ revision: number; byKind: Map<Kind, Existing> }> {
  const snap = await store.snapshot();
  const byKind = new Map<Kind, Existing>();
  for (const [kind, records] of Object.entries(snap.records) as unknown as [Kind, Record<string, unknown>[]][]) {
    // Keyed as the registry keys them (a namespace or node by its name): apply-authz.ts looks namespaces up.
    byKind.set(kind, new Map(records.map((r) => [recordKey(kind, r as never), r])));
  }
  return { revision: snap.revision, byKind };
}

function existingOf(state: { byKind: Map<Kind, Existing> }, o: ManifestObject): Record<string, unknown> | undefined {
  return state.byKind.get(o.info.registryKind)?.get(o.key);
}

/** Runs `attempt` against a fresh read until its compare-and-set write lands. */
async function withCas<T>(store: RegistryStore, attempt: (state: Awaited<ReturnType<typeof readExisting>>) => Promise<T>): Promise<T> {
  for (let i = 0; i < APPLY_CAS_ATTEMPTS; i++) {
    const state = await readExisting(store);
    try {
      return await attempt(state);
    } catch (err) {
      if (!isWeftError(err, 'WEFT_REGISTRY_CONFLICT')) throw err;
    }
  }
  throw new WeftError('WEFT_REGISTRY_CONFLICT',
    `the registry kept changing under this apply (${APPLY_CAS_ATTEMPTS} attempts); nothing was written by it, run it again`);
}

export function applyToRegistry(store: RegistryStore, objects: readonly ManifestObject[],
  opts: { dryRun: boolean; now?: () => Date }): Promise<ApplyOutcome> {
  const now = opts.now ?? (() => new Date());
  return withCas(store, async (state) => {
    const created = k8sTimestamp(now());
    const results: ApplyResult[] = [];
    const changes: ChangeInput[] = [];
    for (const o of objects) {
      const existing = existingOf(state, o);
      // A route keeps its first creationTimestamp: the oldest route wins precedence ties.
      const ts = typeof existing?.creationTimestamp === 'string' ? existing.creationTimestamp : created;
      const change = o.change!(ts);
      if (change.op !== 'put') throw new Error('apply builds puts only');
      const record = validateRecord(change.kind, change.record, { unknownKeys: 'reject' }) as unknown as Record<string, unknown>;
      const action: ApplyAction = !existing ? 'created'
        : stableStringify(existing) === stableStringify(record) ? 'unchanged' : 'configured';
      if (action !== 'unchanged') changes.push(change);
      results.push({ ref: o.ref, kind: o.info.kind, namespace: o.namespace, name: o.name, action, object: resultingObject(o, record) });
    }
    refuseUnboundPolicies(
      changes.flatMap((c) => (c.op === 'put' && c.kind === 'policy' ? [c.record as AuthorizationPolicyRecord] : [])),
      state.byKind,
      new Set(changes.flatMap((c) => (c.op === 'put' && c.kind === 'waypoint' ? [`${c.record.namespace}/${c.record.name}`] : []))),
    );
    if (opts.dryRun || changes.length === 0) return { results, revision: state.revision, dryRun: opts.dryRun };
    const revision = await store.apply(changes, { expectedRevision: state.revision });
    return { results, revision, dryRun: false };
  });
}

/** Routes and TrafficPolicies show the validated spec (defaults filled in) and their creationTimestamp; other kinds the object as given. */
function resultingObject(o: ManifestObject, record: Record<string, unknown>): KubeObject {
  if (!ROUTE_KINDS.includes(o.info.registryKind)) return o.object;
  return {
    ...o.object,
    metadata: { ...o.object.metadata, creationTimestamp: record.creationTimestamp },
    spec: record.spec,
  };
}

export function deleteFromRegistry(store: RegistryStore, objects: readonly ManifestObject[], opts: { dryRun: boolean }): Promise<DeleteOutcome> {
  return withCas(store, async (state) => {
    const results: DeleteResult[] = [];
    const changes: ChangeInput[] = [];
    for (const o of objects) {
      const found = existingOf(state, o) !== undefined;
      if (found) changes.push({ op: 'delete', kind: o.info.registryKind, key: o.key });
      results.push({ ref: o.ref, kind: o.info.kind, namespace: o.namespace, name: o.name, action: found ? 'deleted' : 'not found' });
    }
    if (opts.dryRun || changes.length === 0) return { results, revision: state.revision, dryRun: opts.dryRun };
    const revision = await store.apply(changes, { expectedRevision: state.revision });
    return { results, revision, dryRun: false };
  });
}
