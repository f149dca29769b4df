/**
 * The registry through Redis Sentinel, with real processes: a primary, two replicas and
 * three Sentinels on loopback. The primary is killed (SIGKILL, by the PID this test
 * started) under a steady stream of registry writes while a follower tails the
 * registry. Proves: the follower's view never loses a known workload during the
 * failover (proxies keep serving), the writer resumes on the promoted replica, and the
 * follower resyncs from its stream position (the stream replicated to the new
 * primary) without a snapshot reload, ending with every acknowledged write.
 * The failover times are printed as comments, never asserted.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from './helpers/cli';
import { Registry } from 'prom-client';
import { startSentinelCluster, type TestSentinelCluster } from './helpers/redis-sentinel';
import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { waitFor, metricValue } from './helpers/wait';
import { parseOptions } from '../src/lib/options';
import { redisOptionSpecs, redisTarget } from '../src/lib/common-options';
import { RegistryStore } from '../src/registry/store';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { namespaceRecord, workloadRecord } from '../src/registry/fixtures';

const MAX_WRITES = 5000;

t.test('Sentinel failover under steady writes: writers resume, the follower resyncs without a reload', async (t) => {
  await failover(t);
});

t.test('the same with the ACLs of daemonset/redis-sentinel.yaml: every user only what it needs', async (t) => {
  // Users and passwords made as an operator makes them; servers, replicas, Sentinels
  // and components each authenticate as the manifest has them.
  const tmp = tempDir('weft-sentinel-secrets-');
  t.teardown(() => tmp.remove());
  execFileSync(join(__dirname, '..', 'scripts', 'redis-secrets'), ['--dir', tmp.dir, '--sentinel'], { stdio: 'ignore' });
  const cluster = await failover(t, tmp.dir);
  const password = readFileSync(join(tmp.dir, 'weft-redis-user-ztunnel', 'sentinel-password'), 'utf8').trim();
  const client = new Redis(cluster.sentinels[0]!.port, '127.0.0.1', { username: 'weft-sentinel-client', password, maxRetriesPerRequest: 1, enableReadyCheck: false });
  t.teardown(() => client.disconnect());
  t.ok(await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', cluster.masterName), "a component's Sentinel user finds the primary");
  await t.rejects(client.call('SENTINEL', 'FAILOVER', cluster.masterName), /NOPERM/, 'but cannot fail it over');
  await t.rejects(client.call('SENTINEL', 'SET', cluster.masterName, 'down-after-milliseconds', '1'), /NOPERM/, 'nor reconfigure the Sentinels');
  const anonymous = new Redis(cluster.sentinels[0]!.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  t.teardown(() => anonymous.disconnect());
  await t.rejects(anonymous.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', cluster.masterName), /NOAUTH|NOPERM|WRONGPASS/, 'without a password: nothing');
});

async function failover(t: Test, secretsDir?: string): Promise<TestSentinelCluster> {
  const cluster = await startSentinelCluster({ replicas: 2, sentinels: 3, downAfterMs: 1000, ...(secretsDir ? { auth: { secretsDir } } : {}) });
  t.teardown(() => cluster.stop());
  const first = cluster.servers[0]!;
  t.equal(await cluster.primaryPort(), first.port, 'the Sentinels name the first server as primary');

  // The connection as every component builds it: flags through the shared option specs.
  const targetOf = (component: string) => {
    const own = (key: string) => join(secretsDir!, `weft-redis-user-${component}`, key);
    const creds = secretsDir ? ['--redis-username', `weft-${component}`, '--redis-password-file', own('password'),
      '--redis-sentinel-username', 'weft-sentinel-client', '--redis-sentinel-password-file', own('sentinel-password')] : [];
    const argv = ['--redis-sentinels', cluster.sentinelList, '--redis-master-name', cluster.masterName, ...creds];
    return redisTarget(parseOptions(redisOptionSpecs, argv, {}).values);
  };
  const target = targetOf('ztunnel');

  const store = RegistryStore.connect(targetOf('controller'));
  t.teardown(() => store.close());
  await store.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'known', node: 'n1', addresses: ['10.1.0.1'] }) },
  ]);
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const metrics = new Registry();
  const follower = new RegistryFollower({ url: target, state, metrics, blockMs: 200, timeoutMs: 1000 });
  t.teardown(() => follower.stop());
  await follower.start();

  // The steady writer: one workload per write; `acked` holds each write Redis confirmed.
  let writing = true;
  const acked: { i: number; at: number; rev: number }[] = [];
  let failures = 0;
  const writer = (async () => {
    for (let i = 0; writing && i < MAX_WRITES; i++) {
      const rec = workloadRecord({ namespace: 'demo', name: `w${i}`, node: 'n1', addresses: [`10.2.${i >> 8}.${i & 255}`] });
      try {
        const rev = await store.put('workload', rec);
        acked.push({ i, at: Date.now(), rev });
      } catch {
        failures++;
        i--; // the same write again: the writer's job is to get it in
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();

  // The reader: a proxy's lookups of a known workload, every few ms, all through the failover.
  let lookups = 0;
  let misses = 0;
  const reader = setInterval(() => {
    lookups++;
    if (!state.workloadByAddress('10.1.0.1')) misses++;
  }, 5);
  t.teardown(() => clearInterval(reader));

  await waitFor('steady writes before the failover', () => acked.length >= 50, { timeoutMs: 20_000 });
  await waitFor('the follower keeps up', () => state.revision >= acked[acked.length - 1]!.rev, { timeoutMs: 10_000 });
  const killedAt = Date.now();
  const ackedBefore = acked.length;
  first.process.kill('SIGKILL');

  await waitFor('the Sentinels promote a replica', async () => (await cluster.primaryPort()) !== first.port,
    { timeoutMs: 30_000, intervalMs: 50, ignoreErrors: true });
  const promotedAt = Date.now();
  const newPrimary = await cluster.primaryPort();
  t.ok(cluster.servers.slice(1).some((s) => s.port === newPrimary), 'a replica is the primary now');

  await waitFor('writes succeed again', () => acked.some((a) => a.at > killedAt), { timeoutMs: 30_000 });
  const firstAfter = acked.find((a) => a.at > killedAt)!;
  await waitFor('50 more writes after the failover', () => acked.length >= ackedBefore + 50, { timeoutMs: 20_000 });
  writing = false;
  await writer;
  clearInterval(reader);

  const last = acked[acked.length - 1]!;
  await waitFor('the follower reaches the last write', () => state.revision >= last.rev, { timeoutMs: 15_000 });
  const missing = acked.filter((a) => !state.workloadByAddress(`10.2.${a.i >> 8}.${a.i & 255}`)).map((a) => a.i);
  t.same(missing, [], 'the follower holds every acknowledged write, before and after the failover');
  t.equal(misses, 0, `the known workload was found in all ${lookups} lookups during the failover`);
  t.equal(await metricValue(metrics, 'weft_registry_reloads_total'), 0, 'no snapshot reload: the stream survived the failover');
  t.ok(await metricValue(metrics, 'weft_registry_resumes_total') >= 1, 'the follower resumed from its stream position');
  t.ok(await metricValue(metrics, 'weft_registry_reconnects_total') >= 1, 'reconnects are counted');

  const k = acked.findIndex((a) => a.at > killedAt);
  t.comment(`acks around the kill (ms after it): ${acked.slice(Math.max(0, k - 3), k + 3).map((a) => `${a.i}@${a.at - killedAt} rev ${a.rev}`).join(', ')}`);
  t.comment(`failover: Sentinels promoted a replica ${promotedAt - killedAt} ms after the kill; `
    + `first acknowledged write ${firstAfter.at - killedAt} ms after the kill (writer retries meanwhile: ${failures}); `
    + `follower reloads 0, resumes ${await metricValue(metrics, 'weft_registry_resumes_total')}, `
    + `reconnects ${await metricValue(metrics, 'weft_registry_reconnects_total')}; ${acked.length} writes in all`);
  return cluster;
}
