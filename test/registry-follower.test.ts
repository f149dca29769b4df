import t, { type Test } from 'tap';
import Redis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { startRedis, type TestRedis } from './helpers/redis';
import { RegistryStore, type ChangeInput } from '../src/registry/store';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, namespaceRecord, serviceRecord, workloadRecord } from '../src/registry/fixtures';
import { KINDS } from '../src/registry/types';
import { waitFor, metricValue as metric } from './helpers/wait';

type T = Test;

interface Rig {
  prefix: string;
  store: RegistryStore;
  state: MeshState;
  follower: RegistryFollower;
  metrics: Registry;
  /** Revisions delivered through 'change' events, in order. */
  revisions: number[];
}

async function rig(t: T, redis: TestRedis, opts: { url?: string; start?: boolean } = {}): Promise<Rig> {
  const prefix = `weft-${randomBytes(4).toString('hex')}:`;
  const store = RegistryStore.connect(redis.url, { prefix });
  t.teardown(() => store.close());
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({
    url: opts.url ?? redis.url, prefix, state, metrics, blockMs: 200, timeoutMs: 1000, maxBackoffMs: 300,
  });
  t.teardown(() => follower.stop());
  const revisions: number[] = [];
  state.on('change', (_c, rev) => revisions.push(rev));
  if (opts.start !== false) await follower.start();
  return { prefix, store, state, follower, metrics, revisions };
}

/** Follower state equals the store's, kind by kind. */
async function assertConverged(t: T, r: Rig): Promise<void> {
  const target = await r.store.revision();
  await waitFor(`follower at revision ${target}`, () => r.state.revision >= target);
  for (const kind of KINDS) {
    const want = (await r.store.list(kind)).map((x) => JSON.stringify(x)).sort();
    const got = r.state.list(kind).map((x) => JSON.stringify(x)).sort();
    t.same(got, want, `${kind}: follower equals store (${want.length} records)`);
  }
}

/** Revisions arrived one by one: nothing missed, nothing applied twice. */
function assertContiguous(t: T, revs: number[], from: number): void {
  const bad = revs.findIndex((r, i) => r !== from + i);
  t.equal(bad, -1, `revisions ${from}..${from + revs.length - 1} applied exactly once, in order`);
}

let seed = 7;
function rand(n: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
  return (seed >>> 8) % n;
}

function randomChanges(): ChangeInput[] {
  const out: ChangeInput[] = [];
  for (let i = 0, n = 1 + rand(3); i < n; i++) {
    const ns = `ns${rand(4)}`;
    const k = rand(10);
    if (k < 6) {
      const w = workloadRecord({ namespace: ns, name: `w${rand(50)}`, node: `node-${rand(3)}`, addresses: [`10.1.${rand(4)}.${rand(250)}`], labels: { app: `a${rand(3)}` } });
      out.push(rand(4) === 0 ? { op: 'delete', kind: 'workload', key: w.uid } : { op: 'put', kind: 'workload', record: w });
    } else if (k < 8) {
      out.push({ op: 'put', kind: 'namespace', record: rand(2) ? ambientNamespace(ns) : namespaceRecord(ns) });
    } else {
      const s = serviceRecord({ namespace: ns, name: `s${rand(10)}`, vips: [`10.96.${rand(4)}.${rand(250)}`] });
      out.push(rand(3) === 0 ? { op: 'delete', kind: 'service', key: `${ns}/${s.name}` } : { op: 'put', kind: 'service', record: s });
    }
  }
  return out;
}

/** `writers` concurrent writers (separate connections) applying `total` random changes in all. */
async function writeConcurrently(redis: TestRedis, prefix: string, total: number, writers: number, during?: (i: number) => Promise<void>): Promise<void> {
  const stores = Array.from({ length: writers }, () => RegistryStore.connect(redis.url, { prefix }));
  let next = 0;
  try {
    await Promise.all(stores.map(async (s) => {
      while (next < total) {
        const i = next++;
        if (during) await during(i);
        // A writer whose connection is killed mid-call may fail; the writer is not under test.
        await s.apply(randomChanges()).catch((e) => { if (process.env.DBG) console.error(String(e)); });
      }
    }));
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
}

t.test('follower against a real redis-server', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const raw = new Redis(redis.url);
  t.teardown(() => raw.disconnect());

  t.test('loads a snapshot, then follows changes', async (t) => {
    const prefix = `weft-${randomBytes(4).toString('hex')}:`;
    const store = RegistryStore.connect(redis.url, { prefix });
    t.teardown(() => store.close());
    await store.apply([
      { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: ['10.0.0.1'] }) },
    ]);
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const metrics = new Registry();
    const follower = new RegistryFollower({ url: redis.url, prefix, state, metrics, blockMs: 200 });
    t.teardown(() => follower.stop());
    let snapshots = 0;
    state.on('snapshot', () => snapshots++);
    await follower.start();
    t.equal(follower.status, 'following');
    t.equal(snapshots, 1);
    t.equal(state.revision, 1);
    t.equal(state.workloadByAddress('10.0.0.1')?.enrolled, false);
    t.ok(follower.lastSyncAt);

    const affected: string[][] = [];
    state.on('change', (_c, _r, a) => affected.push(a));
    await store.setNamespaceLabel('demo', 'weft.io/dataplane-mode', 'ambient');
    await waitFor('enrolment', () => state.workload('demo/a')?.enrolled === true);
    t.same(affected, [['demo/a']], 'a namespace relabel reaches the workload through the follower');
    t.equal(await metric(metrics, 'weft_registry_revision'), 2);
    t.equal(await metric(metrics, 'weft_registry_reloads_total'), 0);
    t.ok((await metric(metrics, 'weft_registry_staleness_seconds')) >= 0);
  });

  t.test('many concurrent writes: nothing missed, nothing applied twice', async (t) => {
    const r = await rig(t, redis);
    await writeConcurrently(redis, r.prefix, 1500, 4);
    await assertConverged(t, r);
    assertContiguous(t, r.revisions, 1);
    t.equal(await metric(r.metrics, 'weft_registry_reloads_total'), 0);
  });

  t.test('connections killed mid-stream: resumes without loss or duplication', async (t) => {
    const r = await rig(t, redis);
    await r.store.put('namespace', namespaceRecord('ns0'));
    let stale = 0;
    r.follower.on('stale', () => stale++);
    await writeConcurrently(redis, r.prefix, 1200, 3, async (i) => {
      if (i % 200 === 100) await raw.client('KILL', 'TYPE', 'normal');
    });
    await assertConverged(t, r);
    assertContiguous(t, r.revisions, 1);
    t.ok(stale >= 1, `the follower noticed the kills (${stale} times)`);
    t.equal(await metric(r.metrics, 'weft_registry_reloads_total'), 0, 'resumed from its position, no reload needed');
  });

  t.test('a stream trimmed past the reader forces a snapshot reload', async (t) => {
    // An ACL user lets the test lock the follower out while the stream is trimmed.
    const user = `weftf${randomBytes(3).toString('hex')}`;
    await raw.call('ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '+@all');
    t.teardown(() => raw.call('ACL', 'DELUSER', user));
    const r = await rig(t, redis, { url: redis.url.replace('redis://', `redis://${user}:pw@`) });
    await writeConcurrently(redis, r.prefix, 50, 1);
    await assertConverged(t, r);
    const reloaded = new Promise<string>((resolve) => r.follower.once('snapshot', (_rev, reason) => resolve(reason)));
    await raw.call('ACL', 'SETUSER', user, 'off');
    await raw.client('KILL', 'USER', user);
    await waitFor('follower disconnected', () => r.follower.status === 'disconnected');
    await writeConcurrently(redis, r.prefix, 100, 1);
    await raw.xtrim(`${r.prefix}changes`, 'MAXLEN', 10);
    await raw.call('ACL', 'SETUSER', user, 'on');
    t.match(await reloaded, /trimmed/);
    await assertConverged(t, r);
    t.equal(await metric(r.metrics, 'weft_registry_reloads_total'), 1);
  });

  t.test('a gap seen while following forces a reload', async (t) => {
    const r = await rig(t, redis);
    await r.store.put('namespace', namespaceRecord('x'));
    await waitFor('rev 1', () => r.state.revision === 1);
    const reloaded = new Promise<string>((resolve) => r.follower.once('snapshot', (_rev, reason) => resolve(reason)));
    // A foreign writer bumps the revision by 3 but writes one entry: the follower must notice.
    const epoch = await raw.get(`${r.prefix}epoch`);
    await raw.hset(`${r.prefix}namespace`, 'y', JSON.stringify(namespaceRecord('y')));
    await raw.set(`${r.prefix}revision`, 4);
    await raw.xadd(`${r.prefix}changes`, '*', 'rev', '4', 'epoch', epoch!, 'changes', '[]');
    t.match(await reloaded, /gap in the change stream: at revision 1, next entry is 4/);
    t.equal(r.state.revision, 4);
    t.ok(r.state.get('namespace', 'y'), 'the reload picked up what the entries did not say');
    await r.store.put('namespace', namespaceRecord('z'));
    await assertConverged(t, r);
  });

  t.test('malformed records and entries are skipped and counted', async (t) => {
    const r = await rig(t, redis, { start: false });
    await r.store.put('namespace', namespaceRecord('demo'));
    await raw.hset(`${r.prefix}workload`, 'demo/bad', JSON.stringify({ uid: 'demo/bad', name: 'bad' }), 'demo/junk', '{{');
    await r.follower.start();
    t.equal(r.state.list('workload').length, 0);
    t.equal(await metric(r.metrics, 'weft_registry_invalid_records_total'), 2, 'two bad hash fields');

    // A buggy writer: revision bumped and one entry added, as the store does, but with bad contents.
    const epoch = (await raw.get(`${r.prefix}epoch`))!;
    const rawEntry = (changes: string | undefined) => raw.eval(
      `local rev = redis.call('INCR', KEYS[1])
       if ARGV[2] == '' then return redis.call('XADD', KEYS[2], '*', 'rev', rev, 'epoch', ARGV[1]) end
       return redis.call('XADD', KEYS[2], '*', 'rev', rev, 'epoch', ARGV[1], 'changes', ARGV[2])`,
      2, `${r.prefix}revision`, `${r.prefix}changes`, epoch, changes ?? '');
    await r.store.put('workload', workloadRecord({ namespace: 'demo', name: 'w', node: 'n1', addresses: ['10.0.0.1'] }));
    await waitFor('w', () => r.state.workload('demo/w') !== undefined);
    // An invalid put reads as absent: the follower drops its old copy, as a snapshot load would.
    await rawEntry(JSON.stringify([{ op: 'put', kind: 'workload', key: 'demo/w', record: { uid: 'demo/w', name: 'w' } }]));
    await waitFor('invalid put applied as delete', () => r.state.workload('demo/w') === undefined);
    t.equal(await metric(r.metrics, 'weft_registry_invalid_records_total'), 3);
    t.equal(await metric(r.metrics, 'weft_registry_reloads_total'), 0);

    await raw.xadd(`${r.prefix}changes`, '*', 'norev', 'x');
    await rawEntry('not json');
    await waitFor('reload after unreadable entry', async () => (await metric(r.metrics, 'weft_registry_reloads_total')) === 1);
    t.equal(await metric(r.metrics, 'weft_registry_invalid_records_total'), 7, 'entry without rev, unreadable entry, and the two bad hash fields again on reload');
    await r.store.put('namespace', namespaceRecord('after'));
    await waitFor('follows again', () => r.state.get('namespace', 'after') !== undefined);
    t.equal(r.follower.status, 'following');
  });

  t.test('a change of a kind this build does not know is skipped and counted, without a reload', async (t) => {
    const r = await rig(t, redis);
    await r.store.put('namespace', namespaceRecord('demo'));
    await waitFor('demo', () => r.state.get('namespace', 'demo') !== undefined);
    const epoch = (await raw.get(`${r.prefix}epoch`))!;
    // What a newer writer would send: one entry mixing a kind we know and one we do not.
    await raw.eval(
      `local rev = redis.call('INCR', KEYS[1])
       redis.call('HSET', KEYS[3], 'other', ARGV[3])
       return redis.call('XADD', KEYS[2], '*', 'rev', rev, 'epoch', ARGV[1], 'changes', ARGV[2])`,
      3, `${r.prefix}revision`, `${r.prefix}changes`, `${r.prefix}namespace`, epoch,
      JSON.stringify([{ op: 'put', kind: 'widget', key: 'demo/w', record: { any: 1 } }, { op: 'delete', kind: 'widget', key: 'demo/v' },
        { op: 'put', kind: 'namespace', key: 'other', record: namespaceRecord('other') }]), JSON.stringify(namespaceRecord('other')));
    await waitFor('the known change applied', () => r.state.get('namespace', 'other') !== undefined);
    t.equal(await metric(r.metrics, 'weft_registry_unknown_kind_changes_total'), 2, 'both widget changes counted');
    t.equal(await metric(r.metrics, 'weft_registry_reloads_total'), 0, 'no snapshot reload for an unknown kind');
    t.equal(await metric(r.metrics, 'weft_registry_invalid_records_total'), 0);
    await r.store.put('namespace', namespaceRecord('after'));
    await waitFor('follows on', () => r.state.get('namespace', 'after') !== undefined);
    await assertConverged(t, r);
  });

  t.test('stop() closes every connection and timer', async (t) => {
    const before = process.getActiveResourcesInfo().filter((x) => x !== 'TTYWrap');
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const follower = new RegistryFollower({ url: redis.url, prefix: 'weft-leak:', state, blockMs: 200 });
    await follower.start();
    const names = async () => String(await raw.client('LIST')).split('\n').filter((l) => /name=weft-follower/.test(l)).length;
    t.equal(await names(), 2, 'a snapshot connection and a reader connection');
    await follower.stop();
    t.equal(follower.status, 'stopped');
    await waitFor('server saw the connections go', async () => (await names()) === 0);
    await new Promise((r) => setImmediate(r));
    const after = process.getActiveResourcesInfo().filter((x) => x !== 'TTYWrap');
    const count = (xs: string[], k: string) => xs.filter((x) => x === k).length;
    t.ok(count(after, 'Timeout') <= count(before, 'Timeout'), 'no timer left behind');
    t.ok(count(after, 'TCPSocketWrap') <= count(before, 'TCPSocketWrap'), 'no socket left behind');
  });
});

