import t from 'tap';
import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { startRedis } from './helpers/redis';
import { RegistryStore } from '../src/registry/store';
import { ambientNamespace, namespaceRecord, serviceRecord, workloadRecord } from '../src/registry/fixtures';
import { isWeftError } from '../src/lib/errors';

t.test('registry store against a real redis-server', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const raw = new Redis(redis.url);
  t.teardown(() => raw.disconnect());
  const prefix = `weft-${randomBytes(4).toString('hex')}:`;
  const store = RegistryStore.connect(redis.url, { prefix });
  t.teardown(() => store.close());

  t.test('apply is one revision and one stream entry', async (t) => {
    t.equal(await store.revision(), 0);
    const rev = await store.apply([
      { op: 'put', kind: 'namespace', record: ambientNamespace('demo') },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: ['10.0.0.1'] }) },
      { op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.1'] }) },
    ]);
    t.equal(rev, 1);
    t.equal(await store.revision(), 1);
    t.equal(await raw.xlen(`${prefix}changes`), 1);
    const [[, fields]] = (await raw.xrange(`${prefix}changes`, '-', '+')) as [string, string[]][] as [[string, string[]]];
    t.equal(fields[0], 'rev');
    t.equal(fields[1], '1');
    t.equal(fields[2], 'epoch');
    t.match(fields[3], /^[0-9a-f-]{36}$/);
    t.equal(fields[4], 'changes');
    const changes = JSON.parse(fields[5]!);
    t.same(changes.map((c: { op: string; kind: string; key: string }) => `${c.op} ${c.kind} ${c.key}`),
      ['put namespace demo', 'put workload demo/a', 'put service demo/echo']);
    t.same(await raw.hkeys(`${prefix}workload`), ['demo/a']);
    t.same((await store.get('workload', 'demo/a'))?.addresses, ['10.0.0.1']);
    t.equal(await store.get('workload', 'demo/nope'), undefined);

    t.equal(await store.delete('workload', 'demo/a'), 2);
    t.equal(await store.get('workload', 'demo/a'), undefined);
    t.equal(await store.apply([]), 2, 'an empty apply writes nothing');
    t.equal(await raw.xlen(`${prefix}changes`), 2);
  });

  t.test('invalid puts are refused whole, nothing written', async (t) => {
    const before = await store.revision();
    await t.rejects(store.apply([
      { op: 'put', kind: 'namespace', record: namespaceRecord('ok') },
      { op: 'put', kind: 'service', record: { ...serviceRecord({ namespace: 'demo', name: 'bad' }), ports: [{ port: 80, targetPort: 0 }] } },
    ]), { code: 'WEFT_REGISTRY_RECORD_INVALID', message: /service demo\/bad: ports\[0\]\.targetPort must be an integer 1-65535/ });
    await t.rejects(store.put('namespace', { name: 'x', labels: {}, extra: 1 } as never), { message: /extra is not a known field/ });
    t.equal(await store.revision(), before);
    t.equal(await store.get('namespace', 'ok'), undefined);
  });

  t.test('reads skip malformed records', async (t) => {
    await raw.hset(`${prefix}namespace`, 'broken', '{not json', 'wrongkey', JSON.stringify(namespaceRecord('other')));
    const names = (await store.list('namespace')).map((n) => n.name);
    t.same(names, ['demo']);
    t.equal(await store.get('namespace', 'broken'), undefined);
    const snap = await store.snapshot();
    t.same(snap.records.namespace.map((n) => n.name), ['demo']);
    t.equal(snap.revision, await store.revision());
    await raw.hdel(`${prefix}namespace`, 'broken', 'wrongkey');
  });

  t.test('setNamespaceLabel adds and removes labels, concurrently without loss', async (t) => {
    await store.setNamespaceLabel('demo', 'team', 'a');
    t.same((await store.get('namespace', 'demo'))?.labels, { 'weft.io/dataplane-mode': 'ambient', team: 'a' });
    await store.setNamespaceLabel('demo', 'weft.io/dataplane-mode', undefined);
    t.same((await store.get('namespace', 'demo'))?.labels, { team: 'a' });
    // Two stores racing on the same record: compare-and-set must keep every label.
    const other = RegistryStore.connect(redis.url, { prefix });
    t.teardown(() => other.close());
    await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? store : other).setNamespaceLabel('demo', `l${i}`, 'v')));
    const labels = (await store.get('namespace', 'demo'))?.labels ?? {};
    for (let i = 0; i < 10; i++) t.equal(labels[`l${i}`], 'v', `l${i} survived the race`);
    await t.rejects(store.setNamespaceLabel('nope', 'a', 'b'), { code: 'WEFT_REGISTRY_NOT_FOUND' });
  });

  t.test('expectedRevision is a compare-and-set', async (t) => {
    const rev = await store.revision();
    await t.rejects(store.apply([{ op: 'delete', kind: 'node', key: 'x' }], { expectedRevision: rev - 1 }), { code: 'WEFT_REGISTRY_CONFLICT' });
    t.equal(await store.apply([{ op: 'delete', kind: 'node', key: 'x' }], { expectedRevision: rev }), rev + 1);
  });

  t.test('the stream is capped approximately', async (t) => {
    const p2 = `weft-${randomBytes(4).toString('hex')}:`;
    const small = RegistryStore.connect(redis.url, { prefix: p2, streamMaxLen: 10 });
    t.teardown(() => small.close());
    for (let i = 0; i < 400; i++) await small.put('namespace', namespaceRecord(`n${i % 7}`));
    const len = await raw.xlen(`${p2}changes`);
    t.ok(len < 400, `stream trimmed (length ${len})`);
    t.equal(await small.revision(), 400);
  });
});

t.test('unreachable Redis is a WEFT_REGISTRY_UNREACHABLE naming the URL', async (t) => {
  const redis = await startRedis();
  const url = redis.url.replace('redis://', 'redis://:secret@');
  await redis.stop();
  const store = RegistryStore.connect(url);
  t.teardown(() => store.close());
  try {
    await store.revision();
    t.fail('should have failed');
  } catch (err) {
    t.ok(isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE'));
    t.match((err as Error).message, new RegExp(`127\\.0\\.0\\.1:${redis.port}`));
    t.notMatch((err as Error).message, /secret/, 'password is redacted');
    t.match((err as Error).message, /--redis-url/);
  }
});
