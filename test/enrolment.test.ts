import t from 'tap';
import { deriveWorkloadView, isEnrolled, labelsMatch, waypointFor } from '../src/registry/enrolment';
import { ambientNamespace, namespaceRecord, workloadRecord } from '../src/registry/fixtures';

const AMBIENT = { 'weft.io/dataplane-mode': 'ambient' };

t.test('namespace opt-in enrols, pod opt-out releases', async (t) => {
  t.equal(isEnrolled({}, AMBIENT), true);
  t.equal(isEnrolled({ app: 'x' }, AMBIENT), true);
  t.equal(isEnrolled({ 'weft.io/dataplane-mode': 'none' }, AMBIENT), false, 'pod opts out');
  t.equal(isEnrolled({}, {}), false, 'namespace not labelled');
  t.equal(isEnrolled({}, undefined), false, 'namespace unknown');
  t.equal(isEnrolled({}, { 'weft.io/dataplane-mode': 'sidecar' }), false, 'other mode');
  t.equal(isEnrolled({ 'weft.io/dataplane-mode': 'ambient' }, {}), false, 'a pod cannot opt in alone');
});

t.test('waypoint: pod label wins, none cancels, namespace is the fallback', async (t) => {
  t.equal(waypointFor({}, {}), undefined);
  t.equal(waypointFor({}, { 'weft.io/use-waypoint': 'wp' }), 'wp');
  t.equal(waypointFor({ 'weft.io/use-waypoint': 'mine' }, { 'weft.io/use-waypoint': 'wp' }), 'mine');
  t.equal(waypointFor({ 'weft.io/use-waypoint': 'none' }, { 'weft.io/use-waypoint': 'wp' }), undefined);
  t.equal(waypointFor({}, { 'weft.io/use-waypoint': 'none' }), undefined);
  t.equal(waypointFor({ 'weft.io/use-waypoint': '' }, { 'weft.io/use-waypoint': 'wp' }), 'wp', 'empty value is absent');
});

t.test('deriveWorkloadView', async (t) => {
  const w = workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa1' });
  const enrolled = deriveWorkloadView(w, ambientNamespace('demo', { 'weft.io/use-waypoint': 'wp' }), 'cluster.local');
  t.same(enrolled, {
    record: w, enrolled: true, protocol: 'HBONE',
    identity: 'spiffe://cluster.local/ns/demo/sa/sa1', waypoint: 'wp',
  });
  t.equal(enrolled.record, w, 'record is the stored object, not a copy');

  const plain = deriveWorkloadView(w, namespaceRecord('demo', { 'weft.io/use-waypoint': 'wp' }), 'example.org');
  t.same(plain, { record: w, enrolled: false, protocol: 'TCP', identity: 'spiffe://example.org/ns/demo/sa/sa1' });
  t.notOk('waypoint' in plain, 'no waypoint outside the mesh');

  const none = deriveWorkloadView(w, undefined, 'cluster.local');
  t.equal(none.enrolled, false);
});

t.test('labelsMatch', async (t) => {
  t.ok(labelsMatch({}, { a: '1' }), 'empty selector selects everything');
  t.ok(labelsMatch({ a: '1' }, { a: '1', b: '2' }));
  t.notOk(labelsMatch({ a: '1', b: '3' }, { a: '1', b: '2' }));
  t.notOk(labelsMatch({ c: '1' }, { a: '1' }));
});
