import t from 'tap';
import { MeshState } from '../src/registry/state';
import {
  ambientNamespace, httpRouteRecord, serviceRecord, waypointPod, waypointRecord, workloadRecord,
} from '../src/registry/fixtures';
import { recordKey, USE_WAYPOINT_LABEL, type Change, type Kind, type RecordsByKind } from '../src/registry/types';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}
const del = (kind: Kind, key: string): Change => ({ op: 'delete', kind, key });
const names = (rs: { kind: string; record: { namespace: string; name: string } }[]) => rs.map((r) => `${r.kind}:${r.record.namespace}/${r.record.name}`);

t.test('which waypoint a Service is bound to: its own label, else its namespace\'s, `none` opts out', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const echo = serviceRecord({ namespace: 'demo', name: 'echo' });
  s.applyChanges([put('namespace', ambientNamespace('demo')), put('service', echo)], 1);
  t.equal(s.serviceWaypointName(echo), undefined, 'no label anywhere');
  s.applyChanges([put('namespace', ambientNamespace('demo', { [USE_WAYPOINT_LABEL]: 'waypoint' }))], 2);
  t.equal(s.serviceWaypointName(echo), 'waypoint', 'the namespace binds its services');
  t.equal(s.serviceWaypointName({ ...echo, waypoint: 'other' }), 'other', "the service's own label wins");
  t.equal(s.serviceWaypointName({ ...echo, waypoint: 'none' }), undefined, '`none` on the service opts out');
  s.applyChanges([put('namespace', ambientNamespace('demo', { [USE_WAYPOINT_LABEL]: 'none' }))], 3);
  t.equal(s.serviceWaypointName(echo), undefined, '`none` on the namespace binds nothing');
  t.equal(s.serviceWaypointName({ ...echo, waypoint: 'waypoint' }), 'waypoint');
  t.equal(s.waypoint('demo', 'waypoint'), undefined, 'a binding may name a waypoint that does not exist: the caller refuses');
});

t.test('waypoints and their pods', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const wp = waypointRecord({ namespace: 'demo', name: 'waypoint' });
  const pod = waypointPod(wp, { name: 'waypoint-0', node: 'node-2', addresses: ['10.1.2.9'] });
  s.applyChanges([put('namespace', ambientNamespace('demo')), put('waypoint', wp), put('workload', pod),
    put('workload', workloadRecord({ namespace: 'demo', name: 'echo', node: 'node-2', addresses: ['10.1.2.3'] }))], 1);
  t.same(s.waypoint('demo', 'waypoint'), wp);
  t.same(s.waypointPods(wp).map((w) => w.record.uid), ['demo/waypoint-0']);
  t.equal(s.waypointPods(wp)[0]!.enrolled, false, 'a waypoint pod is never enrolled, even in an ambient namespace');
  t.same(s.waypointPods({ namespace: 'other', name: 'waypoint' }), [], 'pods are looked up in the waypoint\'s namespace only');
  s.applyChanges([del('waypoint', 'demo/waypoint'), del('workload', 'demo/waypoint-0')], 2);
  t.equal(s.waypoint('demo', 'waypoint'), undefined);
  t.same(s.waypointPods(wp), []);
});

t.test('routes are indexed by the Services their parentRefs name', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const producer = httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo');
  const consumer = httpRouteRecord({ namespace: 'client', name: 'mine' }, 'echo');
  consumer.spec.parentRefs = [{ group: '', kind: 'Service', name: 'echo', namespace: 'demo', port: 80 },
    { group: '', kind: 'Service', name: 'echo', namespace: 'demo', port: 81 }];
  const grpc = { name: 'canary', namespace: 'demo', creationTimestamp: '2026-11-30T12:00:00Z',
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], hostnames: [], rules: [] } };
  s.applyChanges([put('httproute', producer), put('httproute', consumer), put('grpcroute', grpc)], 1);
  t.same(names(s.routesForService('demo', 'echo')), ['grpcroute:demo/canary', 'httproute:client/mine', 'httproute:demo/canary'],
    'same name in two kinds kept apart; a route naming the service twice listed once; parentRef namespace defaults to the route\'s');
  t.same(s.routesForService('client', 'echo'), [], 'the consumer route\'s own namespace is not its parent');

  // Re-parenting moves the route in the index.
  s.applyChanges([put('httproute', httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'other'))], 2);
  t.same(names(s.routesForService('demo', 'echo')), ['grpcroute:demo/canary', 'httproute:client/mine']);
  t.same(names(s.routesForService('demo', 'other')), ['httproute:demo/canary']);
  s.applyChanges([del('httproute', 'client/mine'), del('grpcroute', 'demo/canary')], 3);
  t.same(s.routesForService('demo', 'echo'), []);

  // A snapshot load builds the same index.
  const r = new MeshState({ trustDomain: 'cluster.local' });
  r.replaceAll({ httproute: [producer, consumer], grpcroute: [grpc] }, 9);
  t.same(names(r.routesForService('demo', 'echo')), ['grpcroute:demo/canary', 'httproute:client/mine', 'httproute:demo/canary']);
});
