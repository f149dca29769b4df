/**
 * The kinds `weft apply` understands, and one document → one checked object: its
 * identity (kind, namespace, name, registry key) and the registry record it becomes.
 * HTTPRoute, GRPCRoute and Gateway go through the Gateway API edge validator
 * (src/gateway/validate.ts); AuthorizationPolicy and PeerAuthentication through the
 * controller's translators (src/controller/translate.ts, translate-istio.ts); TrafficPolicy through
 * src/resilience/validate.ts: the lab and a cluster accept exactly the same objects and
 * turn them into the same records.
 */
import { policyRecord } from '../controller/translate';
import { istioPolicyRecord, peerAuthRecord, type Translation } from '../controller/translate-istio';
import type { K8sAuthorizationPolicy, K8sPeerAuthentication } from '../controller/k8s-types';
import { GATEWAY_API_GROUP } from '../gateway/types';
import { validateGRPCRoute, validateHTTPRoute, validateWaypointGateway } from '../gateway/validate';
import type { KubeObject } from '../k8s/client';
import { TRAFFIC_POLICY_API_VERSION } from '../resilience/spec';
import { validateTrafficPolicy } from '../resilience/validate';
import { FieldError, rules } from '../registry/checks';
import type { ChangeInput } from '../registry/store';
import type { Kind } from '../registry/types';
import { documentPlace, manifestError, type ManifestDocument } from './manifest';

export interface ManifestKind {
  kind: 'HTTPRoute' | 'GRPCRoute' | 'Gateway' | 'AuthorizationPolicy' | 'PeerAuthentication' | 'TrafficPolicy';
  /** apiVersions accepted, the first being the one Weft writes on a cluster. */
  apiVersions: readonly string[];
  /** Lower-case plural, as in the API path. */
  plural: string;
  registryKind: Kind;
}

export const MANIFEST_KINDS: readonly ManifestKind[] = [
  // The versions validate.ts reads (the served ones whose schema Weft's shapes cover).
  { kind: 'HTTPRoute', apiVersions: [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`], plural: 'httproutes', registryKind: 'httproute' },
  { kind: 'GRPCRoute', apiVersions: [`${GATEWAY_API_GROUP}/v1`], plural: 'grpcroutes', registryKind: 'grpcroute' },
  { kind: 'Gateway', apiVersions: [`${GATEWAY_API_GROUP}/v1`, `${GATEWAY_API_GROUP}/v1beta1`], plural: 'gateways', registryKind: 'waypoint' },
  {
    kind: 'AuthorizationPolicy', apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1', 'security.weft.io/v1alpha1'],
    plural: 'authorizationpolicies', registryKind: 'policy',
  },
  { kind: 'PeerAuthentication', apiVersions: ['security.istio.io/v1', 'security.istio.io/v1beta1'], plural: 'peerauthentications', registryKind: 'peerauth' },
  { kind: 'TrafficPolicy', apiVersions: [TRAFFIC_POLICY_API_VERSION], plural: 'trafficpolicies', registryKind: 'trafficpolicy' },
];

const SUPPORTED = MANIFEST_KINDS.map((k) => `${k.kind} (${k.apiVersions.join(', ')})`).join('; ');
const TOP_LEVEL = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];

/** One document, checked. */
export interface ManifestObject {
  doc: ManifestDocument;
  info: ManifestKind;
  apiVersion: string;
  namespace: string;
  name: string;
  /** kubectl's name for it: `httproute.gateway.networking.k8s.io/canary`. */
  ref: string;
  /** `namespace/name`, the record's key within its registry kind. */
  key: string;
  /** The object as given, with its namespace filled in and status dropped. */
  object: KubeObject;
  /**
   * The registry change that stores it; `creationTimestamp` is used by the route kinds
   * (which keep the first one across updates: the oldest route wins precedence ties).
   * Absent when parsed for delete, which needs only the identity.
   */
  change?: (creationTimestamp: string) => ChangeInput;
}

export interface ParseOptions {
  /** `-n`: the default namespace, and the only one a document may name. */
  namespaceFlag?: string;
  /** Used when neither the document nor -n names a namespace. */
  defaultNamespace: string;
  /** delete -f reads only apiVersion, kind and metadata. */
  identityOnly?: boolean;
}

/** `group/version` → `resource.group`, as kubectl prints it. */
export function resourceName(info: ManifestKind, apiVersion: string): string {
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.lastIndexOf('/')) : '';
  return `${info.kind.toLowerCase()}${group ? `.${group}` : ''}`;
}

class DocumentError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
  }
}

/**
 * Checks every document; throws one WEFT_MANIFEST_INVALID naming each bad document
 * (file, position, kind, namespace/name, field), so an operator fixes them all in one
 * round. The same object twice is refused too: in one atomic apply "last wins" would
 * hide a mistake.
 */
export function parseObjects(docs: readonly ManifestDocument[], opts: ParseOptions): ManifestObject[] {
  const out: ManifestObject[] = [];
  const problems: string[] = [];
  const seen = new Map<string, ManifestDocument>();
  let first: Record<string, unknown> | undefined;
  for (const doc of docs) {
    try {
      const obj = parseObject(doc, opts);
      const id = `${obj.info.registryKind}/${obj.key}`;
      const earlier = seen.get(id);
      if (earlier) throw new DocumentError('metadata.name', `${obj.info.kind} ${obj.key} is also in ${documentPlace(earlier)}; give each object once`);
      seen.set(id, doc);
      out.push(obj);
    } catch (err) {
      if (!(err instanceof DocumentError)) throw err;
      problems.push(`${documentPlace(doc)}${describeDoc(doc.object, opts)}: ${err.message}`);
      first ??= { file: doc.source, document: doc.index, field: err.field };
    }
  }
  if (problems.length > 0) {
    const head = problems.length === 1 ? problems[0]! : `${problems.length} of ${docs.length} documents are invalid:\n  ${problems.join('\n  ')}`;
    throw manifestError(`${head}\nnothing was applied; fix the document${problems.length === 1 ? '' : 's'} and run again`, { ...first, problems });
  }
  if (out.length === 0) throw manifestError('the manifests hold no objects (only empty documents)');
  return out;
}

/** ` (HTTPRoute demo/canary)` when the document says that much. */
function describeDoc(v: unknown, opts: ParseOptions): string {
  if (typeof v !== 'object' || v === null) return '';
  const o = v as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  if (typeof o.kind !== 'string' || typeof o.metadata?.name !== 'string') return '';
  const ns = typeof o.metadata.namespace === 'string' ? o.metadata.namespace : opts.namespaceFlag || opts.defaultNamespace;
  return ` (${o.kind} ${ns}/${o.metadata.name})`;
}

function parseObject(doc: ManifestDocument, opts: ParseOptions): ManifestObject {
  const v = doc.object;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DocumentError('', 'is not an object (expected apiVersion, kind, metadata, spec)');
  const raw = v as Record<string, unknown>;
  const { apiVersion, kind } = raw;
  if (typeof kind !== 'string' || kind === '') throw new DocumentError('kind', `kind is required; supported kinds: ${SUPPORTED}`);
  const info = MANIFEST_KINDS.find((k) => k.kind === kind);
  if (!info) throw new DocumentError('kind', `kind ${kind} is not supported by weft apply; supported kinds: ${SUPPORTED}`);
  if (typeof apiVersion !== 'string' || !info.apiVersions.includes(apiVersion)) {
    throw new DocumentError('apiVersion', `apiVersion ${JSON.stringify(apiVersion ?? null)} is not one Weft reads for ${kind}; use ${info.apiVersions.join(' or ')}`);
  }
  for (const k of Object.keys(raw)) {
    if (!TOP_LEVEL.includes(k)) throw new DocumentError(k, `${k} is not a field of ${kind} (expected ${TOP_LEVEL.join(', ')})`);
  }
  const meta = raw.metadata;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new DocumentError('metadata', 'metadata is required (with at least a name)');
  const m = meta as Record<string, unknown>;
  const name = checkMeta(m.name, 'metadata.name', info.kind === 'HTTPRoute' || info.kind === 'GRPCRoute' || info.kind === 'TrafficPolicy' ? rules.dnsSubdomain : rules.dnsLabel);
  let namespace = opts.namespaceFlag || opts.defaultNamespace;
  if (m.namespace !== undefined) {
    namespace = checkMeta(m.namespace, 'metadata.namespace', rules.dnsLabel);
    if (opts.namespaceFlag && namespace !== opts.namespaceFlag) {
      throw new DocumentError('metadata.namespace', `metadata.namespace is ${namespace} but -n is ${opts.namespaceFlag}; drop -n or make them agree`);
    }
  }
  const { status: _status, ...rest } = raw;
  const object = { ...rest, metadata: { ...m, name, namespace } } as KubeObject;
  const base = { doc, info, apiVersion, namespace, name, ref: `${resourceName(info, apiVersion)}/${name}`, key: `${namespace}/${name}`, object };
  if (opts.identityOnly) return base;
  return { ...base, change: changeFor(info, object) };
}

function checkMeta(v: unknown, field: string, rule: (s: string) => string | undefined): string {
  if (v === undefined || v === null || v === '') throw new DocumentError(field, `${field} is required`);
  if (typeof v !== 'string') throw new DocumentError(field, `${field} must be a string`);
  const problem = rule(v);
  if (problem) throw new DocumentError(field, `${field} ${problem}`);
  return v;
}

/** Validates now (so a bad spec is refused before anything is written) and returns the record builder. */
function changeFor(info: ManifestKind, object: KubeObject): (creationTimestamp: string) => ChangeInput {
  const { name, namespace } = object.metadata as { name: string; namespace: string };
  switch (info.registryKind) {
    // A creationTimestamp in the document (kubectl get -o yaml output) is not used: like
    // the API server, apply sets it on create and keeps the stored one after.
    case 'httproute': {
      const { spec } = edge(() => validateHTTPRoute(object, { namespace }));
      return (creationTimestamp) => ({ op: 'put', kind: 'httproute', record: { name, namespace, creationTimestamp, spec } });
    }
    case 'grpcroute': {
      const { spec } = edge(() => validateGRPCRoute(object, { namespace }));
      return (creationTimestamp) => ({ op: 'put', kind: 'grpcroute', record: { name, namespace, creationTimestamp, spec } });
    }
    case 'trafficpolicy': {
      // Every section through its own module's validator: a bad value names its path
      // (spec.retry.attempts ...) and the whole apply is refused, so the policy in force
      // (the last good one) keeps running.
      const { spec } = edge(() => validateTrafficPolicy(object, { namespace }));
      return (creationTimestamp) => ({ op: 'put', kind: 'trafficpolicy', record: { name, namespace, creationTimestamp, spec } });
    }
    case 'waypoint': {
      const record = edge(() => validateWaypointGateway(object, { namespace }));
      return () => ({ op: 'put', kind: 'waypoint', record });
    }
    case 'policy': {
      // Istio's rule syntax (from/to/when) becomes the registry's clauses first; the
      // security.weft.io CRD already carries the registry's shape.
      const source = object as K8sAuthorizationPolicy;
      const t = object.apiVersion?.startsWith('security.istio.io/') ? istioPolicyRecord(source) : policyRecord(source);
      // A refused policy is not stored as the controller's fail-closed stand-in: apply
      // refuses the whole batch, and the policy in force stays as it was.
      const record = translated(t.ok ? t : { ok: false, field: t.field, message: t.message });
      return () => ({ op: 'put', kind: 'policy', record });
    }
    case 'peerauth': {
      const record = translated(peerAuthRecord(object as K8sPeerAuthentication));
      return () => ({ op: 'put', kind: 'peerauth', record });
    }
    default:
      throw new Error(`no translation for ${info.kind}`);
  }
}

function edge<S>(validate: () => S): S {
  try {
    return validate();
  } catch (err) {
    if (err instanceof FieldError) throw new DocumentError(err.field, `${err.field} ${err.problem}`);
    throw err;
  }
}

function translated<R>(t: Translation<R>): R {
  if (!t.ok) throw new DocumentError(t.field, t.message);
  return t.record;
}
