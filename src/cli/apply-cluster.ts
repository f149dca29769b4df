/**
 * `weft apply` and `weft delete` on a cluster: the objects go to the API server, as
 * kubectl would send them; the controller mirrors them into the registry (a write to
 * Redis would be undone by it). Every document was checked locally first, with the
 * same validators the lab uses, so a bad manifest sends nothing. The API server has
 * no multi-object transaction: objects are written one by one, in manifest order.
 *
 * Create-or-replace rather than server-side apply: GET; absent → POST (created);
 * present → compare the record it would become with the record the stored object
 * becomes (so the server's defaulting is not a change), plus the manifest's labels and
 * annotations; different → PUT with the read resourceVersion (configured), retried
 * on a 409 conflict.
 */
import { stableStringify } from '../controller/stable-json';
import { WeftError } from '../lib/errors';
import { k8sStatus, type KubeObject } from '../k8s/client';
import type { ApplyAction, ApplyOutcome, ApplyResult, DeleteOutcome, DeleteResult } from './apply-registry';
import type { ClusterSession } from './cluster';
import { parseObjects, type ManifestObject } from './manifest-objects';

const CONFLICT_ATTEMPTS = 5;
/** Any fixed time: both sides of a comparison get the same one, so only the content counts. */
const SAME_TIME = '2000-01-01T00:00:00Z';

function objectPath(o: ManifestObject, withName: boolean): string {
  return `/apis/${o.apiVersion}/namespaces/${encodeURIComponent(o.namespace)}/${o.info.plural}${withName ? `/${encodeURIComponent(o.name)}` : ''}`;
}

/** The registry change a stored object would become, or undefined when it no longer passes validation. */
function recordOf(o: ManifestObject, stored: KubeObject): string | undefined {
  try {
    const [parsed] = parseObjects([{ source: 'server', index: '1', object: { ...stored, apiVersion: o.apiVersion, kind: o.info.kind } }],
      { defaultNamespace: o.namespace });
    return stableStringify(parsed!.change!(SAME_TIME));
  } catch {
    return undefined;
  }
}

function metaSubset(want: Record<string, string> | undefined, have: Record<string, string> | undefined): boolean {
  return Object.entries(want ?? {}).every(([k, v]) => have?.[k] === v);
}

async function getOrUndefined(cluster: ClusterSession, o: ManifestObject): Promise<KubeObject | undefined> {
  try {
    return await cluster.client.get(objectPath(o, true), { timeoutMs: 10_000 });
  } catch (err) {
    if (k8sStatus(err) === 404) return undefined;
    throw cluster.refusal(err, `read ${o.ref} in namespace ${o.namespace}`);
  }
}

/** A 404 on the collection: the API server does not serve this kind (CRDs missing). */
function notServed(cluster: ClusterSession, o: ManifestObject, err: unknown): WeftError {
  if (k8sStatus(err) !== 404) return cluster.refusal(err, `write ${o.ref} in namespace ${o.namespace}`);
  const crds = o.apiVersion.startsWith('gateway.networking.k8s.io/') ? 'the Gateway API CRDs (standard channel, v1)' : `the ${o.apiVersion} CRDs`;
  return new WeftError('WEFT_K8S_REQUEST_FAILED',
    `the API server of ${cluster.target.source} does not serve ${o.info.plural}.${o.apiVersion} (or namespace ${o.namespace} does not exist); install ${crds} and check the namespace`,
    { cause: err, details: { status: 404 } });
}

async function applyOne(cluster: ClusterSession, o: ManifestObject, dryRun: boolean): Promise<ApplyResult> {
  const result = (action: ApplyAction, object: KubeObject): ApplyResult =>
    ({ ref: o.ref, kind: o.info.kind, namespace: o.namespace, name: o.name, action, object });
  for (let attempt = 0; attempt < CONFLICT_ATTEMPTS; attempt++) {
    const existing = await getOrUndefined(cluster, o);
    if (!existing) {
      if (dryRun) return result('created', o.object);
      try {
        return result('created', await cluster.client.create(objectPath(o, false), o.object, { timeoutMs: 10_000 }));
      } catch (err) {
        if (k8sStatus(err) === 409) continue;
        throw notServed(cluster, o, err);
      }
    }
    const want = o.object.metadata;
    const same = recordOf(o, existing) === stableStringify(o.change!(SAME_TIME))
      && metaSubset(want.labels, existing.metadata.labels) && metaSubset(want.annotations, existing.metadata.annotations);
    if (same) return result('unchanged', existing);
    const next: KubeObject = {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata.labels, ...want.labels },
        annotations: { ...existing.metadata.annotations, ...want.annotations },
      },
      spec: o.object.spec,
    };
    if (dryRun) return result('configured', next);
    try {
      return result('configured', await cluster.client.update(objectPath(o, true), next, { timeoutMs: 10_000 }));
    } catch (err) {
      if (k8sStatus(err) === 409) continue;
      throw cluster.refusal(err, `update ${o.ref} in namespace ${o.namespace}`);
    }
  }
  throw new WeftError('WEFT_K8S_REQUEST_FAILED', `${o.ref} in namespace ${o.namespace} kept changing under this apply (${CONFLICT_ATTEMPTS} conflicts); run it again`);
}

export async function applyToCluster(cluster: ClusterSession, objects: readonly ManifestObject[], opts: { dryRun: boolean }): Promise<ApplyOutcome> {
  const results: ApplyResult[] = [];
  for (const o of objects) results.push(await applyOne(cluster, o, opts.dryRun));
  return { results, dryRun: opts.dryRun };
}

export async function deleteFromCluster(cluster: ClusterSession, objects: readonly ManifestObject[], opts: { dryRun: boolean }): Promise<DeleteOutcome> {
  const results: DeleteResult[] = [];
  for (const o of objects) {
    const base = { ref: o.ref, kind: o.info.kind, namespace: o.namespace, name: o.name };
    if (opts.dryRun) {
      results.push({ ...base, action: (await getOrUndefined(cluster, o)) ? 'deleted' : 'not found' });
      continue;
    }
    try {
      await cluster.client.delete(objectPath(o, true), { timeoutMs: 10_000 });
      results.push({ ...base, action: 'deleted' });
    } catch (err) {
      if (k8sStatus(err) !== 404) throw cluster.refusal(err, `delete ${o.ref} in namespace ${o.namespace}`);
      results.push({ ...base, action: 'not found' });
    }
  }
  return { results, dryRun: opts.dryRun };
}
