/**
 * A failover with asynchronous replication can lose the last writes the old primary
 * acknowledged, and the writers then reuse those revision numbers on the new primary.
 * A follower that saw the lost writes must notice on reconnect (the entry at its
 * position is gone) and reload, not keep a change the registry no longer has.
 *
 * The follower reaches Redis through a TCP relay this test cuts, so the "failover" (the
 * lost entry removed, a different change written at the same revision) happens while
 * the follower cannot see it, as when it reconnects to the new primary.
 */
import t from 'tap';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { Redis } from 'ioredis';
import { freePort, startRedis } from './helpers/redis';
import { waitFor, metricValue } from './helpers/wait';
import { RegistryStore } from '../src/registry/store';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { namespaceRecord, workloadRecord } from '../src/registry/fixtures';

/** A loopback relay to `target` that can be cut (every connection closed, new ones refused) and restored. */
async function relay(target: number): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = () => new Promise<void>((resolve) => {
    server = createServer((client) => {
      const upstream = connect(target, '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => { client.destroy(); upstream.destroy(); });
        s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const stop = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    if (!server) return resolve();
    server.close(() => resolve());
    server = undefined;
  });
  await listen();
  return { url: `redis://127.0.0.1:${port}`, cut: stop, restore: listen, close: stop };
}

t.test('a follower that saw writes a failover lost reloads instead of keeping them', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  const r = await relay(redis.port);
  t.teardown(() => r.close());

  await store.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'kept', node: 'n1', addresses: ['10.0.0.1'] }) },
  ]);
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({ url: r.url, state, metrics, blockMs: 200, timeoutMs: 500, maxBackoffMs: 200 });
  t.teardown(() => follower.stop());
  await follower.start();

  // The write the failover will lose: the follower applies it.
  const lostRev = await store.put('workload', workloadRecord({ namespace: 'demo', name: 'lost', node: 'n1', addresses: ['10.0.0.2'] }));
  await waitFor('follower applied the write', () => state.revision === lostRev);
  t.ok(state.workloadByAddress('10.0.0.2'), 'the follower holds the write');

  // Failover: the new primary lacks that write (entry, record, revision)...
  await r.cut();
  const [[id]] = (await admin.xrevrange('weft:changes', '+', '-', 'COUNT', 1)) as [string, string[]][];
  const lostUid = Object.keys(await admin.hgetall('weft:workload')).find((k) => k.includes('lost'))!;
  await admin.multi().xdel('weft:changes', id!).hdel('weft:workload', lostUid).decr('weft:revision').exec();
  // ...and a writer reuses its revision number for another change.
  const reused = await store.put('workload', workloadRecord({ namespace: 'demo', name: 'after', node: 'n1', addresses: ['10.0.0.3'] }));
  t.equal(reused, lostRev, 'the writer reused the lost revision number');
  await r.restore();

  await waitFor('follower has the change written after the failover', () => state.workloadByAddress('10.0.0.3') !== undefined);
  t.notOk(state.workloadByAddress('10.0.0.2'), 'the lost write is gone from the view');
  t.ok(state.workloadByAddress('10.0.0.1'), 'older records kept');
  t.equal(await metricValue(metrics, 'weft_registry_reloads_total'), 1, 'one reload');
  t.equal(await metricValue(metrics, 'weft_registry_reconnects_total'), 1, 'one reconnect counted');
  t.equal(await metricValue(metrics, 'weft_registry_resumes_total'), 0, 'not resumed from the lost position');
});

t.test('a reconnect with the stream intact resumes from the position: no reload', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  const r = await relay(redis.port);
  t.teardown(() => r.close());
  await store.put('namespace', namespaceRecord('demo'));
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({ url: r.url, state, metrics, blockMs: 200, timeoutMs: 500, maxBackoffMs: 200 });
  t.teardown(() => follower.stop());
  await follower.start();
  await r.cut();
  await store.put('workload', workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', addresses: ['10.0.0.1'] }));
  await r.restore();
  await waitFor('follower has the change made while cut off', () => state.workloadByAddress('10.0.0.1') !== undefined);
  t.equal(await metricValue(metrics, 'weft_registry_reloads_total'), 0, 'no reload');
  t.equal(await metricValue(metrics, 'weft_registry_resumes_total'), 1, 'resumed once');
  t.equal(await metricValue(metrics, 'weft_registry_reconnects_total'), 1, 'one reconnect');
});
