import t, { type Test } from 'tap';
import { KubeClient } from '../src/k8s/client';
import { Informer } from '../src/k8s/informer';
import { TestApiServer, namespaceObj, podObj } from './helpers/apiserver';
import { waitFor } from './helpers/wait';

type T = Test;

async function rig(t: T, opts: ConstructorParameters<typeof TestApiServer>[0] = {}) {
  const api = await TestApiServer.start(opts);
  t.teardown(() => api.stop());
  const client = new KubeClient({ server: api.url });
  t.teardown(() => client.close());
  const inf = new Informer(client, '/api/v1/pods', { minBackoffMs: 10, maxBackoffMs: 100 });
  const log: string[] = [];
  inf.on('add', (o) => log.push(`add ${o.metadata.name}`));
  inf.on('update', (o) => log.push(`update ${o.metadata.name}`));
  inf.on('delete', (o) => log.push(`delete ${o.metadata.name}`));
  inf.on('synced', () => log.push('synced'));
  t.teardown(() => inf.stop());
  return { api, client, inf, log };
}

const pod = (name: string, ip: string) => podObj('demo', name, { node: 'n1', ip });

t.test('list then watch: cache follows add, update, delete', async (t) => {
  const { api, inf, log } = await rig(t);
  api.put('pods', pod('a', '203.0.113.1'));
  inf.start();
  await inf.waitForSync();
  t.same(log, ['add a', 'synced']);
  await waitFor('watch', () => api.watcherCount('pods') === 1);
  api.put('pods', pod('b', '203.0.113.2'));
  api.modify('pods', 'demo', 'a', (o) => { o.metadata.labels.v = '2'; });
  api.remove('pods', 'demo', 'b');
  await waitFor('events', () => log.length === 5);
  t.same(log, ['add a', 'synced', 'add b', 'update a', 'delete b']);
  t.same(inf.items().map((o) => o.metadata.name), ['a']);
  t.equal(inf.get('demo/a')?.metadata.labels?.v, '2');
  t.equal(inf.resourceVersion, String(api.resourceVersion));
});

for (const goneAs of ['status', 'event'] as const) {
  t.test(`410 Gone (${goneAs}) relists and infers deletions missed while disconnected`, async (t) => {
    const { api, inf, log } = await rig(t, { goneAs });
    api.put('pods', pod('a', '203.0.113.1'));
    api.put('pods', pod('b', '203.0.113.2'));
    inf.start();
    await inf.waitForSync();
    await waitFor('watch', () => api.watcherCount('pods') === 1);
    api.pauseWatches();
    api.remove('pods', 'demo', 'a');
    api.modify('pods', 'demo', 'b', (o) => { o.metadata.labels.v = '2'; });
    api.put('pods', pod('c', '203.0.113.3'));
    api.compact();
    await waitFor('relist', () => inf.lists === 2 && log.filter((l) => l === 'synced').length === 2);
    t.same(log.slice(3).sort(), ['add c', 'delete a', 'synced', 'update b'].sort());
    t.same(inf.items().map((o) => o.metadata.name).sort(), ['b', 'c']);
    await waitFor('re-watch from the relist', () => api.requests.filter((r) => r.query.watch).at(-1)!.query.resourceVersion === inf.resourceVersion);
    t.pass('watched again from the resourceVersion of the relist');
  });
}

t.test('bookmarks advance the resourceVersion; a re-watch resumes from it without relisting', async (t) => {
  const { api, inf } = await rig(t);
  inf.start();
  await inf.waitForSync();
  await waitFor('watch', () => api.watcherCount('pods') === 1);
  const before = inf.resourceVersion;
  // Changes to another resource move the global resourceVersion, not this watch.
  api.put('namespaces', namespaceObj('x'));
  api.put('namespaces', namespaceObj('y'));
  api.bookmark();
  await waitFor('bookmark', () => inf.resourceVersion === String(api.resourceVersion));
  t.not(inf.resourceVersion, before);
  api.closeWatches();
  await waitFor('re-watch', () => api.requests.filter((r) => r.query.watch).length === 2);
  t.equal(api.requests.filter((r) => r.query.watch).at(-1)!.query.resourceVersion, String(api.resourceVersion));
  t.equal(inf.lists, 1, 'no relist');
});

t.test('errors back off and recover', async (t) => {
  const { api, inf, log } = await rig(t);
  api.put('pods', pod('a', '203.0.113.1'));
  api.failNext = { count: 3, match: (m, p) => m === 'GET' && p === '/api/v1/pods' };
  const errors: unknown[] = [];
  inf.on('error', (e) => errors.push(e));
  inf.start();
  await inf.waitForSync();
  t.equal(errors.length, 3);
  t.same(log, ['add a', 'synced']);
});

t.test('optional: a resource the server does not serve (404) is synced and empty, and picked up when it appears', async (t) => {
  const { api, client } = await rig(t);
  api.setGatewayAPIInstalled(false);
  const path = '/apis/gateway.networking.k8s.io/v1/httproutes';
  const inf = new Informer(client, path, { minBackoffMs: 10, maxBackoffMs: 50, optional: true });
  t.teardown(() => inf.stop());
  const log: string[] = [];
  inf.on('absent', () => log.push('absent')).on('present', () => log.push('present')).on('synced', () => log.push('synced'));
  inf.on('add', (o) => log.push(`add ${o.metadata.name}`)).on('delete', (o) => log.push(`delete ${o.metadata.name}`));
  inf.start();
  await inf.waitForSync();
  t.ok(inf.absent && inf.synced, 'absent counts as synced');
  await waitFor('retried', () => api.requests.filter((q) => q.path === path).length >= 3);
  t.same(log, ['absent', 'synced'], 'reported once, not per retry');
  api.put('httproutes', { metadata: { name: 'r', namespace: 'demo' }, spec: {} });
  api.setGatewayAPIInstalled(true);
  await waitFor('listed', () => inf.items().length === 1);
  t.notOk(inf.absent);
  t.same(log.slice(2), ['add r', 'present', 'synced']);
  api.setGatewayAPIInstalled(false);
  await waitFor('absent again', () => inf.absent);
  t.same(log.slice(5), ['delete r', 'absent', 'synced'], 'the cache empties when the CRD goes');
  // Without `optional`, a 404 is an error: never synced.
  const strict = new Informer(client, path, { minBackoffMs: 10, maxBackoffMs: 50 });
  t.teardown(() => strict.stop());
  strict.start();
  await waitFor('retried', () => api.requests.filter((q) => q.path === path).length >= 8);
  t.notOk(strict.synced);
});
