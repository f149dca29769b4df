/**
 * The controller's Gateway API side against the API-server stand-in and a real
 * redis-server: HTTPRoute/GRPCRoute/Gateway mirrored into the registry, route status
 * written (and only when it changed), invalid routes skipped and reported, and the
 * other kinds still mirrored while the Gateway API CRDs are missing.
 */
import t, { type Test } from 'tap';
import { RegistryStore } from '../src/registry/store';
import {
  TestApiServer, gatewayObj, httpRouteObj, namespaceObj, nodeObj, podObj, serviceObj,
} from './helpers/apiserver';
import { startRedis, type TestRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { controllerRig } from './helpers/controller-rig';
import type { WaypointDeployConfig } from '../src/controller/waypoint-deploy';
import { WAYPOINT_NODE_FLAGS } from '../src/waypoint/node-flags';

let redis: TestRedis;
t.before(async () => {
  redis = await startRedis();
});
t.teardown(() => redis.stop());

const WAYPOINTS: WaypointDeployConfig = {
  image: 'registry.example.com/weft:1.2.3', redisUrl: 'rediss://weft-redis.weft-system.svc:6379', redisAuth: true,
  caAddress: 'weft-ca.weft-system.svc:15012', trustDomain: 'cluster.local', logLevel: 'info', systemNamespace: 'weft-system',
};
const ROOT_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

const rig = (t: Test, opts: { crds?: boolean; waypoints?: WaypointDeployConfig } = {}) => controllerRig(t, redis.url, {
  ...(opts.crds === false ? { missingGroups: ['gateway.networking.k8s.io'] } : {}), ...(opts.waypoints ? { waypoints: opts.waypoints } : {}),
});

function seed(api: TestApiServer): void {
  api.put('nodes', nodeObj('node-1', '203.0.113.10', '10.244.1.0/24'));
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  api.put('pods', podObj('demo', 'echo-v1-a', { node: 'node-1', ip: '10.244.1.5', labels: { app: 'echo', version: 'v1' } }));
  for (const [name, ip, version] of [['echo', '10.96.0.10', undefined], ['echo-v1', '10.96.0.11', 'v1'], ['echo-v2', '10.96.0.12', 'v2']] as const) {
    api.put('services', serviceObj('demo', name, { clusterIP: ip, selector: { app: 'echo', ...(version ? { version } : {}) }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }));
  }
}

const canary = (backends: Record<string, unknown>[]) => ({
  parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
  rules: [{ backendRefs: backends }],
});

async function snapshot(store: RegistryStore) {
  return (await store.snapshot()).records;
}

type Parents = { parentRef: Record<string, unknown>; controllerName: string; conditions: { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime?: string }[] }[];
const parentsOf = (api: TestApiServer, plural: string, name: string): Parents => (api.get(plural, 'demo', name)?.status?.parents ?? []) as Parents;
const cond = (p: Parents, type: string) => p.find((x) => x.controllerName === 'weft.io/waypoint')?.conditions.find((c) => c.type === type);

t.test('routes are mirrored with their creationTimestamp, and status written per Service parentRef', async (t) => {
  const { api, store, controller } = await rig(t);
  seed(api);
  api.put('httproutes', httpRouteObj('demo', 'canary', canary([{ name: 'echo-v1', port: 80, weight: 95 }, { name: 'echo-v2', port: 80, weight: 5 }])));
  api.put('httproutes', httpRouteObj('demo', 'missing', canary([{ name: 'echo-v1', port: 80 }, { name: 'echo-v9', port: 80 }])));
  api.put('httproutes', httpRouteObj('demo', 'wrong-kind', canary([{ group: 'example.com', kind: 'Bucket', name: 'b' }])));
  api.put('grpcroutes', { metadata: { name: 'grpc', namespace: 'demo' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo-v2' }], rules: [{ backendRefs: [{ name: 'echo-v2', port: 80 }] }] } });
  // Another controller's entry (an ingress Gateway parent) must survive Weft's writes.
  api.modify('httproutes', 'demo', 'missing', (o) => {
    o.status = { parents: [{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'ingress' }, controllerName: 'example.com/ingress', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2024-01-01T00:00:00Z' }] }] };
  });
  controller.start();
  await waitFor('routes mirrored', async () => {
    const r = await snapshot(store);
    return r.httproute.length === 3 && r.grpcroute.length === 1;
  });
  const r = await snapshot(store);
  const stored = api.get('httproutes', 'demo', 'canary')!;
  const rec = r.httproute.find((x) => x.name === 'canary')!;
  t.equal(rec.creationTimestamp, new Date(stored.metadata.creationTimestamp).toISOString(), 'creationTimestamp from metadata');
  t.same(rec.spec.rules[0]!.backendRefs.map((b) => [b.name, b.weight]), [['echo-v1', 95], ['echo-v2', 5]], 'the validated spec with weights');

  await waitFor('status on every route', () => ['canary', 'missing', 'wrong-kind'].every((n) => cond(parentsOf(api, 'httproutes', n), 'ResolvedRefs')) &&
    cond(parentsOf(api, 'grpcroutes', 'grpc'), 'Accepted') !== undefined);
  const ok = parentsOf(api, 'httproutes', 'canary');
  t.match(cond(ok, 'Accepted'), { status: 'True', reason: 'Accepted', observedGeneration: 1 });
  t.match(cond(ok, 'ResolvedRefs'), { status: 'True', reason: 'ResolvedRefs' });
  t.same(ok[0]!.parentRef, { group: '', kind: 'Service', name: 'echo', port: 80 }, 'the parentRef as validated');
  const missing = parentsOf(api, 'httproutes', 'missing');
  t.match(cond(missing, 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound', message: /echo-v9/ });
  t.match(missing.find((p) => p.controllerName === 'example.com/ingress'), { conditions: [{ message: 'theirs' }] }, "another controller's entry kept");
  t.equal(missing.length, 2);
  t.match(cond(parentsOf(api, 'httproutes', 'wrong-kind'), 'ResolvedRefs'), { status: 'False', reason: 'InvalidKind', message: /Bucket/ });
  t.match(cond(parentsOf(api, 'grpcroutes', 'grpc'), 'Accepted'), { status: 'True' });

  // Unchanged status is not written again, whatever else happens.
  const statusWrites = () => api.requests.filter((q) => q.method === 'PATCH' && q.path.endsWith('/status')).length;
  const before = statusWrites();
  t.equal(before, 4, 'one write per route');
  api.put('pods', podObj('demo', 'echo-v1-b', { node: 'node-1', ip: '10.244.1.6', labels: { app: 'echo', version: 'v1' } }));
  await waitFor('the new pod mirrored', async () => (await snapshot(store)).workload.length === 2);
  api.bookmark();
  await new Promise((r) => setTimeout(r, 100));
  t.equal(statusWrites(), before, 'no status write when nothing changed');

  // A backend appearing flips ResolvedRefs; lastTransitionTime moves only for the flipped one.
  const acceptedSince = cond(parentsOf(api, 'httproutes', 'missing'), 'Accepted')!.lastTransitionTime;
  api.put('services', serviceObj('demo', 'echo-v9', { clusterIP: '10.96.0.19', selector: { app: 'echo' }, ports: [{ port: 80 }] }));
  await waitFor('ResolvedRefs True', () => cond(parentsOf(api, 'httproutes', 'missing'), 'ResolvedRefs')?.status === 'True');
  t.equal(cond(parentsOf(api, 'httproutes', 'missing'), 'Accepted')!.lastTransitionTime, acceptedSince, 'Accepted kept its transition time');

  // Deleting a route deletes its record.
  api.remove('httproutes', 'demo', 'wrong-kind');
  await waitFor('record deleted', async () => (await snapshot(store)).httproute.length === 2);
});

t.test('an invalid route is skipped, logged naming the field, and reported in its status', async (t) => {
  const { api, store, controller, logs } = await rig(t);
  seed(api);
  api.put('httproutes', httpRouteObj('demo', 'good', canary([{ name: 'echo-v1', port: 80 }])));
  api.put('httproutes', httpRouteObj('demo', 'bad', {
    parentRefs: [{ group: '', kind: 'Service', name: 'echo' }],
    rules: [{ matches: [{ path: { type: 'RegularExpression', value: '(a+)+(' } }], backendRefs: [{ name: 'echo-v1', port: 80 }] }],
  }));
  controller.start();
  await waitFor('status on the bad route', () => cond(parentsOf(api, 'httproutes', 'bad'), 'Accepted') !== undefined);
  t.match(cond(parentsOf(api, 'httproutes', 'bad'), 'Accepted'), { status: 'False', reason: 'UnsupportedValue', message: /spec\.rules\[0\]\.matches\[0\]\.path\.value/ });
  const r = await snapshot(store);
  t.same(r.httproute.map((x) => x.name), ['good'], 'only the valid route is in the registry');
  const lines = logs.filter((l) => /HTTPRoute demo\/bad is invalid/.test(l.msg));
  t.equal(lines.length, 1, 'one log line');
  t.match(lines[0]!.msg, /spec\.rules\[0\]\.matches\[0\]\.path\.value/, 'it names the field');
  // More ticks do not repeat it.
  api.put('pods', podObj('demo', 'other', { node: 'node-1', ip: '10.244.1.7', labels: { app: 'x' } }));
  await waitFor('pod mirrored', async () => (await snapshot(store)).workload.length === 2);
  t.equal(logs.filter((l) => /HTTPRoute demo\/bad is invalid/.test(l.msg)).length, 1, 'rate-limited: not repeated while unchanged');
  // Fixing it mirrors it and flips the status.
  api.put('httproutes', httpRouteObj('demo', 'bad', canary([{ name: 'echo-v1', port: 80 }])));
  await waitFor('fixed route mirrored', async () => (await snapshot(store)).httproute.length === 2);
  await waitFor('Accepted True', () => cond(parentsOf(api, 'httproutes', 'bad'), 'Accepted')?.status === 'True');
});

t.test('without the Gateway API CRDs every other kind is mirrored, and the CRDs are picked up when they appear', async (t) => {
  const { api, store, controller, logs } = await rig(t, { crds: false });
  seed(api);
  controller.start();
  await waitFor('nodes, namespaces, pods and services mirrored', async () => {
    const r = await snapshot(store);
    return r.node.length === 1 && r.namespace.length === 1 && r.workload.length === 1 && r.service.length === 3;
  });
  t.ok(controller.synced, 'synced although the Gateway API is not served');
  t.ok(controller.gatewayAPIMissing);
  await waitFor('several retries', () => api.requests.filter((q) => q.path.endsWith('/httproutes') && q.method === 'GET').length >= 3);
  const warned = logs.filter((l) => /Gateway API CRDs are not installed/.test(l.msg));
  t.equal(warned.length, 1, 'logged once, not per retry');
  t.match(warned[0]!.msg, /standard-install\.yaml/, 'says what to install');
  // Other kinds keep flowing while the Gateway API is absent.
  api.put('pods', podObj('demo', 'late', { node: 'node-1', ip: '10.244.1.9', labels: { app: 'late' } }));
  await waitFor('a later pod mirrored', async () => (await snapshot(store)).workload.length === 2);

  api.setGatewayAPIInstalled(true);
  api.put('httproutes', httpRouteObj('demo', 'canary', canary([{ name: 'echo-v1', port: 80 }])));
  api.put('gateways', gatewayObj('demo', 'waypoint'));
  await waitFor('route and waypoint mirrored', async () => {
    const r = await snapshot(store);
    return r.httproute.length === 1 && r.waypoint.length === 1;
  });
  // Each of the three Gateway API informers re-lists on its own backoff: GRPCRoutes (no
  // object here) may be seen served a moment after the other two.
  await waitFor('every Gateway API resource seen served again', () => !controller.gatewayAPIMissing);
  t.notOk(controller.gatewayAPIMissing);
  t.ok(logs.some((l) => /Gateway API CRDs found/.test(l.msg)), 'the recovery is logged');
  await waitFor('status written', () => cond(parentsOf(api, 'httproutes', 'canary'), 'Accepted')?.status === 'True');

  // CRDs removed again: their records go, everything else stays.
  api.setGatewayAPIInstalled(false);
  await waitFor('Gateway API records removed', async () => {
    const r = await snapshot(store);
    return r.httproute.length === 0 && r.waypoint.length === 0 && r.workload.length === 2;
  });
});

t.test('Gateways: only class weft-waypoint becomes a waypoint record', async (t) => {
  const { api, store, controller } = await rig(t);
  seed(api);
  api.put('gateways', gatewayObj('demo', 'waypoint', { labels: { 'weft.io/waypoint-for': 'service' }, annotations: { 'weft.io/service-account': 'wp-sa' } }));
  api.put('gateways', gatewayObj('demo', 'ingress', { className: 'some-ingress' }));
  controller.start();
  await waitFor('waypoint mirrored', async () => (await snapshot(store)).waypoint.length === 1);
  t.same((await snapshot(store)).waypoint, [{ name: 'waypoint', namespace: 'demo', serviceAccount: 'wp-sa', for: 'service' }]);
});

t.test('a weft-waypoint Gateway is deployed: ServiceAccount, trust anchors, Deployment and Service, owned by the Gateway', async (t) => {
  const { api, store, controller } = await rig(t, { waypoints: WAYPOINTS });
  seed(api);
  api.put('configmaps', { metadata: { name: 'weft-root-cert', namespace: 'weft-system' }, data: { 'root-cert.pem': ROOT_PEM } });
  const gw = api.put('gateways', gatewayObj('demo', 'waypoint', { annotations: { 'weft.io/service-account': 'wp-sa' } }));
  controller.start();
  await waitFor('objects applied', () => api.get('services', 'demo', 'waypoint') !== undefined);
  const owner = [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: gw.metadata.uid, controller: true, blockOwnerDeletion: true }];
  const sa = api.get('serviceaccounts', 'demo', 'wp-sa')!;
  t.same(sa.metadata.ownerReferences, owner, 'ServiceAccount owned by the Gateway');
  const cm = api.get('configmaps', 'demo', 'waypoint-weft-root-cert')!;
  t.same(cm.data, { 'root-cert.pem': ROOT_PEM }, 'the trust anchors copied into the namespace');
  t.same(cm.metadata.ownerReferences, owner);
  const dep = api.get('deployments', 'demo', 'waypoint')!;
  t.same(dep.metadata.ownerReferences, owner, 'Deployment owned by the Gateway');
  t.equal(dep.metadata.annotations['weft.test/field-manager'], 'weft-controller', 'server-side apply as weft-controller');
  const pod = dep.spec.template.spec;
  t.same(dep.spec.template.metadata.labels['gateway.networking.k8s.io/gateway-name'], 'waypoint');
  t.same(dep.spec.template.metadata.labels['weft.io/dataplane-mode'], 'none', 'never enrolled itself');
  t.equal(pod.serviceAccountName, 'wp-sa');
  t.equal(pod.automountServiceAccountToken, false, 'no API token in the pod');
  const c = pod.containers[0];
  t.equal(c.image, WAYPOINTS.image);
  t.same(c.args, ['waypoint', 'run', '--name', 'waypoint', '--namespace', 'demo', '--service-account', 'wp-sa']);
  const env = Object.fromEntries(c.env.map((e: { name: string; value?: string; valueFrom?: unknown }) => [e.name, e.value ?? e.valueFrom]));
  t.same(env.WEFT_WAYPOINT_ADDRESS, { fieldRef: { fieldPath: 'status.podIP' } }, 'the pod address from the downward API');
  t.equal(env.NODE_OPTIONS, WAYPOINT_NODE_FLAGS.join(' '), 'the V8 flags the lab runs a waypoint with (src/waypoint/node-flags.ts)');
  t.match(env, {
    WEFT_REDIS_URL: WAYPOINTS.redisUrl, WEFT_REDIS_USERNAME: 'weft-waypoint', WEFT_CA_ADDRESS: WAYPOINTS.caAddress, WEFT_TRUST_DOMAIN: 'cluster.local',
    WEFT_IDENTITY_TOKEN_FILE: '/var/run/secrets/weft/ca-token/token', WEFT_TRUST_ANCHOR_FILE: '/etc/weft/trust-anchors/root-cert.pem',
  });
  const token = pod.volumes.find((v: { name: string }) => v.name === 'weft-ca-token');
  t.same(token.projected.sources, [{ serviceAccountToken: { path: 'token', audience: 'weft-ca', expirationSeconds: 3600 } }], 'a pod-bound token for the CA only');
  t.same(pod.volumes.find((v: { name: string }) => v.name === 'trust-anchors').configMap, { name: 'waypoint-weft-root-cert' });
  t.same(c.readinessProbe.httpGet, { path: '/healthz/ready', port: 15021 });
  t.same(c.ports.map((p: { containerPort: number }) => p.containerPort), [15008, 15020, 15021]);
  const svc = api.get('services', 'demo', 'waypoint')!;
  t.same(svc.metadata.ownerReferences, owner, 'Service owned by the Gateway');
  t.same(svc.spec.ports.find((p: { port: number }) => p.port === 15008), { name: 'mesh', port: 15008, targetPort: 15008, protocol: 'TCP' });
  t.same(svc.spec.selector, { 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
  t.equal(svc.metadata.labels['weft.io/use-waypoint'], 'none', 'the waypoint Service is never sent through a waypoint');

  await waitFor('Gateway Programmed', () => (api.get('gateways', 'demo', 'waypoint')?.status?.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Programmed' && c.status === 'True'));
  t.same(api.get('gateways', 'demo', 'waypoint')!.status.addresses, [{ type: 'Hostname', value: 'waypoint.demo.svc.cluster.local' }]);
  await waitFor('waypoint record and its Service mirrored', async () => {
    const r = await snapshot(store);
    return r.waypoint.length === 1 && r.service.some((x) => x.name === 'waypoint' && x.waypoint === 'none');
  });

  // Converged: unrelated changes apply nothing again.
  const applies = () => api.requests.filter((q) => q.method === 'PATCH' && !q.path.endsWith('/status')).length;
  const n = applies();
  t.equal(n, 4, 'four objects applied once');
  api.put('pods', podObj('demo', 'other', { node: 'node-1', ip: '10.244.1.8', labels: { app: 'x' } }));
  await waitFor('pod mirrored', async () => (await snapshot(store)).workload.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(applies(), n, 'nothing re-applied');

  // A change of the Gateway (its service account) is applied.
  api.modify('gateways', 'demo', 'waypoint', (o) => { o.metadata.annotations['weft.io/service-account'] = 'other-sa'; });
  await waitFor('new service account', () => api.get('deployments', 'demo', 'waypoint')?.spec.template.spec.serviceAccountName === 'other-sa');
  t.ok(api.get('serviceaccounts', 'demo', 'other-sa'), 'its ServiceAccount made too');
});

t.test('a waypoint that cannot be deployed says why in the Gateway status; an invalid Gateway is not deployed', async (t) => {
  const { api, controller } = await rig(t, { waypoints: WAYPOINTS });
  seed(api);
  api.put('gateways', gatewayObj('demo', 'waypoint'));
  const bad = gatewayObj('demo', 'bad');
  bad.spec.listeners = [{ name: 'http', port: 80, protocol: 'HTTP' }];
  api.put('gateways', bad);
  controller.start();
  const condition = (name: string, type: string) => (api.get('gateways', 'demo', name)?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
  await waitFor('statuses', () => condition('waypoint', 'Programmed') !== undefined && condition('bad', 'Accepted') !== undefined);
  t.match(condition('waypoint', 'Programmed'), { status: 'False', reason: 'NoResources', message: /weft-root-cert/ }, 'no trust anchors yet');
  t.match(condition('bad', 'Accepted'), { status: 'False', reason: 'ListenersNotValid', message: /spec\.listeners\[0\]\.port/ });
  t.notOk(api.get('deployments', 'demo', 'bad'), 'nothing deployed for the invalid Gateway');
  t.notOk(api.get('deployments', 'demo', 'waypoint'));
  // The ConfigMap appears; the next change of the Gateway deploys it.
  api.put('configmaps', { metadata: { name: 'weft-root-cert', namespace: 'weft-system' }, data: { 'root-cert.pem': ROOT_PEM } });
  api.modify('gateways', 'demo', 'waypoint', (o) => { o.metadata.labels['weft.io/waypoint-for'] = 'service'; });
  await waitFor('deployed', () => api.get('deployments', 'demo', 'waypoint') !== undefined);
  await waitFor('Programmed True', () => condition('waypoint', 'Programmed')?.status === 'True');
});
