import t, { type Test } from 'tap';
import { KubeClient } from '../src/k8s/client';
import { LeaderElector } from '../src/controller/leader';
import { TestApiServer } from './helpers/apiserver';
import { waitFor } from './helpers/wait';

type T = Test;

async function rig(t: T) {
  const api = await TestApiServer.start();
  t.teardown(() => api.stop());
  const client = new KubeClient({ server: api.url });
  t.teardown(() => client.close());
  const elector = (identity: string) => {
    const e = new LeaderElector(client, {
      namespace: 'weft-system', name: 'lease', identity,
      leaseDurationSeconds: 1, renewIntervalMs: 50, renewDeadlineMs: 400, retryIntervalMs: 50,
    });
    t.teardown(() => e.stop());
    return e;
  };
  return { api, elector };
}

t.test('candidates racing for a missing Lease: exactly one wins and keeps it', async (t) => {
  const { api, elector } = await rig(t);
  const all = ['a', 'b', 'c'].map(elector);
  let overlap = false;
  for (const e of all) e.on('started', () => { if (all.filter((x) => x.isLeader).length > 1) overlap = true; });
  for (const e of all) e.start();
  await waitFor('a leader', () => all.some((e) => e.isLeader));
  const leader = all.find((e) => e.isLeader)!;
  // Many renewal rounds of everyone: the holder never changes and nobody else starts.
  const start = api.resourceVersion;
  await waitFor('renewals', () => api.resourceVersion >= start + 20);
  t.equal(all.filter((e) => e.isLeader).length, 1);
  t.ok(leader.isLeader);
  t.notOk(overlap);
  const lease = api.get('leases', 'weft-system', 'lease')!;
  t.equal(lease.spec.leaseTransitions, 0);
  t.match(lease.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime');
  t.equal(lease.spec.leaseDurationSeconds, 1);
  t.ok(api.requests.some((r) => r.method === 'POST'), 'created with POST');
});

t.test('a leader that sees another holder steps down at once', async (t) => {
  const { api, elector } = await rig(t);
  const a = elector('a');
  a.start();
  await waitFor('a leads', () => a.isLeader);
  let stopped = false;
  a.on('stopped', () => { stopped = true; });
  api.modify('leases', 'weft-system', 'lease', (o) => { o.spec.holderIdentity = 'intruder'; o.spec.leaseDurationSeconds = 60; });
  await waitFor('a steps down', () => stopped);
  t.notOk(a.isLeader);
});

t.test('a leader that cannot renew steps down after the renew deadline, and comes back', async (t) => {
  const { api, elector } = await rig(t);
  const a = elector('a');
  a.start();
  await waitFor('a leads', () => a.isLeader);
  let stopped = false;
  a.on('stopped', () => { stopped = true; });
  api.failNext = { count: 1_000_000, match: (_m, p) => p.includes('/leases') };
  await waitFor('a steps down', () => stopped);
  t.notOk(a.isLeader);
  api.failNext = undefined;
  await waitFor('a leads again', () => a.isLeader);
  t.pass('re-acquired its own lease once the API answered');
});

t.test('stop releases the lease; a waiting candidate takes it without waiting it out', async (t) => {
  const { api, elector } = await rig(t);
  const a = elector('a');
  const b = elector('b');
  a.start();
  await waitFor('a leads', () => a.isLeader);
  // Make the lease long: only a release lets b in quickly.
  a.stop({ release: false });
  await waitFor('stopped', () => !a.isLeader);
  const a2 = new LeaderElector((a as unknown as { client: KubeClient }).client, {
    namespace: 'weft-system', name: 'lease', identity: 'a', leaseDurationSeconds: 60, renewIntervalMs: 50, retryIntervalMs: 50,
  });
  t.teardown(() => a2.stop());
  a2.start();
  await waitFor('a2 leads', () => a2.isLeader);
  // Instead of a sleep: wait for b's own attempts. a2 renews with GET + PUT, b only
  // GETs a lease it may not take, so the surplus of GETs counts b's rounds.
  const leaseCalls = (method: string) => api.requests.filter((r) => r.method === method && r.path.endsWith('/leases/lease')).length;
  const surplus = () => leaseCalls('GET') - leaseCalls('PUT');
  const before = surplus();
  b.start();
  await waitFor('b has looked at the lease several times', () => surplus() - before >= 4);
  t.notOk(b.isLeader, 'a 60 s lease held by a live leader is not taken');
  await a2.stop();
  t.equal(api.get('leases', 'weft-system', 'lease')!.spec.holderIdentity, '');
  await waitFor('b leads', () => b.isLeader);
  t.equal(api.get('leases', 'weft-system', 'lease')!.spec.holderIdentity, 'b');
});
