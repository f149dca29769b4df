/**
 * The controller's Istio security side against the API-server stand-in and a real
 * redis-server: security.istio.io/v1 AuthorizationPolicy and PeerAuthentication (what
 * `weft apply` sends to a cluster by default) are mirrored like security.weft.io
 * AuthorizationPolicy, invalid ones fail closed, a name shared across the two groups
 * fails closed, and a cluster without Istio's CRDs still mirrors everything else.
 */
import t, { type Test } from 'tap';
import { RegistryStore } from '../src/registry/store';
import { TestApiServer, authzPolicyObj, namespaceObj, nodeObj, podObj } from './helpers/apiserver';
import { startRedis, type TestRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { controllerRig } from './helpers/controller-rig';

const ISTIO_AP = 'authorizationpolicies.security.istio.io';

let redis: TestRedis;
t.before(async () => {
  redis = await startRedis();
});
t.teardown(() => redis.stop());

async function rig(t: Test, opts: { istio?: boolean; istioRootNamespace?: string } = {}) {
  const r = await controllerRig(t, redis.url, {
    ...(opts.istio === false ? { missingGroups: ['security.istio.io'] } : {}),
    ...(opts.istioRootNamespace ? { istioRootNamespace: opts.istioRootNamespace } : {}),
  });
  const { api } = r;
  api.put('nodes', nodeObj('node-1', '203.0.113.10', '10.244.1.0/24'));
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  api.put('pods', podObj('demo', 'echo', { node: 'node-1', ip: '10.244.1.5', labels: { app: 'echo' } }));
  return r;
}

const records = async (store: RegistryStore) => (await store.snapshot()).records;
const accepted = (api: TestApiServer, plural: string, name: string, namespace = 'demo') =>
  ((api.get(plural, namespace, name)?.status?.conditions ?? []) as { type: string; status: string; reason: string; message: string }[]).find((c) => c.type === 'Accepted');

const istioAllow = {
  selector: { matchLabels: { app: 'echo' } },
  rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/client'] } }], to: [{ operation: { ports: ['8080'] } }] }],
};

t.test('Istio-group AuthorizationPolicy and PeerAuthentication are mirrored, with status, and deleted with their objects', async (t) => {
  const { api, store, controller } = await rig(t);
  api.put(ISTIO_AP, authzPolicyObj('demo', 'allow-client', istioAllow));
  api.put('peerauthentications', { metadata: { name: 'strict', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'echo' } }, mtls: { mode: 'STRICT' } } });
  controller.start();
  await waitFor('policy and peerauth mirrored', async () => {
    const r = await records(store);
    return r.policy.length === 1 && r.peerauth.length === 1;
  });
  const r = await records(store);
  t.same(r.policy[0], {
    name: 'allow-client', namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'ALLOW',
    rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/client'] }] }, { matches: [{ destinationPorts: [8080] }] }] }],
  }, 'Istio rule syntax translated; the action defaults to ALLOW');
  t.same(r.peerauth[0], { name: 'strict', namespace: 'demo', selector: { app: 'echo' }, mode: 'STRICT' });
  await waitFor('Accepted written on the Istio object', () => accepted(api, ISTIO_AP, 'allow-client')?.status === 'True');
  t.equal(api.requests.filter((q) => q.method === 'PATCH' && q.path.startsWith('/apis/security.weft.io/')).length, 0, 'status goes to the object\'s own group');

  api.remove(ISTIO_AP, 'demo', 'allow-client');
  api.remove('peerauthentications', 'demo', 'strict');
  await waitFor('both removed', async () => {
    const now = await records(store);
    return now.policy.length === 0 && now.peerauth.length === 0;
  });
  t.equal((await records(store)).workload.length, 1, 'the rest stays');
});

t.test("Istio's root namespace: its mesh-wide policies are Weft's root namespace's (GLOBAL), as Istio reads them", async (t) => {
  const { api, store, controller } = await rig(t);
  api.put('namespaces', namespaceObj('istio-system', {}));
  const denyOther = { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] };
  api.put(ISTIO_AP, authzPolicyObj('istio-system', 'deny-other', denyOther));
  api.put(ISTIO_AP, authzPolicyObj('istio-system', 'allow-echo', istioAllow));
  api.put(ISTIO_AP, authzPolicyObj('istio-system', 'bound', { targetRefs: [{ kind: 'Service', group: '', name: 'istiod' }], rules: [] }));
  api.put('peerauthentications', { metadata: { name: 'mesh-strict', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } });
  api.put('peerauthentications', { metadata: { name: 'istiod', namespace: 'istio-system' }, spec: { selector: { matchLabels: { app: 'istiod' } }, mtls: { mode: 'PERMISSIVE' } } });
  controller.start();
  await waitFor('mirrored', async () => {
    const r = await records(store);
    return r.policy.length === 3 && r.peerauth.length === 2;
  });
  const r = await records(store);
  const policy = (name: string) => r.policy.find((p) => p.name === name);
  t.match(policy('deny-other'), { namespace: 'weft-system', scope: 'GLOBAL', action: 'DENY' }, 'selector-less: mesh-wide');
  t.match(policy('allow-echo'), { namespace: 'weft-system', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' } }, 'a selector in the root namespace matches every namespace');
  t.match(policy('bound'), { namespace: 'istio-system', targetRefs: [{ kind: 'Service', name: 'istiod' }] }, 'bound to a Service: that namespace\'s Service, not moved');
  t.notOk(policy('deny-other')!.invalid, 'accepted, not a stand-in');
  t.same(r.peerauth.find((p) => p.name === 'mesh-strict'), { name: 'mesh-strict', namespace: 'weft-system', mode: 'STRICT' }, 'mesh-wide STRICT');
  t.match(r.peerauth.find((p) => p.name === 'istiod'), { namespace: 'istio-system', selector: { app: 'istiod' } }, 'a selector PeerAuthentication stays workload-specific in its namespace');
  await waitFor('Accepted on the istio-system object', () => accepted(api, ISTIO_AP, 'deny-other', 'istio-system')?.status === 'True');
});

t.test('--istio-root-namespace names another root; istio-system is then an ordinary namespace', async (t) => {
  const { api, store, controller } = await rig(t, { istioRootNamespace: 'mesh-root' });
  api.put(ISTIO_AP, authzPolicyObj('mesh-root', 'deny-other', { action: 'DENY', rules: [] }));
  api.put(ISTIO_AP, authzPolicyObj('istio-system', 'deny-other', { action: 'DENY', rules: [] }));
  controller.start();
  await waitFor('mirrored', async () => (await records(store)).policy.length === 2);
  const r = await records(store);
  t.match(r.policy.find((p) => p.namespace === 'weft-system'), { name: 'deny-other', scope: 'GLOBAL' });
  t.match(r.policy.find((p) => p.namespace === 'istio-system'), { name: 'deny-other', scope: 'NAMESPACE' }, 'accepted for istio-system only, as Istio would');
  t.notOk(r.policy.some((p) => p.invalid), 'neither refused');
});

t.test("a root-namespace policy named as one already in weft-system fails closed mesh-wide until one is renamed", async (t) => {
  const { api, store, controller } = await rig(t);
  api.put('authorizationpolicies', authzPolicyObj('weft-system', 'mesh', { action: 'ALLOW', rules: [] }));
  api.put(ISTIO_AP, authzPolicyObj('istio-system', 'mesh', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }));
  controller.start();
  await waitFor('a stand-in mirrored', async () => (await records(store)).policy[0]?.invalid?.state === 'FailClosed');
  t.match((await records(store)).policy, [{ name: 'mesh', namespace: 'weft-system', scope: 'GLOBAL', action: 'DENY', rules: [{ clauses: [] }] }]);
  await waitFor('the Istio object says why', () => /security\.weft\.io weft-system\/mesh and security\.istio\.io istio-system\/mesh share the name weft-system\/mesh/
    .test(accepted(api, ISTIO_AP, 'mesh', 'istio-system')?.message ?? ''));
});

t.test('invalid Istio objects fail closed, and say so', async (t) => {
  const { api, store, controller, logs } = await rig(t);
  // methods is L7: an L4 proxy cannot tell a GET from a POST, so the DENY cannot be enforced as written.
  api.put(ISTIO_AP, authzPolicyObj('demo', 'deny-get', { action: 'DENY', selector: { matchLabels: { app: 'echo' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }));
  api.put('peerauthentications', { metadata: { name: 'off', namespace: 'demo' }, spec: { mtls: { mode: 'DISABLE' } } });
  controller.start();
  await waitFor('stand-ins mirrored', async () => {
    const r = await records(store);
    return r.policy.length === 1 && r.peerauth.length === 1;
  });
  const r = await records(store);
  t.match(r.policy[0], { name: 'deny-get', action: 'DENY', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, rules: [{ clauses: [] }], invalid: { state: 'FailClosed' } },
    'an invalid DENY denies everything in its own scope');
  t.same(r.peerauth[0], { name: 'off', namespace: 'demo', mode: 'STRICT' }, 'an invalid PeerAuthentication is STRICT, never dropped to PERMISSIVE');
  await waitFor('status says what is enforced', () => accepted(api, ISTIO_AP, 'deny-get')?.reason === 'InvalidFailClosed');
  t.match(accepted(api, ISTIO_AP, 'deny-get')!.message, /spec\.rules\[0\]\.to\[0\]\.operation\.methods is an L7 attribute/);
  t.ok(logs.some((l) => /PeerAuthentication demo\/off is invalid: spec\.mtls\.mode .*enforced as STRICT for its whole namespace/.test(l.msg)), 'the PeerAuthentication is logged');
});

t.test('one name in both groups with different policies fails closed until one is renamed', async (t) => {
  const { api, store, controller } = await rig(t);
  api.put('authorizationpolicies', authzPolicyObj('demo', 'echo', { action: 'ALLOW', rules: [] }));
  api.put(ISTIO_AP, authzPolicyObj('demo', 'echo', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }] }] }));
  controller.start();
  await waitFor('a stand-in mirrored', async () => (await records(store)).policy[0]?.invalid?.state === 'FailClosed');
  t.match((await records(store)).policy[0], { name: 'echo', action: 'DENY', scope: 'NAMESPACE', rules: [{ clauses: [] }] }, 'a DENY among them: the namespace is denied');
  await waitFor('both objects say why', () => [accepted(api, 'authorizationpolicies', 'echo'), accepted(api, ISTIO_AP, 'echo')]
    .every((c) => c?.status === 'False' && /share the name demo\/echo/.test(c.message)));
  api.remove('authorizationpolicies', 'demo', 'echo');
  await waitFor('the Istio one alone is enforced', async () => {
    const p = (await records(store)).policy[0];
    return p?.invalid === undefined && p?.rules.length === 1;
  });
  t.same((await records(store)).policy[0]!.rules, [{ clauses: [{ matches: [{ namespaces: ['other'] }] }] }]);
});

t.test('without Istio\'s CRDs everything else is mirrored, and they are picked up when they appear', async (t) => {
  const { api, store, controller, logs } = await rig(t, { istio: false });
  api.put('authorizationpolicies', authzPolicyObj('demo', 'weft-own', { action: 'DENY', rules: [] }));
  controller.start();
  await waitFor('the rest mirrored', async () => {
    const r = await records(store);
    return r.workload.length === 1 && r.policy.length === 1;
  });
  t.ok(controller.synced, 'synced although security.istio.io is not served');
  t.ok(controller.istioSecurityMissing);
  t.notOk(controller.gatewayAPIMissing, 'the Gateway API is served: only Istio is reported missing');
  await waitFor('several retries', () => api.requests.filter((q) => q.path.endsWith('/security.istio.io/v1/peerauthentications') && q.method === 'GET').length >= 3);
  t.equal(logs.filter((l) => /security CRDs .* are not installed/.test(l.msg)).length, 1, 'logged once, not per retry');

  api.setGroupInstalled('security.istio.io', true);
  api.put(ISTIO_AP, authzPolicyObj('demo', 'allow-client', istioAllow));
  await waitFor('the Istio policy mirrored', async () => (await records(store)).policy.length === 2);
  await waitFor('both Istio resources seen served', () => !controller.istioSecurityMissing);
  t.ok(logs.some((l) => /Istio's security CRDs found/.test(l.msg)), 'the recovery is logged');
});
