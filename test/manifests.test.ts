/**
 * daemonset/ as a whole: kubectl's render equals ours, the security posture holds, the
 * AuthorizationPolicy CRD accepts what the controller accepts, the components' flags
 * and environment parse with Weft's own option parsers, and the Dockerfile builds
 * what the manifests run. (Per-kind API schemas: manifests-schema.test.ts.)
 */
import { TRAFFIC_POLICY_SPEC_KEYS } from '../src/resilience/validate';
import { trafficPolicyRecord } from '../src/controller/traffic-policy';
import t from 'tap';
import YAML from 'yaml';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  objectId, podContainers, podSpec, renderKustomization, renderWithKubectl, type Container, type K8sObject,
} from './helpers/kustomize';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { ZTUNNEL_NODE_FLAGS } from '../src/ztunnel/node-flags';
import { caConfig, caSpecs } from '../src/ca/command';
import { controllerSpecs } from '../src/controller/command';
import { parseOptions } from '../src/lib/options';
import { policyRecord } from '../src/controller/translate';
import { redisTarget } from '../src/lib/common-options';
import { toConnection } from '../src/registry/connection';
import { localEnv, makeRedisSecrets, secretMounts } from './helpers/redis-secrets';

const ROOT = join(__dirname, '..');
const DIR = join(ROOT, 'daemonset');
const objects = renderKustomization(DIR);
const byKind = (kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);
const one = (kind: string, name: string): K8sObject => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the render`);
  return o;
};
const workloads = objects.filter((o) => podSpec(o) !== undefined);
const ztunnel = one('DaemonSet', 'weft-ztunnel');
type Sc = { runAsUser?: number; runAsNonRoot?: boolean; privileged?: boolean; allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean; capabilities?: { add?: string[]; drop?: string[] }; seccompProfile?: { type: string } };
const sc = (c: Container): Sc => (c.securityContext as Sc | undefined) ?? {};

t.test('kubectl kustomize renders the same objects as the test renderer', async (t) => {
  const theirs = renderWithKubectl(DIR);
  if (!theirs) { t.pass('kubectl is not installed: only the test renderer ran (.ci/run installs kubectl)', { skip: true }); return; }
  t.same(theirs.map(objectId).sort(), objects.map(objectId).sort(), 'same set of objects');
  const ours = new Map(objects.map((o) => [objectId(o), o]));
  for (const o of theirs) t.same(o, ours.get(objectId(o)), `${objectId(o)} identical`);
});

t.test('the install has every piece of the mesh', async (t) => {
  t.same(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ClusterRole/weft-ca', 'ClusterRole/weft-controller', 'ClusterRole/weft-operator', 'ClusterRole/weft-ztunnel-admin-auth',
    'ClusterRoleBinding/weft-ca', 'ClusterRoleBinding/weft-controller', 'ClusterRoleBinding/weft-ztunnel-admin-auth', 'ConfigMap/weft-config',
    'CustomResourceDefinition/authorizationpolicies.security.weft.io', 'CustomResourceDefinition/trafficpolicies.networking.weft.io', 'DaemonSet/weft-ztunnel',
    'Deployment/weft-ca', 'Deployment/weft-controller', 'Namespace/weft-system', 'NetworkPolicy/weft-redis',
    'Role/weft-ca', 'Role/weft-controller-leader-election', 'Role/weft-controller-root-cert', 'Role/weft-operator',
    'RoleBinding/weft-ca', 'RoleBinding/weft-controller-leader-election', 'RoleBinding/weft-controller-root-cert',
    'Service/weft-ca', 'Service/weft-redis', 'ServiceAccount/weft-ca', 'ServiceAccount/weft-controller',
    'ServiceAccount/weft-redis', 'ServiceAccount/weft-ztunnel', 'StatefulSet/weft-redis',
  ]);
  for (const o of objects) {
    if (!['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)) {
      t.equal(o.metadata.namespace, 'weft-system', `${o.kind}/${o.metadata.name} in weft-system`);
    }
  }
  t.equal((one('Deployment', 'weft-controller').spec as { replicas: number }).replicas, 2, 'two controllers (leader election)');
  t.equal((one('StatefulSet', 'weft-redis').spec as { replicas: number }).replicas, 1);
  const caPorts = (one('Service', 'weft-ca').spec as { ports: { port: number }[] }).ports.map((p) => p.port);
  t.ok(caPorts.includes(15012), 'CA Service on 15012');
  for (const w of workloads) {
    const sa = podSpec(w)!.serviceAccountName as string;
    t.ok(objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === sa), `${w.metadata.name} runs as its own ServiceAccount ${sa}`);
    const sel = (w.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    const labels = (w.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    for (const [k, v] of Object.entries(sel)) t.equal(labels[k], v, `${w.metadata.name} template carries selector ${k}`);
  }
  for (const svc of byKind('Service')) {
    const sel = (svc.spec as { selector: Record<string, string> }).selector;
    t.ok(workloads.some((w) => Object.entries(sel).every(([k, v]) =>
      (w.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels[k] === v)),
    `Service ${svc.metadata.name} selects a workload`);
  }
  for (const w of workloads.filter((x) => x.metadata.name !== 'weft-redis')) {
    for (const c of podContainers(w)) t.equal(c.image, 'weft:dev', `${w.metadata.name}/${c.name} runs the repository's image`);
  }
});

t.test('security posture', async (t) => {
  for (const w of workloads) {
    const ps = podSpec(w)!;
    const name = w.metadata.name;
    t.not(ps.hostPID, true, `${name}: no hostPID`);
    t.not(ps.hostIPC, true, `${name}: no hostIPC`);
    t.equal(ps.hostNetwork === true, w === ztunnel, `${name}: hostNetwork only for the ztunnel`);
    const podSc = (ps.securityContext as Sc | undefined) ?? {};
    for (const c of podContainers(w)) {
      const id = `${name}/${c.name}`;
      const s = sc(c);
      t.not(s.privileged, true, `${id}: not privileged`);
      t.equal(s.allowPrivilegeEscalation, false, `${id}: no privilege escalation`);
      t.equal(s.readOnlyRootFilesystem, true, `${id}: read-only root filesystem`);
      t.same(s.capabilities?.drop, ['ALL'], `${id}: drops all capabilities`);
      t.equal((s.seccompProfile ?? podSc.seccompProfile)?.type, 'RuntimeDefault', `${id}: seccomp RuntimeDefault`);
      const res = c.resources as { requests?: Record<string, string>; limits?: Record<string, string> } | undefined;
      for (const r of ['cpu', 'memory']) {
        t.ok(res?.requests?.[r], `${id}: requests ${r}`);
        t.ok(res?.limits?.[r], `${id}: limits ${r}`);
      }
      const added = s.capabilities?.add ?? [];
      const user = s.runAsUser ?? podSc.runAsUser;
      if (w === ztunnel) {
        t.same(added.sort(), ['NET_ADMIN', 'NET_RAW'], `${id}: only NET_ADMIN and NET_RAW (iptables)`);
        t.equal(user, 0, `${id}: root, justified in ztunnel.yaml`);
      } else {
        t.same(added, [], `${id}: adds no capability`);
        t.equal(s.runAsNonRoot ?? podSc.runAsNonRoot, true, `${id}: runAsNonRoot`);
        t.ok(typeof user === 'number' && user > 0, `${id}: a non-root uid`);
      }
    }
  }
  t.equal(one('Namespace', 'weft-system').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged',
    'Pod Security admission admits the ztunnel (hostNetwork, NET_ADMIN)');
  const ztText = readFileSync(join(DIR, 'ztunnel.yaml'), 'utf8');
  t.match(ztText, /Root \(uid 0\) but not privileged: iptables needs/, 'ztunnel.yaml says why it runs as root');
});

t.test('the ztunnel DaemonSet: rollout, probes, placement, node identity', async (t) => {
  const spec = ztunnel.spec as { updateStrategy: { type: string; rollingUpdate: { maxUnavailable: unknown } } };
  t.same(spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
  const ps = podSpec(ztunnel)!;
  t.equal(ps.dnsPolicy, 'ClusterFirstWithHostNet', 'resolves cluster Services from the host network');
  t.equal(ps.priorityClassName, 'system-node-critical');
  t.same(ps.tolerations, [{ operator: 'Exists' }], 'tolerates every taint');
  t.ok((ps.terminationGracePeriodSeconds as number) >= 10, 'time to drain and stop on SIGTERM');
  t.equal(ps.automountServiceAccountToken, false, 'no automounted API token (the projected ones below have one purpose each)');
  const c = podContainers(ztunnel)[0]!;
  t.equal(c.command, undefined, 'no start script: the image entry point runs weft');
  t.same(c.args, ['ztunnel', '--capture']);
  for (const kind of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    const p = c[kind] as { httpGet?: { port: number; path: string }; tcpSocket?: { port: number } } | undefined;
    t.ok(p, `${kind} set`);
    t.equal(p?.httpGet?.port ?? p?.tcpSocket?.port, 15021, `${kind} on 15021`);
  }
  t.equal((c.readinessProbe as { httpGet: { path: string } }).httpGet.path, '/healthz/ready');
  const ports = (c.ports as { containerPort: number }[]).map((p) => p.containerPort).sort();
  t.same(ports, [15000, 15001, 15006, 15008, 15020, 15021], 'declared host ports (15000: the read-only admin views)');
  const env = c.env as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  t.equal(env.find((e) => e.name === 'WEFT_NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  t.equal((env as { name: string; value?: string }[]).find((e) => e.name === 'NODE_OPTIONS')?.value, ZTUNNEL_NODE_FLAGS.join(' '),
    'the ztunnel runs with the V8 flags the lab gives it (src/ztunnel/node-flags.ts)');
  t.equal(env.find((e) => e.name === 'WEFT_NODE_ADDRESS')?.valueFrom?.fieldRef?.fieldPath, 'status.hostIP');
  t.equal(env.find((e) => e.name === 'WEFT_ADMIN_VIEW_ADDRESS')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP',
    'read-only admin views on the pod IP, for the API server pod proxy');
  t.equal(env.find((e) => e.name === 'WEFT_ADMIN_VIEW_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace',
    'callers need get pods/proxy in the ztunnel\'s own namespace');
  t.notOk(env.some((e) => e.name === 'WEFT_JOIN_TOKEN'), 'no minted join token');
});

t.test('the ztunnel joins the CA with a projected ServiceAccount token for the CA only', async (t) => {
  const ps = podSpec(ztunnel)!;
  const c = podContainers(ztunnel)[0]!;
  type Volume = { name: string; projected?: { sources: unknown[] } };
  const volumes = (ps.volumes as Volume[]).filter((v) => v.projected);
  t.same(volumes, [{
    name: 'weft-ca-token',
    projected: { sources: [{ serviceAccountToken: { path: 'token', audience: 'weft-ca', expirationSeconds: 3600 } }] },
  }, {
    name: 'kube-api-access',
    projected: { sources: [
      { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } },
      { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { downwardAPI: { items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
    ] },
  }], 'the CA token alone (audience weft-ca, one hour), and an API token (one hour) for the admin views\' caller reviews');
  const apiMount = (c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]).find((m) => m.name === 'kube-api-access');
  t.same(apiMount, { name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }, 'where in-cluster clients look');
  const mounts = (c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]).filter((m) => m.name === 'weft-ca-token');
  t.same(mounts, [{ name: 'weft-ca-token', mountPath: '/var/run/secrets/weft/ca-token', readOnly: true }], 'mounted read-only');
  const env = c.env as { name: string; value?: string }[];
  t.equal(env.find((e) => e.name === 'WEFT_JOIN_SA_TOKEN_FILE')?.value, `${mounts[0]?.mountPath}/token`, 'WEFT_JOIN_SA_TOKEN_FILE is the projected file');
});

t.test('RBAC is least privilege', async (t) => {
  type Rule = { apiGroups?: string[]; resources?: string[]; verbs: string[]; resourceNames?: string[] };
  for (const role of [...byKind('ClusterRole'), ...byKind('Role')]) {
    for (const r of (role.rules as Rule[] | undefined) ?? []) {
      const id = `${role.kind}/${role.metadata.name} ${r.resources?.join(',')}`;
      t.notOk([...r.verbs, ...(r.resources ?? []), ...(r.apiGroups ?? [])].includes('*'), `${id}: no wildcard`);
      t.notOk(r.resources?.includes('secrets'), `${id}: no secrets`);
    }
  }
  const cr = one('ClusterRole', 'weft-controller').rules as Rule[];
  const writes = cr.filter((r) => r.verbs.some((v) => !['get', 'list', 'watch'].includes(v)));
  t.same(writes.map((r) => ({ res: r.resources, verbs: r.verbs })), [
    { res: ['authorizationpolicies/status'], verbs: ['patch'] },
    { res: ['trafficpolicies/status'], verbs: ['patch'] },
    { res: ['httproutes/status', 'grpcroutes/status', 'gateways/status'], verbs: ['patch'] },
    { res: ['serviceaccounts', 'configmaps', 'services'], verbs: ['create', 'patch'] },
    { res: ['deployments'], verbs: ['create', 'patch'] },
  ], 'cluster-wide, the controller writes only status and the objects of the waypoints it deploys (server-side apply: create and patch, no update or delete)');
  t.notOk(writes.some((r) => r.resources?.some((res) => ['pods', 'namespaces', 'nodes', 'secrets', 'httproutes', 'grpcroutes', 'gateways'].includes(res))),
    'it never writes pods, namespaces, nodes, secrets or the users\' routes and Gateways themselves');
  const rootCert = one('Role', 'weft-controller-root-cert');
  t.equal(rootCert.metadata.namespace, 'weft-system');
  t.same((rootCert.rules as Rule[]).map((r) => [r.apiGroups, r.resources, r.verbs, r.resourceNames]), [[[''], ['configmaps'], ['get'], ['weft-root-cert']]],
    'the controller reads one ConfigMap of weft-system, the trust anchors it copies to waypoints');
  const reads = new Set(cr.flatMap((r) => (r.resources ?? []).map((res) => `${r.apiGroups?.[0] ?? ''}/${res}`)));
  for (const need of ['/nodes', '/namespaces', '/pods', '/services', 'discovery.k8s.io/endpointslices', 'security.weft.io/authorizationpolicies',
    'security.istio.io/authorizationpolicies', 'security.istio.io/peerauthentications',
    'gateway.networking.k8s.io/httproutes', 'gateway.networking.k8s.io/grpcroutes', 'gateway.networking.k8s.io/gateways',
    'networking.weft.io/trafficpolicies']) {
    t.ok(reads.has(need), `controller may list/watch ${need}`);
  }
  const lease = one('Role', 'weft-controller-leader-election');
  t.equal(lease.metadata.namespace, 'weft-system');
  t.same((lease.rules as Rule[]).map((r) => [r.apiGroups, r.resources, r.verbs, r.resourceNames]), [
    [['coordination.k8s.io'], ['leases'], ['create'], undefined],
    [['coordination.k8s.io'], ['leases'], ['get', 'update'], ['weft-controller']],
  ], 'the controller reads and renews only its own Lease');
  const operator = one('ClusterRole', 'weft-operator').rules as Rule[];
  t.same(operator.map((r) => [r.resources, r.verbs]), [[['namespaces'], ['get', 'list', 'patch']]], 'weft-operator: label namespaces');
  const operatorNs = one('Role', 'weft-operator');
  t.equal(operatorNs.metadata.namespace, 'weft-system');
  t.same((operatorNs.rules as Rule[]).map((r) => [r.resources, r.verbs]), [[['pods'], ['get', 'list']], [['pods/proxy'], ['get']]],
    'weft-operator: read the ztunnel admin views, GET only, in weft-system only');
  const caCluster = one('ClusterRole', 'weft-ca');
  t.same((caCluster.rules as Rule[]).map((r) => [r.apiGroups, r.resources, r.verbs, r.resourceNames]),
    [[['authentication.k8s.io'], ['tokenreviews'], ['create'], undefined], [[''], ['nodes'], ['get'], undefined]],
    'weft-ca, cluster-wide: create TokenReviews and get nodes (a deleted node gets no certificates), nothing else');
  const zt = one('ClusterRole', 'weft-ztunnel-admin-auth');
  t.same((zt.rules as Rule[]).map((r) => [r.apiGroups, r.resources, r.verbs, r.resourceNames]), [
    [['authentication.k8s.io'], ['tokenreviews'], ['create'], undefined],
    [['authorization.k8s.io'], ['subjectaccessreviews'], ['create'], undefined],
  ], 'weft-ztunnel: review admin view callers, nothing else');
  const caNs = one('Role', 'weft-ca');
  t.equal(caNs.metadata.namespace, 'weft-system');
  t.same((caNs.rules as Rule[]).map((r) => [r.apiGroups, r.resources, r.verbs, r.resourceNames]),
    [[[''], ['pods'], ['get'], undefined]], 'weft-ca: get pods, in weft-system only (the ztunnels\' namespace)');
  // Each binding grants its own role to exactly its component's ServiceAccount;
  // weft-operator is deliberately unbound, Redis is bound nowhere.
  const bindsTo: Record<string, string> = {
    'ClusterRoleBinding/weft-controller': 'weft-controller', 'RoleBinding/weft-controller-leader-election': 'weft-controller',
    'RoleBinding/weft-controller-root-cert': 'weft-controller',
    'ClusterRoleBinding/weft-ca': 'weft-ca', 'RoleBinding/weft-ca': 'weft-ca',
    'ClusterRoleBinding/weft-ztunnel-admin-auth': 'weft-ztunnel',
  };
  const bindings = [...byKind('ClusterRoleBinding'), ...byKind('RoleBinding')];
  t.same(bindings.map((b) => `${b.kind}/${b.metadata.name}`).sort(), Object.keys(bindsTo).sort(), 'exactly these bindings');
  for (const b of bindings) {
    const id = `${b.kind}/${b.metadata.name}`;
    t.same(b.subjects, [{ kind: 'ServiceAccount', name: bindsTo[id], namespace: 'weft-system' }], `${id} binds only ${bindsTo[id]}`);
    const ref = b.roleRef as { kind: string; name: string };
    t.same(ref, { apiGroup: 'rbac.authorization.k8s.io', kind: b.kind === 'RoleBinding' ? 'Role' : 'ClusterRole', name: b.metadata.name }, `${id} grants its own role`);
    if (b.kind === 'RoleBinding') t.equal(b.metadata.namespace, 'weft-system');
  }
  for (const sa of ['weft-ztunnel', 'weft-redis']) {
    t.equal(one('ServiceAccount', sa).automountServiceAccountToken, false, `${sa} gets no automounted API token`);
  }
  t.equal(one('ServiceAccount', 'weft-ca').automountServiceAccountToken, true, 'weft-ca gets an API token (TokenReviews)');
  t.equal(podSpec(one('Deployment', 'weft-ca'))!.automountServiceAccountToken, true, 'and its pods mount it');
  t.equal(podSpec(one('StatefulSet', 'weft-redis'))!.automountServiceAccountToken, false, 'Redis pods mount none');
});

t.test('the GatewayClass weft-waypoint ships beside the install, not in it (Gateway API CRDs are the user\'s)', async (t) => {
  const gc = YAML.parse(readFileSync(join(ROOT, 'daemonset', 'gateway-api', 'gatewayclass.yaml'), 'utf8'));
  t.same({ apiVersion: gc.apiVersion, kind: gc.kind, name: gc.metadata.name, controllerName: gc.spec.controllerName },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', name: 'weft-waypoint', controllerName: 'weft.io/waypoint' });
  const { WAYPOINT_GATEWAY_CLASS } = await import('../src/gateway/types');
  const { WEFT_CONTROLLER_NAME } = await import('../src/gateway/status');
  t.equal(gc.metadata.name, WAYPOINT_GATEWAY_CLASS, 'the class the controller deploys');
  t.equal(gc.spec.controllerName, WEFT_CONTROLLER_NAME, 'the controllerName route status carries');
  t.notOk(objects.some((o) => o.apiVersion.startsWith('gateway.networking.k8s.io/') || (o.kind === 'CustomResourceDefinition' && o.metadata.name.endsWith('gateway.networking.k8s.io'))),
    'kubectl apply -k needs no Gateway API CRDs, and none are vendored');
});

/** A JSON-schema subset: what the CRD's openAPIV3Schema uses (CEL rules are not run). */
function schemaErrors(v: unknown, s: Record<string, any>, path = ''): string[] {
  const out: string[] = [];
  const type = Array.isArray(v) ? 'array' : v === null ? 'null' : Number.isInteger(v) ? 'integer' : typeof v;
  if (s.type && !(s.type === type || (s.type === 'number' && type === 'integer'))) return [`${path}: expected ${s.type}, got ${type}`];
  if (s.enum && !s.enum.includes(v)) out.push(`${path}: not one of ${s.enum.join(',')}`);
  if (typeof v === 'string' && s.pattern && !new RegExp(s.pattern).test(v)) out.push(`${path}: does not match ${s.pattern}`);
  if (typeof v === 'string' && s.minLength !== undefined && v.length < s.minLength) out.push(`${path}: too short`);
  if (typeof v === 'number' && ((s.minimum !== undefined && v < s.minimum) || (s.maximum !== undefined && v > s.maximum))) out.push(`${path}: out of range`);
  if (Array.isArray(v) && s.items) v.forEach((x, i) => out.push(...schemaErrors(x, s.items, `${path}[${i}]`)));
  if (type === 'object') {
    const o = v as Record<string, unknown>;
    for (const r of s.required ?? []) if (o[r] === undefined) out.push(`${path}.${r}: required`);
    for (const [k, x] of Object.entries(o)) {
      if (s.properties?.[k]) out.push(...schemaErrors(x, s.properties[k], `${path}.${k}`));
      else if (s.additionalProperties) out.push(...schemaErrors(x, s.additionalProperties, `${path}.${k}`));
      // The API server prunes unknown fields of a structural schema; report them here.
      else if (s.properties) out.push(`${path}.${k}: unknown field (pruned)`);
    }
  }
  return out;
}

t.test('the AuthorizationPolicy CRD', async (t) => {
  const crd = one('CustomResourceDefinition', 'authorizationpolicies.security.weft.io');
  const spec = crd.spec as any;
  t.equal(spec.group, 'security.weft.io');
  t.equal(spec.scope, 'Namespaced');
  const version = spec.versions.find((v: any) => v.name === 'v1alpha1');
  t.ok(version?.served && version?.storage, 'v1alpha1 served and stored');
  t.same(version.subresources, { status: {} }, 'status subresource');
  const schema = version.schema.openAPIV3Schema;
  const conditions = schema.properties.status.properties.conditions;
  t.same(conditions.items.required, ['type', 'status']);

  const example = {
    apiVersion: 'security.weft.io/v1alpha1', kind: 'AuthorizationPolicy',
    metadata: { name: 'allow-web', namespace: 'demo' },
    spec: {
      selector: { matchLabels: { app: 'echo' } }, action: 'ALLOW',
      rules: [{ clauses: [
        { matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/web'] }, { namespaces: ['ops'], notSourceIps: ['10.0.0.0/8'] }] },
        { matches: [{ destinationPorts: [8080, 8443], notDestinationPorts: [9090] }] },
      ] }],
    },
  };
  t.same(schemaErrors(example, schema), [], 'the schema accepts a valid policy');
  const translated = policyRecord(example as never);
  t.ok(translated.ok, 'the controller turns it into a registry record');
  if (translated.ok) {
    t.match(translated.record, { namespace: 'demo', name: 'allow-web', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'ALLOW' });
  }
  t.same(schemaErrors({ ...example, spec: { action: 'DENY' } }, schema), [], 'a minimal DENY-nothing policy is valid');

  const bad = (spec: Record<string, unknown>): string[] => schemaErrors({ ...example, spec }, schema);
  t.match(bad({ action: 'MAYBE' }), [/action: not one of ALLOW,DENY/]);
  t.match(bad({ rules: [] }), [/action: required/]);
  t.match(bad({ action: 'ALLOW', scope: 'CLUSTER' }), [/scope: not one of/]);
  t.match(bad({ action: 'ALLOW', rules: [{ clauses: [{ matches: [{ destinationPorts: [70000] }] }] }] }), [/destinationPorts\[0\]: out of range/]);
  t.match(bad({ action: 'ALLOW', rules: [{ clauses: [{ matches: [{ destinationPorts: ['http'] }] }] }] }), [/expected integer/]);
  t.match(bad({ action: 'ALLOW', rules: [{ clauses: [{ matches: [{ principals: ['cluster.local/ns/a/sa/b'] }] }] }] }), [/does not match/]);
  t.match(bad({ action: 'ALLOW', rules: [{}] }), [/clauses: required/]);
  t.match(bad({ action: 'ALLOW', selector: { app: 'echo' } }), [/matchLabels: required/]);

  // Structural coverage: the schema's fields are exactly the record's (src/registry/types.ts).
  const types = readFileSync(join(ROOT, 'src', 'registry', 'types.ts'), 'utf8');
  const fieldsOf = (iface: string): string[] => {
    const body = new RegExp(`interface ${iface} \\{([\\s\\S]*?)\\n\\}`).exec(types)?.[1] ?? '';
    return [...body.matchAll(/^\s+(\w+)\??:/gm)].map((m) => m[1]!).sort();
  };
  const unionOf = (name: string): string[] =>
    [...(new RegExp(`type ${name} = ([^;]+);`).exec(types)?.[1] ?? '').matchAll(/'(\w+)'/g)].map((m) => m[1]!).sort();
  const specProps = schema.properties.spec.properties;
  // `invalid` is not the user's to set: the controller and readers mark an invalid policy with it (policy-fallback.ts).
  t.same(Object.keys(specProps).sort(), fieldsOf('AuthorizationPolicyRecord').filter((f) => f !== 'name' && f !== 'namespace' && f !== 'invalid'),
    'spec fields = record fields less name/namespace (from metadata) and the invalid marker');
  t.same([...specProps.action.enum].sort(), unionOf('PolicyAction'));
  t.same([...specProps.scope.enum].sort(), unionOf('PolicyScope'));
  const rule = specProps.rules.items;
  t.same(Object.keys(rule.properties), fieldsOf('PolicyRule'));
  const clause = rule.properties.clauses.items;
  t.same(Object.keys(clause.properties), fieldsOf('PolicyClause'));
  const match = clause.properties.matches.items;
  t.ok(fieldsOf('PolicyMatch').length >= 12, 'parsed PolicyMatch');
  t.same(Object.keys(match.properties).sort(), fieldsOf('PolicyMatch'), 'every match field, and no other');
});

t.test('the TrafficPolicy CRD', async (t) => {
  const crd = one('CustomResourceDefinition', 'trafficpolicies.networking.weft.io');
  const spec = crd.spec as any;
  t.equal(spec.group, 'networking.weft.io');
  t.equal(spec.names.kind, 'TrafficPolicy');
  t.equal(spec.scope, 'Namespaced');
  const version = spec.versions.find((v: any) => v.name === 'v1alpha1');
  t.ok(version?.served && version?.storage, 'v1alpha1 served and stored');
  t.same(version.subresources, { status: {} }, 'status subresource');
  const schema = version.schema.openAPIV3Schema;
  t.same(Object.keys(schema.properties.spec.properties).sort(), [...TRAFFIC_POLICY_SPEC_KEYS].sort(), 'spec fields = the validator\'s');
  for (const [k, s] of Object.entries(schema.properties.spec.properties as Record<string, any>)) {
    if (k !== 'targetRefs') t.ok(s['x-kubernetes-preserve-unknown-fields'], `${k}: kept whole (the controller validates it, naming the field)`);
  }
  const example = {
    apiVersion: 'networking.weft.io/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'echo', namespace: 'demo' },
    spec: { targetRefs: [{ group: '', kind: 'Service', name: 'echo' }], retry: {} },
  };
  t.same(schemaErrors(example, schema), [], 'the schema accepts a valid policy');
  const translated = trafficPolicyRecord({ ...example, metadata: { ...example.metadata, creationTimestamp: '2026-11-30T12:00:00Z' } } as never);
  t.ok(translated.ok, 'the controller turns it into a registry record');
  const bad = (s: Record<string, unknown>): string[] => schemaErrors({ ...example, spec: s }, schema);
  t.match(bad({}), [/targetRefs: required/]);
  t.match(bad({ targetRefs: [{ kind: 'Pod', name: 'x' }] }), [/kind: not one of Service/]);
  t.match(bad({ targetRefs: [{ kind: 'Service', name: 'x' }], retries: {} }), [/retries: unknown field/]);
});

/** Literal `env` entries of a workload's first container. */
const literalEnvOf = (w: K8sObject): Record<string, string> =>
  Object.fromEntries(((podContainers(w)[0]!.env as { name: string; value?: string }[] | undefined) ?? [])
    .filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));

// The Secrets the manifests mount, made as an operator makes them (scripts/redis-secrets),
// so the components' file flags can be parsed against real files.
const secretsDir = mkdtempSync(join(tmpdir(), 'weft-manifest-secrets-'));
t.teardown(() => rmSync(secretsDir, { recursive: true, force: true }));
const secretYaml = makeRedisSecrets(secretsDir);
/** weft-config plus the workload's literal env, with its Secret mounts mapped onto the local copies. */
const componentEnv = (w: K8sObject): Record<string, string> =>
  localEnv({ ...(one('ConfigMap', 'weft-config').data ?? {}) as Record<string, string>, ...literalEnvOf(w) }, secretMounts(w, secretsDir));

t.test('Redis: TLS only, one ACL user per component, reachable only from Weft', async (t) => {
  const redis = one('StatefulSet', 'weft-redis');
  const rc = podContainers(redis)[0]!;
  const args = rc.args as string[];
  const arg = (flag: string): string | undefined => { const i = args.indexOf(flag); return i === -1 ? undefined : args[i + 1]; };
  t.equal(arg('--port'), '0', 'no plaintext port');
  t.equal(arg('--tls-port'), String((rc.ports as { containerPort: number }[])[0]!.containerPort), 'TLS on the container port');
  const mounts = secretMounts(redis, secretsDir);
  const mountOf = (secret: string): string => [...mounts].find(([, local]) => local.endsWith(`/${secret}`))?.[0] ?? '(none)';
  t.equal(arg('--aclfile'), `${mountOf('weft-redis-acl')}/users.acl`, 'users from the weft-redis-acl Secret');
  for (const [flag, key] of [['--tls-cert-file', 'tls.crt'], ['--tls-key-file', 'tls.key'], ['--tls-ca-cert-file', 'ca.crt']]) {
    t.equal(arg(flag!), `${mountOf('weft-redis-tls')}/${key}`, `${flag} from the weft-redis-tls Secret`);
  }
  t.notOk(args.includes('--requirepass') || args.includes('--user'), 'no password on the command line');

  const config = one('ConfigMap', 'weft-config').data as Record<string, string>;
  t.match(config.WEFT_REDIS_URL, /^rediss:\/\/weft-redis\.weft-system\.svc:6379$/, 'components dial TLS');
  t.notMatch(config.WEFT_REDIS_URL, /@/, 'no credentials in the URL');
  const rules = readFileSync(join(DIR, 'redis-acl.rules'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.trim().split(/\s+/));
  const ruleOf = new Map(rules.map(([user, ...r]) => [user!, r]));
  t.same([...ruleOf.keys()].sort(), ['weft-ca', 'weft-controller', 'weft-operator', 'weft-waypoint', 'weft-ztunnel'], 'one user per component (waypoints included), and the operator');
  for (const [user, r] of ruleOf) {
    t.same(r.slice(0, 2), ['resetkeys', 'resetchannels'], `${user}: no key or channel but those listed`);
    t.ok(r.includes('-@all'), `${user}: every command denied first`);
    t.notOk(r.some((x) => ['~*', '%R~*', '%W~*', '%RW~*', 'allkeys', '+@all', 'allcommands', '&*', 'allchannels', 'nopass', 'on', 'off'].includes(x) || x.startsWith('>') || x.startsWith('#')),
      `${user}: no wildcard, no password or state in the rules (the script adds them)`);
    t.notOk(r.some((x) => /^\+(@|config|acl|flush|keys|scan|debug|module|script|info|select|shutdown|save|bgsave|replicaof|monitor|eval_ro)/i.test(x) && x !== '+eval'),
      `${user}: no administrative command`);
  }
  const caKeys = (user: string): string[] => ruleOf.get(user)!.filter((x) => x.includes('weft:ca:'));
  t.same(caKeys('weft-ca'), [], 'the CA: no key of its own in Redis (root from a Secret, TokenReview joins)');
  t.same(caKeys('weft-ztunnel'), [], 'the ztunnel: no CA key (trust anchors from a file)');
  t.same(caKeys('weft-controller'), [], 'the controller: no CA key');
  t.same(caKeys('weft-operator'), [], 'the operator: no CA key');
  const WRITES = ['+set', '+incr', '+hset', '+hdel', '+xadd', '+eval', '+evalsha', '+del'];
  const ztunnelRules = ruleOf.get('weft-ztunnel')!;
  t.ok(ztunnelRules.filter((x) => x.includes('~')).every((x) => x.startsWith('%R~')), 'weft-ztunnel: read-only key patterns');
  t.same(ztunnelRules.filter((x) => WRITES.includes(x)), [], 'weft-ztunnel: no write command');
  const caRules = ruleOf.get('weft-ca')!;
  t.ok(caRules.filter((x) => x.includes('~')).every((x) => x.startsWith('%R~')), 'weft-ca: the registry read-only');
  t.same(caRules.filter((x) => WRITES.includes(x)), [], 'weft-ca: no write command');
  t.ok(ruleOf.get('weft-controller')!.filter((x) => x.includes('~')).every((x) => /^~weft:(node|namespace|workload|service|policy|peerauth|waypoint|httproute|grpcroute|trafficpolicy|revision|epoch|changes)$/.test(x)),
    'weft-controller: the registry keys only');

  // Each component: its own user and its own Secret, and nothing of anyone else's.
  const users: Record<string, string> = { 'weft-controller': 'weft-controller', 'weft-ca': 'weft-ca', 'weft-ztunnel': 'weft-ztunnel' };
  const mountedSecrets = (w: K8sObject): string[] =>
    ((podSpec(w)!.volumes as { secret?: { secretName: string; defaultMode?: number } }[] | undefined) ?? [])
      .filter((v) => v.secret).map((v) => v.secret!.secretName);
  for (const w of workloads.filter((x) => x.metadata.name !== 'weft-redis')) {
    const user = users[w.metadata.name]!;
    t.equal(literalEnvOf(w).WEFT_REDIS_USERNAME, user, `${w.metadata.name} connects as ${user}`);
    t.ok(ruleOf.has(user), `${user} is in redis-acl.rules`);
    t.same(mountedSecrets(w).filter((s) => s.startsWith('weft-redis')), [`weft-redis-user-${user.slice(5)}`], `${w.metadata.name} mounts only its own Redis Secret`);
    const m = secretMounts(w, secretsDir);
    // Besides its Redis Secret, only the CA mounts one: its root (made by `weft ca init-root`).
    t.same([...m.keys()].filter((p) => !(w.metadata.name === 'weft-ca' && p === '/etc/weft/ca-root')), ['/var/run/secrets/weft/redis'],
      `${w.metadata.name}: at the path weft-config names`);
    const conn = redisTarget({
      redisUrl: config.WEFT_REDIS_URL!, redisUsername: user, redisPasswordFile: componentEnv(w).WEFT_REDIS_PASSWORD_FILE!,
      redisCaFile: componentEnv(w).WEFT_REDIS_CA_FILE!, redisCertFile: '', redisKeyFile: '',
      redisSentinels: '', redisMasterName: '', redisSentinelUsername: '', redisSentinelPasswordFile: '',
    });
    t.match(conn, { username: user, passwordFile: /weft-redis-user-.*\/password$/, caFile: /\/ca\.crt$/ }, `${w.metadata.name}: password and CA bundle from its Secret`);
  }
  t.same(mountedSecrets(redis).sort(), ['weft-redis-acl', 'weft-redis-tls'], 'only Redis mounts its users and its key');
  for (const w of workloads) {
    for (const v of (podSpec(w)!.volumes as { secret?: { defaultMode?: number } }[] | undefined) ?? []) {
      if (v.secret) t.ok((v.secret.defaultMode ?? 0o644) <= 0o440 && ((v.secret.defaultMode ?? 0o644) & 0o007) === 0, `${w.metadata.name}: Secret files not world-readable`);
    }
  }
  const made = new Set([...secretYaml.matchAll(/^  name: (\S+)$/gm)].map((m) => m[1]));
  for (const w of workloads) {
    for (const s of mountedSecrets(w)) {
      if (s === 'weft-ca-root') continue; // the mesh root: `weft ca init-root`, docs/kubernetes.md
      t.ok(made.has(s), `scripts/redis-secrets makes ${s}`);
    }
  }

  const np = one('NetworkPolicy', 'weft-redis');
  type Peer = { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: unknown; ipBlock?: { cidr: string } };
  const spec = np.spec as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: { from: Peer[]; ports: { protocol: string; port: number }[] }[] };
  t.same(spec.podSelector.matchLabels, (redis.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, 'selects the Redis pods');
  t.same(spec.policyTypes, ['Ingress']);
  t.equal(spec.ingress.length, 1, 'one rule');
  t.same(spec.ingress[0]!.ports, [{ protocol: 'TCP', port: 6379 }], 'the TLS port only');
  const from = spec.ingress[0]!.from;
  t.same(from.filter((p) => p.podSelector).map((p) => p.podSelector!.matchLabels['app.kubernetes.io/name']).sort(), ['weft-ca', 'weft-controller'],
    'the controller and CA pods, by label, in weft-system (no namespaceSelector)');
  t.notOk(from.some((p) => p.namespaceSelector), 'no other namespace');
  const blocks = from.filter((p) => p.ipBlock).map((p) => p.ipBlock!.cidr);
  t.equal(blocks.length, 1, 'one ipBlock: the nodes, for the hostNetwork ztunnels');
  t.notOk(blocks.some((c) => /\/0$/.test(c)), 'not the whole Internet');
  t.equal(podSpec(ztunnel)!.hostNetwork, true, 'which is why the ztunnels need an ipBlock rather than a pod selector');
});

t.test('component flags and environment parse with the components’ own parsers', async (t) => {
  const zc = podContainers(ztunnel)[0]!;
  const zArgs = zc.args as string[];
  t.equal(zArgs[0], 'ztunnel');
  const env = { ...componentEnv(ztunnel), WEFT_NODE_NAME: 'node-1', WEFT_NODE_ADDRESS: '203.0.113.7' };
  const z = loadZtunnelConfig(zArgs.slice(1), env);
  t.equal(z.capture, true, 'capture on');
  t.same(z.caAddress, { host: 'weft-ca.weft-system.svc', port: 15012 });
  t.equal(z.redisUrl, 'rediss://weft-redis.weft-system.svc:6379');
  t.equal(z.redisUsername, 'weft-ztunnel');
  t.equal(z.joinToken, '', 'no join token');
  t.equal(z.joinSaTokenFile, '/var/run/secrets/weft/ca-token/token', 'joins with the projected token');
  const grace = (podSpec(ztunnel)!.terminationGracePeriodSeconds as number) * 1000;
  t.ok(z.drainTimeout > 0 && z.drainTimeout + 5000 <= grace,
    `the drain (${z.drainTimeout} ms) ends at least 5 s inside terminationGracePeriodSeconds (${grace} ms), so the kubelet never SIGKILLs a drain`);

  const ca = podContainers(one('Deployment', 'weft-ca'))[0]!;
  const args = ca.args as string[];
  t.equal(args[0], 'ca');
  const cfg = caConfig(parseOptions(caSpecs, args.slice(1), componentEnv(one('Deployment', 'weft-ca'))).values);
  t.equal(toConnection(cfg.redis).username, 'weft-ca', 'the CA connects as weft-ca');
  t.same(cfg.listen, { host: '0.0.0.0', port: 15012 });
  t.ok(cfg.dnsNames.includes(z.caAddress.host), 'the CA certificate names the address ztunnels dial');
  const projected = (podSpec(ztunnel)!.volumes as { projected?: { sources: { serviceAccountToken?: { audience: string } }[] } }[])
    .find((v) => v.projected)?.projected?.sources[0]?.serviceAccountToken;
  t.same(cfg.tokenReview, {
    kubeconfig: '',
    policy: { audience: projected?.audience, namespace: ztunnel.metadata.namespace, serviceAccount: podSpec(ztunnel)!.serviceAccountName },
  }, 'the CA reviews tokens in-cluster, for the audience the ztunnel projects and the ServiceAccount it runs as');
  t.equal(cfg.tokenReview?.policy.namespace, one('Role', 'weft-ca').metadata.namespace, 'the CA may read pods where the ztunnels run');

  // Trust chain: the CA's root from a Secret (never Redis, never generated), the
  // ztunnels' trust anchors from a mounted ConfigMap.
  t.same(cfg.root, { kind: 'dir', dir: '/etc/weft/ca-root' }, 'the CA reads its root from a directory');
  t.notOk(cfg.generateRoot, 'and never generates one');
  const caPod = podSpec(one('Deployment', 'weft-ca'))!;
  const caVol = (caPod.volumes as { name: string; secret?: { secretName: string; optional?: boolean; defaultMode?: number } }[]).find((v) => v.secret?.secretName === 'weft-ca-root');
  t.same(caVol?.secret, { secretName: 'weft-ca-root', defaultMode: 0o440 }, 'from the Secret weft-ca-root (not optional), owner and group read only');
  t.same((ca.volumeMounts as { name: string }[]).find((m) => m.name === caVol?.name), { name: caVol?.name, mountPath: '/etc/weft/ca-root', readOnly: true }, 'mounted read-only at --root-dir');
  t.equal((caPod.securityContext as { fsGroup?: number }).fsGroup, (caPod.securityContext as { runAsUser?: number }).runAsUser, 'the CA\'s group may read the key');
  const zVol = (podSpec(ztunnel)!.volumes as { name: string; configMap?: { name: string } }[]).find((v) => v.configMap);
  t.same(zVol?.configMap, { name: 'weft-root-cert' }, 'the ztunnel mounts the ConfigMap weft-root-cert');
  const zMount = (zc.volumeMounts as { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[]).find((m) => m.name === zVol?.name);
  t.same(zMount, { name: zVol?.name, mountPath: '/etc/weft/trust-anchors', readOnly: true }, 'read-only, no subPath (so rotations reach the file)');
  t.equal(z.trustAnchorFile, `${zMount?.mountPath}/root-cert.pem`, 'and trusts the root bundle in it');
  t.notOk(JSON.stringify(podSpec(ztunnel)).includes('weft-ca-root'), 'the ztunnel never sees the root key Secret');

  const ctl = podContainers(one('Deployment', 'weft-controller'))[0]!;
  t.equal((ctl.args as string[])[0], 'controller');
  t.ok((ctl.args as string[]).includes('--lease-namespace=weft-system'));
  const ctlValues = parseOptions(controllerSpecs, (ctl.args as string[]).slice(1), componentEnv(one('Deployment', 'weft-controller'))).values;
  t.equal(redisTarget(ctlValues).username, 'weft-controller', 'the controller connects as weft-controller');
  t.equal(ctlValues.leaseNamespace, 'weft-system');
  const leaseRule = (one('Role', 'weft-controller-leader-election').rules as { verbs: string[]; resourceNames?: string[] }[])
    .find((r) => r.verbs.includes('update'));
  t.same(leaseRule?.resourceNames, [ctlValues.leaseName], 'RBAC names the Lease the controller renews');
  const probePorts = ['readinessProbe', 'livenessProbe'].map((p) => (ctl[p] as { httpGet?: { port: number } } | undefined)?.httpGet?.port);
  t.same(probePorts, [ctlValues.metricsListen?.port, ctlValues.metricsListen?.port], 'controller probes on its --metrics-listen port');
  t.equal((ctl.readinessProbe as { httpGet: { path: string } }).httpGet.path, '/healthz/ready');
});

t.test('the Dockerfile builds what the manifests run', async (t) => {
  const df = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: { weft: string } };
  const entry = /^ENTRYPOINT (\[.*\])$/m.exec(df)?.[1];
  t.same(JSON.parse(entry ?? '[]'), ['node', `/app/${pkg.bin.weft}`], 'ENTRYPOINT runs package.json bin');
  t.match(df, /^FROM node:\$\{NODE_VERSION\}-bookworm AS build$/m, 'the build stage has a C compiler for the native helper');
  // weft_memory.node is built against V8's C++ headers (no stable ABI): both stages must
  // run one exact Node release, never a floating tag.
  t.match(df, /^ARG NODE_VERSION=\d+\.\d+\.\d+$/m, 'one exact Node version, pinned');
  const froms = [...df.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  t.same(froms, ['node:${NODE_VERSION}-bookworm', 'node:${NODE_VERSION}-bookworm-slim'], 'both stages on the pinned version');
  t.match(df, /build-native\.js && test -f native\/build\/weft_native\.node/, 'the image must contain the native SO_ORIGINAL_DST helper');
  t.match(df, /npm ci/);
  t.match(df, /tsc -p tsconfig\.json/);
  t.match(df, /apt-get install[^\n]*iptables[^\n]*iproute2/, 'runtime has iptables and ip');
  for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of m[1]!.split(/\s+/)) t.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists`);
  }
  for (const dir of ['dist/', 'node_modules/', 'proto/', 'native/build/']) t.match(df, new RegExp(`COPY .*${dir} \\./${dir}`), `runtime gets ${dir}`);
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const needed of ['src', 'proto', 'package.json', 'package-lock.json', 'tsconfig.json']) {
    t.notOk(ignore.includes(needed), `.dockerignore keeps ${needed}`);
  }
  for (const w of workloads.filter((x) => x.metadata.name !== 'weft-redis')) {
    const c = podContainers(w)[0]!;
    t.equal(c.command, undefined, `${w.metadata.name} runs the image's entry point`);
    t.ok(Array.isArray(c.args) && typeof (c.args as string[])[0] === 'string', `${w.metadata.name} passes the weft command as args`);
  }
});
