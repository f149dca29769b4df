/**
 * Every object daemonset/ renders, checked against the Kubernetes API schema of its
 * kind: required fields, types, enums, and no unknown fields (what `kubectl apply
 * --validate=strict` would refuse). The schemas below are transcribed from the
 * upstream API reference (core/v1, apps/v1, rbac/v1, apiextensions/v1) for the fields
 * a mesh install uses; a field outside them is reported as unknown, so using a new
 * field means adding it here from the reference first.
 */
import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { objectId, parseYamlDocuments, renderKustomization, type K8sObject } from './helpers/kustomize';
import { waypointObjects } from '../src/controller/waypoint-deploy';

type S =
  | { t: 'str'; enum?: readonly string[]; pattern?: RegExp }
  | { t: 'int'; min?: number; max?: number }
  | { t: 'bool' } | { t: 'any' } | { t: 'intOrStr' } | { t: 'quantity' }
  | { t: 'arr'; of: S }
  | { t: 'map'; of: S }
  | { t: 'lazy'; get: () => S }
  | { t: 'obj'; props: Record<string, S | (() => S)>; req?: readonly string[] };

const str = (e?: readonly string[]): S => ({ t: 'str', ...(e ? { enum: e } : {}) });
const int = (min?: number, max?: number): S => ({ t: 'int', ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) });
const bool: S = { t: 'bool' };
const any: S = { t: 'any' };
const arr = (of: S): S => ({ t: 'arr', of });
const map = (of: S): S => ({ t: 'map', of });
const obj = (props: Record<string, S | (() => S)>, req: readonly string[] = []): S => ({ t: 'obj', props, req });
const strs = arr(str());
const port = int(1, 65535);
const intOrStr: S = { t: 'intOrStr' };
const quantity: S = { t: 'quantity' };
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$/;
const DNS1123 = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

const objectMeta = obj({
  name: { t: 'str', pattern: DNS1123 }, namespace: { t: 'str', pattern: DNS1123 },
  labels: map(str()), annotations: map(str()),
  // meta/v1 OwnerReference: the waypoint objects the controller makes carry one.
  ownerReferences: arr(obj({ apiVersion: str(), kind: str(), name: str(), uid: str(), controller: bool, blockOwnerDeletion: bool }, ['apiVersion', 'kind', 'name', 'uid'])),
}, ['name']);
const labelSelector = obj({
  matchLabels: map(str()),
  matchExpressions: arr(obj({ key: str(), operator: str(['In', 'NotIn', 'Exists', 'DoesNotExist']), values: strs }, ['key', 'operator'])),
});
const probe = obj({
  httpGet: obj({ path: str(), port: intOrStr, host: str(), scheme: str(['HTTP', 'HTTPS']) }, ['port']),
  tcpSocket: obj({ port: intOrStr, host: str() }, ['port']),
  exec: obj({ command: strs }),
  grpc: obj({ port: int(1, 65535), service: str() }, ['port']),
  initialDelaySeconds: int(0), periodSeconds: int(1), timeoutSeconds: int(1),
  successThreshold: int(1), failureThreshold: int(1), terminationGracePeriodSeconds: int(1),
});
const seccompProfile = obj({ type: str(['RuntimeDefault', 'Localhost', 'Unconfined']), localhostProfile: str() }, ['type']);
const containerSecurityContext = obj({
  runAsUser: int(0), runAsGroup: int(0), runAsNonRoot: bool, privileged: bool,
  allowPrivilegeEscalation: bool, readOnlyRootFilesystem: bool, seccompProfile,
  capabilities: obj({ add: strs, drop: strs }),
});
const container = obj({
  name: { t: 'str', pattern: /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/ }, image: str(), command: strs, args: strs,
  imagePullPolicy: str(['Always', 'IfNotPresent', 'Never']), workingDir: str(),
  env: arr(obj({
    name: str(), value: str(),
    valueFrom: obj({
      fieldRef: obj({ fieldPath: str(), apiVersion: str() }, ['fieldPath']),
      configMapKeyRef: obj({ name: str(), key: str(), optional: bool }, ['key']),
      secretKeyRef: obj({ name: str(), key: str(), optional: bool }, ['key']),
    }),
  }, ['name'])),
  envFrom: arr(obj({ prefix: str(), configMapRef: obj({ name: str(), optional: bool }), secretRef: obj({ name: str(), optional: bool }) })),
  ports: arr(obj({
    name: { t: 'str', pattern: /^[a-z0-9-]{1,15}$/ }, containerPort: port, hostPort: port,
    protocol: str(['TCP', 'UDP', 'SCTP']), hostIP: str(),
  }, ['containerPort'])),
  startupProbe: probe, readinessProbe: probe, livenessProbe: probe,
  resources: obj({ requests: map(quantity), limits: map(quantity) }),
  securityContext: containerSecurityContext,
  volumeMounts: arr(obj({ name: str(), mountPath: str(), readOnly: bool, subPath: str() }, ['name', 'mountPath'])),
}, ['name']);
const volume = obj({
  name: str(),
  emptyDir: obj({ medium: str(['', 'Memory']), sizeLimit: quantity }),
  hostPath: obj({ path: str(), type: str(['', 'DirectoryOrCreate', 'Directory', 'FileOrCreate', 'File', 'Socket', 'CharDevice', 'BlockDevice']) }, ['path']),
  configMap: obj({ name: str(), optional: bool, defaultMode: int(0, 0o777) }),
  secret: obj({ secretName: str(), optional: bool, defaultMode: int(0, 0o777) }),
  persistentVolumeClaim: obj({ claimName: str(), readOnly: bool }, ['claimName']),
  projected: obj({
    defaultMode: int(0, 0o777),
    sources: arr(obj({
      // expirationSeconds: the API server refuses less than 10 minutes.
      serviceAccountToken: obj({ audience: str(), expirationSeconds: int(600, 2 ** 32), path: str() }, ['path']),
      configMap: obj({ name: str(), optional: bool, items: arr(obj({ key: str(), path: str(), mode: int(0, 0o777) }, ['key', 'path'])) }),
      downwardAPI: obj({ items: arr(obj({ path: str(), fieldRef: obj({ fieldPath: str(), apiVersion: str() }, ['fieldPath']) }, ['path'])) }),
    })),
  }),
}, ['name']);
const podAffinityTerm = obj({ topologyKey: str(), labelSelector, namespaces: strs }, ['topologyKey']);
const podSpec = obj({
  containers: arr(container), initContainers: arr(container), volumes: arr(volume),
  serviceAccountName: str(), automountServiceAccountToken: bool,
  hostNetwork: bool, hostPID: bool, hostIPC: bool,
  dnsPolicy: str(['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None']),
  priorityClassName: str(), terminationGracePeriodSeconds: int(0), nodeSelector: map(str()),
  tolerations: arr(obj({
    key: str(), operator: str(['Exists', 'Equal']), value: str(),
    effect: str(['NoSchedule', 'PreferNoSchedule', 'NoExecute']), tolerationSeconds: int(),
  })),
  securityContext: obj({
    runAsUser: int(0), runAsGroup: int(0), runAsNonRoot: bool, fsGroup: int(0), seccompProfile,
    supplementalGroups: arr(int(0)),
  }),
  affinity: obj({
    podAntiAffinity: obj({
      preferredDuringSchedulingIgnoredDuringExecution: arr(obj({ weight: int(1, 100), podAffinityTerm }, ['weight', 'podAffinityTerm'])),
      requiredDuringSchedulingIgnoredDuringExecution: arr(podAffinityTerm),
    }),
  }),
}, ['containers']);
const podTemplate = obj({ metadata: obj({ labels: map(str()), annotations: map(str()) }), spec: podSpec });
const pvcSpec = obj({
  accessModes: arr(str(['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'])),
  resources: obj({ requests: map(quantity), limits: map(quantity) }), storageClassName: str(),
});
const networkPolicyPeer = obj({
  podSelector: labelSelector, namespaceSelector: labelSelector,
  ipBlock: obj({ cidr: { t: 'str', pattern: /^[0-9a-fA-F:.]+\/\d{1,3}$/ }, except: strs }, ['cidr']),
});
const networkPolicyPort = obj({ protocol: str(['TCP', 'UDP', 'SCTP']), port: intOrStr, endPort: port });
const policyRule = obj({ apiGroups: strs, resources: strs, resourceNames: strs, nonResourceURLs: strs, verbs: strs }, ['verbs']);
const roleRef = obj({ apiGroup: str(), kind: str(['Role', 'ClusterRole']), name: str() }, ['apiGroup', 'kind', 'name']);
const subject = obj({ kind: str(['ServiceAccount', 'User', 'Group']), name: str(), namespace: str(), apiGroup: str() }, ['kind', 'name']);

// JSONSchemaProps of apiextensions.k8s.io/v1, recursive.
const jsonSchemaProps = (): S => obj({
  type: str(['object', 'array', 'string', 'integer', 'number', 'boolean']), description: str(), format: str(),
  properties: map({ t: 'lazy', get: jsonSchemaProps }), items: jsonSchemaProps, additionalProperties: jsonSchemaProps,
  required: strs, enum: arr(any), pattern: str(), minimum: { t: 'int' }, maximum: { t: 'int' },
  minLength: int(0), maxLength: int(0), minItems: int(0), maxItems: int(0), default: any, nullable: bool,
  'x-kubernetes-validations': arr(obj({ rule: str(), message: str(), reason: str(), fieldPath: str() }, ['rule'])),
  'x-kubernetes-list-type': str(['atomic', 'set', 'map']), 'x-kubernetes-list-map-keys': strs,
  'x-kubernetes-preserve-unknown-fields': bool, 'x-kubernetes-int-or-string': bool,
});

/** Top-level schema per apiVersion + kind; `metadata` is always ObjectMeta. */
export const KINDS: Record<string, S> = {
  'v1/Namespace': obj({}),
  'v1/ConfigMap': obj({ data: map(str()), binaryData: map(str()) }),
  'v1/ServiceAccount': obj({ automountServiceAccountToken: bool }),
  'v1/Service': obj({
    spec: obj({
      selector: map(str()), type: str(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']), clusterIP: str(), publishNotReadyAddresses: bool,
      ports: arr(obj({
        name: str(), port, targetPort: intOrStr, nodePort: port, appProtocol: str(), protocol: str(['TCP', 'UDP', 'SCTP']),
      }, ['port'])),
    }),
  }),
  'apps/v1/Deployment': obj({
    spec: obj({
      replicas: int(0), selector: labelSelector, template: podTemplate, revisionHistoryLimit: int(0),
      strategy: obj({ type: str(['RollingUpdate', 'Recreate']), rollingUpdate: obj({ maxUnavailable: intOrStr, maxSurge: intOrStr }) }),
    }, ['selector', 'template']),
  }, ['spec']),
  'apps/v1/DaemonSet': obj({
    spec: obj({
      selector: labelSelector, template: podTemplate, minReadySeconds: int(0),
      updateStrategy: obj({ type: str(['RollingUpdate', 'OnDelete']), rollingUpdate: obj({ maxUnavailable: intOrStr, maxSurge: intOrStr }) }),
    }, ['selector', 'template']),
  }, ['spec']),
  'apps/v1/StatefulSet': obj({
    spec: obj({
      replicas: int(0), selector: labelSelector, template: podTemplate, serviceName: str(),
      volumeClaimTemplates: arr(obj({ metadata: obj({ name: str(), labels: map(str()) }, ['name']), spec: pvcSpec })),
    }, ['selector', 'template']),
  }, ['spec']),
  'networking.k8s.io/v1/NetworkPolicy': obj({
    spec: obj({
      podSelector: labelSelector, policyTypes: arr(str(['Ingress', 'Egress'])),
      ingress: arr(obj({ from: arr(networkPolicyPeer), ports: arr(networkPolicyPort) })),
      egress: arr(obj({ to: arr(networkPolicyPeer), ports: arr(networkPolicyPort) })),
    }, ['podSelector']),
  }, ['spec']),
  'rbac.authorization.k8s.io/v1/ClusterRole': obj({ rules: arr(policyRule) }),
  'rbac.authorization.k8s.io/v1/Role': obj({ rules: arr(policyRule) }),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': obj({ roleRef, subjects: arr(subject) }, ['roleRef']),
  'rbac.authorization.k8s.io/v1/RoleBinding': obj({ roleRef, subjects: arr(subject) }, ['roleRef']),
  'apiextensions.k8s.io/v1/CustomResourceDefinition': obj({
    spec: obj({
      group: str(), scope: str(['Namespaced', 'Cluster']),
      names: obj({ kind: str(), listKind: str(), plural: str(), singular: str(), shortNames: strs, categories: strs }, ['kind', 'plural']),
      versions: arr(obj({
        name: str(), served: bool, storage: bool, deprecated: bool,
        schema: obj({ openAPIV3Schema: jsonSchemaProps }),
        subresources: obj({ status: obj({}), scale: any }),
        additionalPrinterColumns: arr(obj({
          name: str(), type: str(['integer', 'number', 'string', 'boolean', 'date']), jsonPath: str(),
          description: str(), format: str(), priority: int(0),
        }, ['name', 'type', 'jsonPath'])),
      }, ['name', 'served', 'storage'])),
    }, ['group', 'names', 'scope', 'versions']),
  }, ['spec']),
};

/** Problems of `value` against `schema`, each as "path: what is wrong". */
export function check(value: unknown, schema: S, path: string, out: string[] = []): string[] {
  const bad = (what: string): void => { out.push(`${path}: ${what} (got ${JSON.stringify(value)?.slice(0, 60)})`); };
  switch (schema.t) {
    case 'any': return out;
    case 'lazy': return check(value, schema.get(), path, out);
    case 'str':
      if (typeof value !== 'string') bad('expected a string');
      else if (schema.enum && !schema.enum.includes(value)) bad(`expected one of ${schema.enum.join(', ')}`);
      else if (schema.pattern && !schema.pattern.test(value)) bad(`does not match ${schema.pattern}`);
      return out;
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) bad('expected an integer');
      else if ((schema.min !== undefined && value < schema.min) || (schema.max !== undefined && value > schema.max)) bad(`out of range ${schema.min}..${schema.max}`);
      return out;
    case 'bool': if (typeof value !== 'boolean') bad('expected a boolean'); return out;
    case 'intOrStr': if (typeof value !== 'string' && !Number.isInteger(value)) bad('expected an integer or a string'); return out;
    case 'quantity':
      if (!(typeof value === 'string' && QUANTITY.test(value)) && !(typeof value === 'number' && value >= 0)) bad('expected a quantity such as 100m or 128Mi');
      return out;
    case 'arr':
      if (!Array.isArray(value)) bad('expected a list');
      else value.forEach((v, i) => check(v, schema.of, `${path}[${i}]`, out));
      return out;
    case 'map':
      if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('expected a mapping');
      else for (const [k, v] of Object.entries(value)) check(v, schema.of, `${path}.${k}`, out);
      return out;
    case 'obj': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) { bad('expected an object'); return out; }
      const rec = value as Record<string, unknown>;
      for (const r of schema.req ?? []) if (rec[r] === undefined) out.push(`${path}.${r}: required`);
      for (const [k, v] of Object.entries(rec)) {
        const sub = schema.props[k];
        if (sub === undefined) out.push(`${path}.${k}: unknown field`);
        else check(v, typeof sub === 'function' ? sub() : sub, `${path}.${k}`, out);
      }
      return out;
    }
  }
}

export function validateObject(o: K8sObject): string[] {
  const id = `${o.kind}/${o.metadata?.name}`;
  const schema = KINDS[`${o.apiVersion}/${o.kind}`];
  if (!schema || schema.t !== 'obj') return [`${id}: no schema for ${o.apiVersion} ${o.kind}`];
  const top = obj({ ...schema.props, apiVersion: str(), kind: str(), metadata: objectMeta }, ['apiVersion', 'kind', 'metadata', ...(schema.req ?? [])]);
  return check(o, top, id);
}

const rendered = renderKustomization(join(__dirname, '..', 'daemonset'));

t.test('every rendered object matches the API schema of its kind', async (t) => {
  t.ok(rendered.length >= 15, `rendered ${rendered.length} objects`);
  for (const o of rendered) t.same(validateObject(o), [], objectId(o));
});

t.test('the highly available Redis variant (daemonset/redis-sentinel.yaml) matches the API schemas too', async (t) => {
  const file = join(__dirname, '..', 'daemonset', 'redis-sentinel.yaml');
  const objects = parseYamlDocuments(readFileSync(file, 'utf8'), file);
  t.same(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
    ['NetworkPolicy/weft-redis-sentinel', 'Service/weft-redis-headless', 'Service/weft-redis-sentinel', 'StatefulSet/weft-redis']);
  for (const o of objects) t.same(validateObject(o), [], objectId(o));
});

t.test('the waypoint objects the controller applies match the API schemas too', async (t) => {
  const gw = { metadata: { name: 'waypoint', namespace: 'demo', uid: '0b6f3c1e-2f39-4b6c-9d7e-1a2b3c4d5e6f' } };
  const record = { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' as const };
  for (const redisAuth of [true, false]) {
    const objects = waypointObjects(gw, record, {
      image: 'weft:dev', redisUrl: 'rediss://weft-redis.weft-system.svc:6379', redisAuth, caAddress: 'weft-ca.weft-system.svc:15012',
      trustDomain: 'cluster.local', logLevel: 'info', systemNamespace: 'weft-system',
    }, { 'root-cert.pem': '-----BEGIN CERTIFICATE-----\n' });
    t.same(objects.map((o) => o.kind), ['ServiceAccount', 'ConfigMap', 'Deployment', 'Service']);
    for (const o of objects) t.same(validateObject(o as K8sObject), [], `${objectId(o as K8sObject)} (redis auth ${redisAuth})`);
  }
  // With the highly available registry the waypoint finds the primary as the controller does.
  const ha = waypointObjects(gw, record, {
    image: 'weft:dev', redisUrl: 'rediss://weft-redis.weft-system.svc:6379', redisAuth: true, caAddress: 'weft-ca.weft-system.svc:15012',
    trustDomain: 'cluster.local', logLevel: 'info', systemNamespace: 'weft-system',
    redisSentinel: { sentinels: 'weft-redis-sentinel.weft-system.svc:26379', masterName: 'weft-registry', username: 'weft-sentinel-client' },
  }, { 'root-cert.pem': '-----BEGIN CERTIFICATE-----\n' });
  const deploy = ha.find((o) => o.kind === 'Deployment') as K8sObject;
  for (const o of ha) t.same(validateObject(o as K8sObject), [], `${objectId(o as K8sObject)} (Sentinel)`);
  const env = Object.fromEntries(((deploy.spec as any).template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  t.match(env, {
    WEFT_REDIS_SENTINELS: 'weft-redis-sentinel.weft-system.svc:26379', WEFT_REDIS_MASTER_NAME: 'weft-registry',
    WEFT_REDIS_SENTINEL_USERNAME: 'weft-sentinel-client', WEFT_REDIS_SENTINEL_PASSWORD_FILE: '/var/run/secrets/weft/redis/sentinel-password',
  }, "the waypoint gets the controller's Sentinels, and its password from its own Secret");

  // Tracing as the controller was given it: the sampling always, the collector when set.
  const envOf = (telemetry: { traceSampling: number; otlpEndpoint: string } | undefined) => {
    const objs = waypointObjects(gw, record, {
      image: 'weft:dev', redisUrl: 'redis://weft-redis.weft-system.svc:6379', redisAuth: false, caAddress: 'weft-ca.weft-system.svc:15012',
      trustDomain: 'cluster.local', logLevel: 'info', systemNamespace: 'weft-system', ...(telemetry ? { telemetry } : {}),
    }, { 'root-cert.pem': '-----BEGIN CERTIFICATE-----\n' });
    const d = objs.find((o) => o.kind === 'Deployment') as K8sObject;
    return Object.fromEntries(((d.spec as any).template.spec.containers[0].env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
  };
  t.match(envOf({ traceSampling: 0.05, otlpEndpoint: 'http://otel-collector.observability:4317' }), { WEFT_TRACE_SAMPLING: '0.05', WEFT_OTLP_ENDPOINT: 'http://otel-collector.observability:4317' });
  t.equal(envOf({ traceSampling: 0.01, otlpEndpoint: '' }).WEFT_OTLP_ENDPOINT, undefined, 'no collector: no export');
  t.equal(envOf(undefined).WEFT_TRACE_SAMPLING, undefined);
});

t.test('the schema check catches what the API server would refuse', async (t) => {
  const ds = rendered.find((o) => o.kind === 'DaemonSet')!;
  const mutate = (f: (o: any) => void): string[] => { const c = structuredClone(ds); f(c); return validateObject(c); };
  t.match(mutate((o) => { delete o.spec.selector; }), [/spec\.selector: required/]);
  t.match(mutate((o) => { o.spec.template.spec.containers[0].ports[0].containerPort = '15001'; }), [/containerPort: expected an integer/]);
  t.match(mutate((o) => { o.spec.template.spec.containers[0].resources.limits.memory = '1 GB'; }), [/memory: expected a quantity/]);
  t.match(mutate((o) => { o.spec.template.spec.hostNetwrok = true; }), [/hostNetwrok: unknown field/]);
  t.match(mutate((o) => { o.spec.template.spec.dnsPolicy = 'ClusterFirstWithHostNetwork'; }), [/dnsPolicy: expected one of/]);
  t.match(mutate((o) => { delete o.spec.template.spec.containers[0].name; }), [/containers\[0\]\.name: required/]);
  t.match(mutate((o) => { o.metadata.name = 'Weft_Ztunnel'; }), [/metadata\.name: does not match/]);
  t.match(validateObject({ apiVersion: 'extensions/v1beta1', kind: 'DaemonSet', metadata: { name: 'x' } }), [/no schema/]);
  const crb = rendered.find((o) => o.kind === 'ClusterRoleBinding')!;
  const c = structuredClone(crb) as any;
  delete c.roleRef.apiGroup;
  t.match(validateObject(c), [/roleRef\.apiGroup: required/]);
});
