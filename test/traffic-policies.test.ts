import t from 'tap';
import { MeshState } from '../src/registry/state';
import { serviceRecord, trafficPolicyRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { TrafficPolicies } from '../src/waypoint/traffic-policies';
import { validateRetry } from '../src/resilience/retry-spec';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}
const del = (kind: Kind, key: string): Change => ({ op: 'delete', kind, key });

t.test('forService follows the registry: put, change (a new spec object), delete, snapshot', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const p = new TrafficPolicies(s);
  t.equal(p.forService('demo', 'echo'), undefined, 'no policy: undefined (defaults apply)');
  let changes = 0;
  p.on('change', () => changes++);
  const v1 = trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo', 'other'], { retry: validateRetry({}, 'spec.retry', 'reject') });
  s.applyChanges([put('service', serviceRecord({ namespace: 'demo', name: 'echo' })), put('trafficpolicy', v1)], 1);
  t.equal(p.forService('demo', 'echo'), v1.spec, 'the record\'s spec itself (identity marks "unchanged")');
  t.equal(p.forService('demo', 'other'), v1.spec, 'every targetRef');
  t.equal(p.forService('other', 'echo'), undefined, 'targetRefs are in the policy\'s namespace only');
  t.equal(p.recordForService('demo', 'echo')?.name, 'echo');
  s.applyChanges([put('service', serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.9'] }))], 2);
  t.equal(p.forService('demo', 'echo'), v1.spec, 'a change of another kind keeps the table (same spec object)');
  t.equal(changes, 1);
  const v2 = trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { faults: {} });
  s.applyChanges([put('trafficpolicy', v2)], 3);
  t.equal(p.forService('demo', 'echo'), v2.spec, 'an edit: the new spec');
  t.not(p.forService('demo', 'echo'), v1.spec);
  t.equal(p.forService('demo', 'other'), undefined, 'a dropped targetRef leaves that Service');
  s.applyChanges([del('trafficpolicy', 'demo/echo')], 4);
  t.equal(p.forService('demo', 'echo'), undefined, 'deleted');
  s.replaceAll({ trafficpolicy: [v1] }, 9);
  t.equal(p.forService('demo', 'echo'), v1.spec, 'a snapshot reloads');
  t.equal(changes, 4);
  p.close();
  s.applyChanges([del('trafficpolicy', 'demo/echo')], 10);
  t.equal(p.forService('demo', 'echo'), v1.spec, 'closed: no longer follows');
});

t.test('two policies on one Service: the oldest wins, the other is Conflicted there (per Service)', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const p = new TrafficPolicies(s);
  const older = trafficPolicyRecord({ namespace: 'demo', name: 'zz-older', creationTimestamp: '2026-11-30T10:00:00Z' }, ['echo']);
  const newer = trafficPolicyRecord({ namespace: 'demo', name: 'aa-newer', creationTimestamp: '2026-11-30T11:00:00Z' }, ['echo', 'api']);
  const sameAge = trafficPolicyRecord({ namespace: 'demo', name: 'bb-same', creationTimestamp: '2026-11-30T11:00:00Z' }, ['api']);
  s.applyChanges([put('service', serviceRecord({ namespace: 'demo', name: 'echo' })), put('service', serviceRecord({ namespace: 'demo', name: 'api' })),
    put('trafficpolicy', newer), put('trafficpolicy', sameAge), put('trafficpolicy', older)], 1);
  t.equal(p.forService('demo', 'echo'), older.spec, 'the older wins whatever the order of arrival');
  t.equal(p.forService('demo', 'api'), newer.spec, 'same age: namespace/name alphabetically');
  const views = p.views();
  t.same(views.map((v) => `${v.name}:${v.targets.map((x) => `${x.ref.name}=${x.state}`).join(',')}`),
    ['aa-newer:echo=Conflicted,api=Accepted', 'bb-same:api=Conflicted', 'zz-older:echo=Accepted']);
  t.match(views[0]!.targets[0]!.message, /already targeted by the older TrafficPolicy demo\/zz-older/);
  s.applyChanges([del('trafficpolicy', 'demo/zz-older')], 2);
  t.equal(p.forService('demo', 'echo'), newer.spec, 'the winner gone: the next oldest takes over');
});

t.test('a policy on a missing Service: reported TargetNotFound, in force as soon as the Service exists', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const p = new TrafficPolicies(s);
  const pol = trafficPolicyRecord({ namespace: 'demo', name: 'later' }, ['later']);
  s.applyChanges([put('trafficpolicy', pol)], 1);
  t.same(p.views()[0]!.targets.map((x) => x.state), ['TargetNotFound']);
  t.match(p.views()[0]!.targets[0]!.message, /does not exist; the policy takes effect as soon as it does/);
  s.applyChanges([put('service', serviceRecord({ namespace: 'demo', name: 'later' }))], 2);
  t.equal(p.forService('demo', 'later'), pol.spec, 'no policy change needed: the Service\'s arrival is enough');
  t.same(p.views()[0]!.targets.map((x) => x.state), ['Accepted']);
});
