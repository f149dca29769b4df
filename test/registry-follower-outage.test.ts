import t from 'tap';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import pino from 'pino';
import { freePort, startRedis } from './helpers/redis';
import { RegistryStore } from '../src/registry/store';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { namespaceRecord, workloadRecord } from '../src/registry/fixtures';
import { isWeftError } from '../src/lib/errors';
import { waitFor, metricValue as metric } from './helpers/wait';

function capturingLogger(lines: { level: string; msg: string }[]) {
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest);
}

const fast = { blockMs: 200, timeoutMs: 500, maxBackoffMs: 300 };

t.test('Redis stopped and restarted on the same port: last state served, then recovery', async (t) => {
  let redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', addresses: ['10.0.0.1'] }) },
  ]);
  const lines: { level: string; msg: string }[] = [];
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({ url: redis.url, state, metrics, logger: capturingLogger(lines), ...fast });
  t.teardown(() => follower.stop());
  await follower.start();
  const syncedBefore = follower.lastSyncAt!;

  const stale = new Promise((r) => follower.once('stale', r));
  await redis.stop();
  await stale;
  t.equal(follower.status, 'disconnected');
  t.equal(state.workloadByAddress('10.0.0.1')?.record.uid, 'demo/a', 'last known state still served');
  const s1 = await metric(metrics, 'weft_registry_staleness_seconds');
  await waitFor('staleness to grow', async () => (await metric(metrics, 'weft_registry_staleness_seconds')) > s1);
  t.ok(lines.some((l) => l.level === 'warn' && /registry unreachable; serving the last known state/.test(l.msg)), 'logged going stale');

  const recovered = new Promise<number>((r) => follower.once('recovered', r));
  redis = await startRedis({ port: redis.port });
  t.ok((await recovered) > 0, 'recovered, reporting the downtime');
  t.ok(follower.lastSyncAt! > syncedBefore);
  t.ok(lines.some((l) => l.level === 'info' && /registry reachable again/.test(l.msg)), 'logged recovery');
  // The restarted server is empty (a new registry): the follower must reload, not keep ghosts.
  await waitFor('reload of the new, empty registry', () => state.list('workload').length === 0);
  t.ok((await metric(metrics, 'weft_registry_reloads_total')) >= 1);
  await store.put('namespace', namespaceRecord('fresh'));
  await waitFor('follows the new registry', () => state.get('namespace', 'fresh') !== undefined);
  t.equal(state.revision, await store.revision());
  t.ok((await metric(metrics, 'weft_registry_staleness_seconds')) < s1 + 5);
});

t.test('Redis paused (SIGSTOP): goes stale, resumes from its position without reload', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.put('namespace', namespaceRecord('demo'));
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({ url: redis.url, state, metrics, ...fast });
  t.teardown(() => follower.stop());
  const revisions: number[] = [];
  state.on('change', (_c, rev) => revisions.push(rev));
  await follower.start();

  const stale = new Promise((r) => follower.once('stale', r));
  redis.pause();
  t.teardown(() => redis.resume());
  await stale;
  t.ok(state.get('namespace', 'demo'), 'state kept while paused');
  // This write waits in the store's queue until the server runs again.
  const write = store.put('namespace', namespaceRecord('during'));
  const recovered = new Promise((r) => follower.once('recovered', r));
  redis.resume();
  await recovered;
  await write;
  await waitFor('the queued write', () => state.get('namespace', 'during') !== undefined);
  t.same(revisions, [2], 'revision 2 applied once');
  t.equal(await metric(metrics, 'weft_registry_reloads_total'), 0);
});

t.test('stop() before the first snapshot rejects start()', async (t) => {
  const port = await freePort();
  const follower = new RegistryFollower({ url: `redis://127.0.0.1:${port}`, state: new MeshState({ trustDomain: 'cluster.local' }), ...fast });
  const started = follower.start();
  await waitFor('a failed attempt', () => follower.status === 'disconnected');
  await follower.stop();
  try {
    await started;
    t.fail('start() should reject');
  } catch (err) {
    t.ok(isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE'));
    t.match((err as Error).message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  }
});
