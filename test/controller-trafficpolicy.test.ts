/**
 * The controller's TrafficPolicy mirror against the API-server stand-in and a real
 * redis-server: the CRD objects become `trafficpolicy` records (validated with the
 * code `weft apply` runs), status is written per target Service (Accepted, Conflicted,
 * TargetNotFound, Invalid), an invalid edit keeps the last valid version in force, and
 * a cluster without the CRD still mirrors everything else.
 */
import t from 'tap';
import { validateRetry } from '../src/resilience/retry-spec';
import { RegistryStore } from '../src/registry/store';
import { namespaceObj, serviceObj } from './helpers/apiserver';
import { startRedis, type TestRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { controllerRig } from './helpers/controller-rig';

let redis: TestRedis;
t.before(async () => {
  redis = await startRedis();
});
t.teardown(() => redis.stop());

const tp = (name: string, services: string[], extra: Record<string, unknown> = {}) => ({
  metadata: { name, namespace: 'demo' },
  spec: { targetRefs: services.map((s) => ({ group: '', kind: 'Service', name: s })), ...extra },
});
const svc = (name: string, ip: string) => serviceObj('demo', name, { clusterIP: ip, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] });

type Cond = { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime?: string };
type Status = { conditions?: Cond[]; ancestors?: { ancestorRef: { name: string }; controllerName: string; conditions: Cond[] }[] };

async function records(store: RegistryStore) {
  return (await store.snapshot()).records.trafficpolicy;
}

t.test('mirrored with status per target; a missing Service, a conflict, an invalid edit (last good kept), a delete', async (t) => {
  const { api, store, controller, logs } = await controllerRig(t, redis.url);
  const statusOf = (name: string) => (api.get('trafficpolicies', 'demo', name)?.status ?? {}) as Status;
  const summary = (name: string) => statusOf(name).conditions?.find((c) => c.type === 'Accepted');
  const ancestors = (name: string) => (statusOf(name).ancestors ?? []).map((a) => `${a.ancestorRef.name}=${a.conditions[0]!.reason}`);
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  api.put('services', svc('echo', '10.96.0.10'));
  api.put('trafficpolicies', tp('a-first', ['echo', 'later'], { retry: {}, unknownFutureSection: { x: 1 } }));
  api.put('trafficpolicies', tp('b-second', ['echo']));
  controller.start();

  await waitFor('both mirrored', async () => (await records(store)).length === 2);
  const first = (await records(store)).find((r) => r.name === 'a-first')!;
  t.same(first.spec, { targetRefs: [{ group: '', kind: 'Service', name: 'echo' }, { group: '', kind: 'Service', name: 'later' }], retry: validateRetry({}, 'spec.retry', 'reject') },
    'the validated spec; a section this controller does not know is dropped, not a reason to discard the policy');
  t.equal(first.creationTimestamp, new Date(api.get('trafficpolicies', 'demo', 'a-first')!.metadata.creationTimestamp).toISOString());

  await waitFor('status on both', () => summary('a-first') !== undefined && summary('b-second') !== undefined);
  t.same(ancestors('a-first'), ['echo=Accepted', 'later=TargetNotFound']);
  t.match(summary('a-first'), { status: 'False', reason: 'TargetNotFound', observedGeneration: 1, message: /Service demo\/later does not exist; the policy takes effect as soon as it does/ });
  t.same(ancestors('b-second'), ['echo=Conflicted'], 'the older policy holds the Service');
  t.match(summary('b-second'), { status: 'False', reason: 'Conflicted', message: /older TrafficPolicy demo\/a-first/ });
  t.equal(statusOf('a-first').ancestors![0]!.controllerName, 'weft.io/waypoint');

  api.put('services', svc('later', '10.96.0.11'));
  await waitFor('the Service appeared: Accepted', () => summary('a-first')?.status === 'True');
  t.same(ancestors('a-first'), ['echo=Accepted', 'later=Accepted']);

  // An invalid edit: the registry keeps the last valid version; the status says so.
  const revBefore = await store.revision();
  api.modify('trafficpolicies', 'demo', 'a-first', (o) => { o.spec.targetRefs = [{ kind: 'Deployment', name: 'echo' }]; });
  await waitFor('Invalid in status', () => summary('a-first')?.reason === 'Invalid');
  t.match(summary('a-first'), { status: 'False', observedGeneration: 2,
    message: /spec\.targetRefs\[0\]\.kind must be Service.*the last valid version \(targets echo, later\) stays in force until it is fixed/ });
  t.same(ancestors('a-first'), ['echo=Invalid']);
  t.same((await records(store)).find((r) => r.name === 'a-first'), first, 'the last good record, unchanged');
  t.equal(await store.revision(), revBefore, 'nothing written to the registry');
  t.ok(logs.some((l) => /TrafficPolicy demo\/a-first is invalid: .*its last valid version stays in force/.test(l.msg)), 'a warning naming the field');
  t.same(ancestors('b-second'), ['echo=Conflicted'], 'the kept version still holds the Service');

  // Never valid: not mirrored, reported.
  api.put('trafficpolicies', tp('c-bad', ['echo'], { retry: 'three' }));
  await waitFor('c-bad reported', () => summary('c-bad') !== undefined);
  t.match(summary('c-bad'), { status: 'False', reason: 'Invalid', message: /spec\.retry must be an object.*no valid version was ever mirrored/ });
  t.notOk((await records(store)).some((r) => r.name === 'c-bad'));

  // Fixed again, then deleted: the other policy takes the Service.
  api.modify('trafficpolicies', 'demo', 'a-first', (o) => { o.spec.targetRefs = [{ kind: 'Service', name: 'later' }]; });
  await waitFor('fixed', () => summary('a-first')?.status === 'True');
  t.same((await records(store)).find((r) => r.name === 'a-first')!.spec.targetRefs.map((r) => r.name), ['later']);
  await waitFor('b-second now holds echo', () => summary('b-second')?.status === 'True');
  api.remove('trafficpolicies', 'demo', 'a-first');
  await waitFor('deleted from the registry', async () => !(await records(store)).some((r) => r.name === 'a-first'));

  // Unchanged status is not written again.
  const writes = () => api.requests.filter((q) => q.method === 'PATCH' && q.path.includes('/trafficpolicies/')).length;
  const before = writes();
  api.put('services', svc('other', '10.96.0.12'));
  await waitFor('other mirrored', async () => (await store.snapshot()).records.service.length === 3);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(writes(), before, 'no status write when nothing changed');
});

t.test('without the TrafficPolicy CRD, everything else is mirrored and the absence logged once', async (t) => {
  const { api, store, controller, logs } = await controllerRig(t, redis.url, { missingGroups: ['networking.weft.io'] });
  api.put('namespaces', namespaceObj('demo', {}));
  api.put('services', svc('echo', '10.96.0.10'));
  controller.start();
  await waitFor('the Service mirrored', async () => (await store.snapshot()).records.service.length === 1);
  t.equal(logs.filter((l) => /TrafficPolicy CRD .* is not installed \(404\)/.test(l.msg)).length, 1);
  api.setGroupInstalled('networking.weft.io', true);
  api.put('trafficpolicies', tp('late', ['echo']));
  await waitFor('picked up once installed', async () => (await records(store)).length === 1, { timeoutMs: 10_000 });
});
