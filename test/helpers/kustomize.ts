/**
 * A small kustomize renderer: the subset daemonset/ uses (resources as files or
 * directories with their own kustomization, namespace, images). It lets the manifest
 * tests run without kubectl; when kubectl is there, the tests check that both renders
 * agree. Anything outside the subset is refused by name, so a new kustomize feature in
 * daemonset/ fails here loudly instead of rendering differently.
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import YAML from 'yaml';

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
};

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'images']);

/** Kinds without a namespace among those a mesh install could carry. */
export const CLUSTER_SCOPED = new Set([
  'Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'PriorityClass',
  'StorageClass', 'PersistentVolume', 'Node', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration',
]);

interface ImageRule { name: string; newName?: string; newTag?: string; digest?: string }

export function parseYamlDocuments(text: string, source: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`${source}: a document is not a mapping`);
    out.push(value as K8sObject);
  }
  return out;
}

export function renderKustomization(dir: string): K8sObject[] {
  const file = join(dir, 'kustomization.yaml');
  const k = YAML.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key)) throw new Error(`${file}: "${key}" is outside what test/helpers/kustomize.ts renders; extend it (and keep kubectl's render equal)`);
  }
  const objects: K8sObject[] = [];
  for (const entry of (k.resources as string[] | undefined) ?? []) {
    const path = resolve(dir, entry);
    if (statSync(path).isDirectory()) objects.push(...renderKustomization(path));
    else objects.push(...parseYamlDocuments(readFileSync(path, 'utf8'), path));
  }
  const namespace = k.namespace as string | undefined;
  if (namespace !== undefined) {
    for (const o of objects) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = namespace;
  }
  for (const rule of (k.images as ImageRule[] | undefined) ?? []) {
    for (const o of objects) for (const c of podContainers(o)) c.image = applyImage(c.image, rule);
  }
  return objects;
}

function applyImage(image: unknown, rule: ImageRule): unknown {
  if (typeof image !== 'string') return image;
  const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(image)!;
  if (m[1] !== rule.name) return image;
  const name = rule.newName ?? m[1];
  if (rule.digest) return `${name}@${rule.digest}`;
  const tag = rule.newTag ?? m[2];
  return tag ? `${name}:${tag}` : name;
}

/** The pod template of a workload object, or undefined for other kinds. */
export function podSpec(o: K8sObject): Record<string, unknown> | undefined {
  const spec = o.spec as { template?: { spec?: Record<string, unknown> } } | undefined;
  if (!['Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'ReplicaSet'].includes(o.kind)) return undefined;
  return spec?.template?.spec;
}

export type Container = Record<string, unknown> & { name: string; image?: unknown };

export function podContainers(o: K8sObject): Container[] {
  const ps = podSpec(o);
  if (!ps) return [];
  return [...((ps.initContainers as Container[] | undefined) ?? []), ...((ps.containers as Container[] | undefined) ?? [])];
}

/** `apiVersion/kind/namespace/name`: what identifies an object in a render. */
export function objectId(o: K8sObject): string {
  return `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

/** kubectl's own render, or undefined when kubectl is not installed. */
export function renderWithKubectl(dir: string): K8sObject[] | undefined {
  const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  if (probe.error) return undefined;
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed (exit ${r.status}): ${r.stderr}`);
  return parseYamlDocuments(r.stdout, `kubectl kustomize ${dir}`);
}
