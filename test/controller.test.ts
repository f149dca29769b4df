import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Controller, WATCHED } from '../src/controller/controller';
import { computeDesired, MIRRORED_KINDS } from '../src/controller/desired';
import { LeaderElector } from '../src/controller/leader';
import { stableStringify } from '../src/controller/stable-json';
import { KubeClient } from '../src/k8s/client';
import { RegistryStore } from '../src/registry/store';
import { MeshState } from '../src/registry/state';
import { recordKey, type Kind } from '../src/registry/types';
import {
  TestApiServer, authzPolicyObj, endpointSliceObj, namespaceObj, nodeObj, podObj, serviceObj,
} from './helpers/apiserver';
import { startRedis, type TestRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';

type T = Test;

let redis: TestRedis;
t.before(async () => {
  redis = await startRedis();
});
t.teardown(() => redis.stop());

interface Rig {
  api: TestApiServer;
  client: KubeClient;
  store: RegistryStore;
  controller(opts?: { elector?: { identity: string } }): Controller;
}

async function rig(t: T): Promise<Rig> {
  const api = await TestApiServer.start();
  t.teardown(() => api.stop());
  const client = new KubeClient({ server: api.url });
  t.teardown(() => client.close());
  const store = RegistryStore.connect(redis.url, { prefix: `weft-${randomBytes(4).toString('hex')}:` });
  t.teardown(() => store.close());
  const controller = (opts: { elector?: { identity: string } } = {}) => {
    const elector = opts.elector
      ? new LeaderElector(client, {
        namespace: 'weft-system', name: 'weft-controller', identity: opts.elector.identity,
        leaseDurationSeconds: 1, renewIntervalMs: 150, renewDeadlineMs: 600, retryIntervalMs: 100,
      })
      : undefined;
    const c = new Controller({ client, store, clusterDomain: 'cluster.local', elector, batchMs: 10, informerBackoff: { minMs: 10, maxMs: 200 } });
    t.teardown(() => c.stop());
    return c;
  };
  return { api, client, store, controller };
}

/** The registry as `kind/key` → stable JSON, for the kinds the controller owns. */
async function registryView(store: RegistryStore): Promise<Map<string, string>> {
  const { records } = await store.snapshot();
  const out = new Map<string, string>();
  for (const kind of MIRRORED_KINDS) {
    for (const r of records[kind]) out.set(`${kind}/${recordKey(kind as Kind, r as never)}`, stableStringify(r));
  }
  return out;
}

/**
 * What the API server's current objects imply (computed independently of the controller's caches).
 * `held`: the registry's policy records, which an invalid policy object keeps.
 */
function apiView(api: TestApiServer, held?: Map<string, string>): Map<string, string> {
  const d = computeDesired({
    nodes: api.list('nodes') as never, namespaces: api.list('namespaces') as never, pods: api.list('pods') as never,
    services: api.list('services') as never, endpointSlices: api.list('endpointslices') as never,
    policies: api.list('authorizationpolicies') as never,
  }, {
    clusterDomain: 'cluster.local',
    heldPolicy: (key) => { const j = held?.get(`policy/${key}`); return j === undefined ? undefined : JSON.parse(j); },
  });
  return new Map([...d.records.values()].map((e) => [`${e.kind}/${e.key}`, stableStringify(e.record)]));
}

async function converged(api: TestApiServer, store: RegistryStore): Promise<void> {
  let last = '';
  await waitFor('registry equal to the API view', async () => {
    const got = await registryView(store);
    const want = apiView(api, got);
    last = JSON.stringify({ want: [...want.keys()].sort(), got: [...got.keys()].sort() });
    if (want.size !== got.size) return false;
    for (const [k, v] of want) if (got.get(k) !== v) return false;
    return true;
  }).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
}

function seed(api: TestApiServer) {
  api.put('nodes', nodeObj('node-1', '203.0.113.10', '10.244.1.0/24'));
  api.put('nodes', nodeObj('node-2', '203.0.113.11', '10.244.2.0/24'));
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  api.put('namespaces', namespaceObj('plain'));
  const web1 = api.put('pods', podObj('demo', 'web-1', { node: 'node-1', ip: '10.244.1.5', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }] }));
  const web2 = api.put('pods', podObj('demo', 'web-2', { node: 'node-2', ip: '10.244.2.5', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }] }));
  api.put('pods', podObj('plain', 'client', { node: 'node-1', ip: '10.244.1.6', labels: { app: 'client' }, sa: 'client' }));
  api.put('pods', podObj('demo', 'pending', { node: 'node-1' }));
  api.put('services', serviceObj('demo', 'web', { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] }));
  api.put('endpointslices', endpointSliceObj('demo', 'web-abc', 'web', [
    { ip: '10.244.1.5', pod: web1, ready: true }, { ip: '10.244.2.5', pod: web2, ready: true },
  ]));
  api.put('authorizationpolicies', authzPolicyObj('demo', 'allow-client', {
    action: 'ALLOW', selector: { matchLabels: { app: 'web' } },
    rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/plain/sa/client'] }] }] }],
  }));
  return { web1, web2 };
}

t.test('initial sync: the registry equals the API view', async (t) => {
  const { api, store, controller } = await rig(t);
  const { web1 } = seed(api);
  const c = controller();
  c.start();
  await converged(api, store);
  const view = await registryView(store);
  t.equal(view.size, 2 + 2 + 3 + 1 + 1, 'nodes, namespaces, workloads (not the pending pod), service, policy');
  t.same(await store.get('workload', web1.metadata.uid), {
    uid: web1.metadata.uid, name: 'web-1', namespace: 'demo', node: 'node-1', addresses: ['10.244.1.5'],
    serviceAccount: 'default', labels: { app: 'web' }, ports: [8080], status: 'Healthy',
  });
  t.same(await store.get('service', 'demo/web'), {
    name: 'web', namespace: 'demo', hostname: 'web.demo.svc.cluster.local', vips: ['10.96.0.10'],
    ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web' },
  });
  t.same(await store.get('node', 'node-2'), { name: 'node-2', address: '203.0.113.11', podCidr: '10.244.2.0/24', labels: { 'kubernetes.io/hostname': 'node-2' } });
  t.equal((await store.get('policy', 'demo/allow-client'))?.scope, 'WORKLOAD_SELECTOR');
  await waitFor('policy status', () => api.get('authorizationpolicies', 'demo', 'allow-client')?.status?.conditions?.[0]?.status === 'True');
  const rev = await store.revision();
  // A barrier instead of a sleep: a policy created after the status update comes down
  // the same watch, so once it is in the registry the status event was handled too.
  api.put('authorizationpolicies', authzPolicyObj('demo', 'barrier', {
    action: 'DENY', selector: { matchLabels: { app: 'web' } },
    rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/plain/sa/nobody'] }] }] }],
  }));
  await waitFor('the barrier policy mirrored', async () => (await store.get('policy', 'demo/barrier')) !== undefined);
  t.equal(await store.revision(), rev + 1, 'a status update does not cause a registry write (only the barrier did)');
});

t.test('add, update and delete of every kind are mirrored', async (t) => {
  const { api, store, controller } = await rig(t);
  const { web1, web2 } = seed(api);
  controller().start();
  await converged(api, store);

  api.put('nodes', nodeObj('node-3', '203.0.113.12'));
  api.modify('nodes', undefined, 'node-1', (o) => { o.status.addresses[0].address = '203.0.113.20'; });
  api.remove('nodes', undefined, 'node-2');
  await converged(api, store);
  t.equal((await store.get('node', 'node-1'))?.address, '203.0.113.20');
  t.equal(await store.get('node', 'node-2'), undefined);

  api.put('namespaces', namespaceObj('extra'));
  api.remove('namespaces', undefined, 'plain');
  await converged(api, store);
  t.ok(await store.get('namespace', 'extra'));

  const late = api.put('pods', podObj('demo', 'late', { node: 'node-1' }));
  await converged(api, store);
  t.equal(await store.get('workload', late.metadata.uid), undefined, 'no IP yet: not mirrored');
  api.modify('pods', 'demo', 'late', (o) => { o.status.podIP = '10.244.1.9'; o.status.podIPs = [{ ip: '10.244.1.9' }]; });
  await converged(api, store);
  t.same((await store.get('workload', late.metadata.uid))?.addresses, ['10.244.1.9']);
  api.modify('pods', 'demo', 'web-1', (o) => { o.status.conditions[1].status = 'False'; });
  await converged(api, store);
  t.equal((await store.get('workload', web1.metadata.uid))?.status, 'Unhealthy', 'Ready=False');
  api.modify('pods', 'demo', 'late', (o) => { o.status.phase = 'Succeeded'; });
  api.remove('pods', 'plain', 'client');
  await converged(api, store);
  t.equal(await store.get('workload', late.metadata.uid), undefined, 'terminated pods are deleted');

  // Readiness from the EndpointSlice: a pod the slice lists not-ready is Unhealthy.
  api.modify('endpointslices', 'demo', 'web-abc', (o) => { o.endpoints[1].conditions.ready = false; });
  await converged(api, store);
  t.equal((await store.get('workload', web2.metadata.uid))?.status, 'Unhealthy');
  api.remove('endpointslices', 'demo', 'web-abc');
  await converged(api, store);
  t.equal((await store.get('workload', web2.metadata.uid))?.status, 'Healthy');

  api.modify('services', 'demo', 'web', (o) => { o.metadata.labels['weft.io/use-waypoint'] = 'demo-waypoint'; o.spec.ports.push({ name: 'admin', port: 81, targetPort: 9000, protocol: 'TCP' }); });
  api.put('services', serviceObj('demo', 'api', { clusterIP: '10.96.0.11', selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] }));
  await converged(api, store);
  t.equal((await store.get('service', 'demo/web'))?.waypoint, 'demo-waypoint');
  t.equal((await store.get('service', 'demo/web'))?.ports.length, 2);
  api.remove('services', 'demo', 'api');
  await converged(api, store);
  t.equal(await store.get('service', 'demo/api'), undefined);

  api.modify('authorizationpolicies', 'demo', 'allow-client', (o) => { o.spec.action = 'DENY'; });
  await converged(api, store);
  t.equal((await store.get('policy', 'demo/allow-client'))?.action, 'DENY');
  api.remove('authorizationpolicies', 'demo', 'allow-client');
  await converged(api, store);
  t.equal(await store.get('policy', 'demo/allow-client'), undefined);
});

t.test('namespace label flip enrols and unenrols its workloads (HBONE/TCP)', async (t) => {
  const { api, store, controller } = await rig(t);
  const { web1 } = seed(api);
  controller().start();
  await converged(api, store);
  const protocol = async (): Promise<string | undefined> => {
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const snap = await store.snapshot();
    state.replaceAll(snap.records, snap.revision);
    return state.workload(web1.metadata.uid)?.protocol;
  };
  t.equal(await protocol(), 'HBONE');
  api.modify('namespaces', undefined, 'demo', (o) => { delete o.metadata.labels['weft.io/dataplane-mode']; });
  await waitFor('unenrolled', async () => (await protocol()) === 'TCP');
  t.pass('label removed: TCP');
  api.modify('namespaces', undefined, 'demo', (o) => { o.metadata.labels['weft.io/dataplane-mode'] = 'ambient'; });
  await waitFor('enrolled', async () => (await protocol()) === 'HBONE');
  t.pass('label set: HBONE');
  api.modify('pods', 'demo', 'web-1', (o) => { o.metadata.labels['weft.io/dataplane-mode'] = 'none'; });
  await waitFor('pod opt-out', async () => (await protocol()) === 'TCP');
  t.pass('pod opt-out: TCP');
});

t.test('410 Gone: relist converges, including a deletion missed while disconnected', async (t) => {
  const { api, store, controller } = await rig(t);
  const { web2 } = seed(api);
  const c = controller();
  c.start();
  await converged(api, store);
  await waitFor('watches', () => api.watcherCount() === Object.keys(WATCHED).length);
  api.pauseWatches();
  api.remove('pods', 'demo', 'web-2');
  api.remove('services', 'demo', 'web');
  api.put('pods', podObj('demo', 'web-3', { node: 'node-2', ip: '10.244.2.7', labels: { app: 'web' } }));
  api.compact();
  await converged(api, store);
  t.equal(await store.get('workload', web2.metadata.uid), undefined);
  t.equal(await store.get('service', 'demo/web'), undefined);
  t.ok(c.informers.pods.lists >= 2, 'pods were relisted');
});

t.test('bookmarks advance the resourceVersion the watches resume from', async (t) => {
  const { api, store, controller } = await rig(t);
  seed(api);
  const c = controller();
  c.start();
  await converged(api, store);
  await waitFor('watches', () => api.watcherCount() === Object.keys(WATCHED).length);
  // The policy's status write moves the resourceVersion too: let it land first.
  await waitFor('policy status', () => api.get('authorizationpolicies', 'demo', 'allow-client')?.status !== undefined);
  const podsRv = Number(c.informers.pods.resourceVersion);
  api.put('nodes', nodeObj('node-9', '203.0.113.19'));
  api.bookmark();
  const rv = String(api.resourceVersion);
  t.ok(Number(rv) > podsRv);
  await waitFor('bookmarks', () => Object.values(c.informers).every((i) => Number(i.resourceVersion) >= Number(rv)));
  t.equal(c.informers.pods.resourceVersion, rv, 'the pods watch saw no pod event, only the bookmark');
  api.closeWatches();
  await waitFor('re-watch', () => api.watcherCount() === Object.keys(WATCHED).length);
  const podWatches = api.requests.filter((r) => r.path === '/api/v1/pods' && r.query.watch);
  t.equal(podWatches.at(-1)!.query.resourceVersion, rv);
  t.equal(c.informers.pods.lists, 1, 'no relist needed');
});

t.test('restart converges without duplicates and removes records deleted meanwhile', async (t) => {
  const { api, store, controller } = await rig(t);
  const { web1 } = seed(api);
  const first = controller();
  first.start();
  await converged(api, store);
  await first.stop();

  api.remove('pods', 'demo', 'web-1');
  api.remove('namespaces', undefined, 'plain');
  api.put('services', serviceObj('demo', 'new', { clusterIP: '10.96.0.12', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }));
  // The pod comes back with a new uid (a new pod of the same name): the old record must go.
  const again = api.put('pods', podObj('demo', 'web-1', { node: 'node-1', ip: '10.244.1.50', labels: { app: 'web' } }));
  t.not(again.metadata.uid, web1.metadata.uid);

  const second = controller();
  second.start();
  await converged(api, store);
  t.equal(await store.get('workload', web1.metadata.uid), undefined);
  t.equal((await store.list('workload')).filter((w) => w.name === 'web-1').length, 1, 'no duplicate workload');
  await second.stop();

  const rev = await store.revision();
  let applied = 0;
  const third = controller();
  third.on('applied', () => applied++);
  third.start();
  await new Promise<void>((resolve) => third.once('converged', () => resolve()));
  t.equal(applied, 0, 'nothing to write after a restart with no changes');
  t.equal(await store.revision(), rev);
});

t.test('leader election: one writer; the other takes over when the leader dies', async (t) => {
  const { api, store, client, controller } = await rig(t);
  seed(api);
  const a = controller({ elector: { identity: 'a' } });
  const b = controller({ elector: { identity: 'b' } });
  const writes = { a: 0, b: 0 };
  a.on('applied', () => writes.a++);
  b.on('applied', () => writes.b++);
  a.start();
  await waitFor('a leads', () => a.isLeader);
  b.start();
  await converged(api, store);
  await waitFor('b synced', () => b.synced);
  api.put('nodes', nodeObj('node-5', '203.0.113.15'));
  await converged(api, store);
  t.ok(a.isLeader && !b.isLeader, 'a leads, b follows');
  t.ok(writes.a > 0);
  t.equal(writes.b, 0, 'the follower never wrote');
  const lease = await client.get('/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/weft-controller');
  t.equal((lease.spec as { holderIdentity: string }).holderIdentity, 'a');

  // a dies without releasing: b waits for the lease to expire (1 s here), then writes.
  await a.stop({ release: false });
  api.put('nodes', nodeObj('node-6', '203.0.113.16'));
  await waitFor('b leads', () => b.isLeader, { timeoutMs: 10_000 });
  await converged(api, store);
  t.ok(writes.b > 0, 'the new leader wrote the change');
  const after = await client.get('/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/weft-controller');
  t.equal((after.spec as { holderIdentity: string }).holderIdentity, 'b');
  t.equal((after.spec as { leaseTransitions: number }).leaseTransitions, 1);

  // A clean stop releases the lease: a new candidate takes it at once.
  await b.stop();
  const released = await client.get('/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/weft-controller');
  t.equal((released.spec as { holderIdentity: string }).holderIdentity, '');
});

t.test('invalid AuthorizationPolicy from the start: a fail-closed stand-in, and Accepted=False names the field', async (t) => {
  const { api, store, controller } = await rig(t);
  seed(api);
  api.put('authorizationpolicies', authzPolicyObj('demo', 'broken', {
    action: 'ALLOW', rules: [{ clauses: [{ matches: [{ destinationPorts: [0] }] }] }],
  }));
  controller().start();
  await converged(api, store);
  // Skipping it would leave demo unguarded; an ALLOW that matches nothing keeps it deny-by-default.
  t.match(await store.get('policy', 'demo/broken'), {
    action: 'ALLOW', scope: 'NAMESPACE', rules: [], invalid: { state: 'FailClosed', reason: /destinationPorts\[0\]/ },
  }, 'held as an ALLOW that matches nothing');
  t.ok(await store.get('policy', 'demo/allow-client'), 'the valid one is written');
  await waitFor('condition', () => api.get('authorizationpolicies', 'demo', 'broken')?.status?.conditions !== undefined);
  const cond = api.get('authorizationpolicies', 'demo', 'broken')!.status.conditions[0];
  t.match(cond, {
    type: 'Accepted', status: 'False', reason: 'InvalidFailClosed', observedGeneration: 1,
    message: /spec\.rules\[0\]\.clauses\[0\]\.matches\[0\]\.destinationPorts\[0\].*fail-closed as an ALLOW that matches nothing/,
  });
  t.ok(api.requests.some((r) => r.method === 'PATCH' && r.path === '/apis/security.weft.io/v1alpha1/namespaces/demo/authorizationpolicies/broken/status'));

  api.modify('authorizationpolicies', 'demo', 'broken', (o) => { o.spec.rules = [{ clauses: [{ matches: [{ destinationPorts: [8080] }] }] }]; });
  await converged(api, store);
  const fixed = await store.get('policy', 'demo/broken');
  t.match(fixed, { rules: [{ clauses: [{ matches: [{ destinationPorts: [8080] }] }] }] }, 'the fixed version replaces the stand-in');
  t.notOk(fixed?.invalid, 'no longer marked invalid');
  await waitFor('accepted', () => api.get('authorizationpolicies', 'demo', 'broken')?.status?.conditions?.[0]?.status === 'True');
  t.equal(api.get('authorizationpolicies', 'demo', 'broken')!.status.conditions[0].observedGeneration, 2);

  // A DENY invalid from the start denies everything in its scope.
  api.put('authorizationpolicies', authzPolicyObj('demo', 'deny-broken', {
    action: 'DENY', rules: [{ clauses: [{ matches: [{ principals: ['web'] }] }] }],
  }));
  await converged(api, store);
  t.match(await store.get('policy', 'demo/deny-broken'), { action: 'DENY', scope: 'NAMESPACE', rules: [{ clauses: [] }], invalid: { state: 'FailClosed' } });
});

t.test('an invalid edit of a valid policy keeps the last valid version, across a controller restart', async (t) => {
  const { api, store, controller } = await rig(t);
  seed(api);
  const c = controller();
  c.start();
  await converged(api, store);
  const good = await store.get('policy', 'demo/allow-client');
  t.match(good, { action: 'ALLOW', selector: { app: 'web' } });

  api.modify('authorizationpolicies', 'demo', 'allow-client', (o) => {
    o.spec.rules = [{ clauses: [{ matches: [{ principals: ['client'] }] }] }]; // not a spiffe:// URI
  });
  await converged(api, store);
  const held = await store.get('policy', 'demo/allow-client');
  t.same(held?.rules, good?.rules, 'the last valid rules still stand');
  t.match(held, { action: 'ALLOW', scope: 'WORKLOAD_SELECTOR', selector: { app: 'web' }, invalid: { state: 'LastGood', reason: /principals\[0\]/ } });
  await waitFor('condition', () => api.get('authorizationpolicies', 'demo', 'allow-client')?.status?.conditions?.[0]?.status === 'False');
  t.match(api.get('authorizationpolicies', 'demo', 'allow-client')!.status.conditions[0], {
    reason: 'InvalidLastGoodKept', message: /principals\[0\].*the last valid version stays in force/, observedGeneration: 2,
  });

  // A new leader starts from Redis: it must keep the same version, not drop it.
  await c.stop();
  api.modify('authorizationpolicies', 'demo', 'allow-client', (o) => {
    o.spec.rules = [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/other'] }] }] }];
    o.spec.selector = { matchLabels: { 'bad key!': 'x' } };
  });
  const c2 = controller();
  c2.start();
  await converged(api, store);
  const again = await store.get('policy', 'demo/allow-client');
  t.same(again?.rules, good?.rules, 'still the last valid rules after a restart and a second invalid edit');
  t.match(again, { selector: { app: 'web' }, invalid: { state: 'LastGood', reason: /selector/ } });

  api.remove('authorizationpolicies', 'demo', 'allow-client');
  await converged(api, store);
  t.equal(await store.get('policy', 'demo/allow-client'), undefined, 'deleting the object still deletes the policy');
});
