// The destination side of a waypoint hop: when a waypoint's `forwarded` client address
// is believed (a waypoint bound to the destination), and when it is not.
import t from 'tap';
import { clientAddress } from '../src/hbone/request';
import { waypointPod, waypointRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import type { Change, WaypointRecord } from '../src/registry/types';
import { boundWaypointPeer } from '../src/ztunnel/waypoint-peer';
import { ambientNamespace, nodeRecord, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';

const WP_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';
const PEER = { ip: '10.2.0.50', port: 40000 };

function mesh(opts: { waypoint?: Partial<WaypointRecord>; nsBinding?: string; serviceBinding?: string } = {}): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const wp = waypointRecord({ namespace: 'demo', name: 'waypoint', ...opts.waypoint });
  const demo = ambientNamespace('demo');
  if (opts.nsBinding !== undefined) demo.labels['weft.io/use-waypoint'] = opts.nsBinding;
  const echo = serviceRecord({ name: 'echo', namespace: 'demo', vip: '10.96.0.10', port: 80, targetPort: 8080, selector: { app: 'echo' } });
  if (opts.serviceBinding !== undefined) echo.waypoint = opts.serviceBinding;
  s.replaceAll({
    node: [nodeRecord('n1', '192.0.2.1'), nodeRecord('n2', '192.0.2.2')],
    namespace: [demo, ambientNamespace('other')],
    workload: [
      workloadRecord({ name: 'client', namespace: 'demo', node: 'n1', ip: '10.1.0.1' }),
      workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n2', ip: '10.2.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'db', namespace: 'demo', node: 'n2', ip: '10.2.0.9', sa: 'db', labels: { app: 'db' } }),
      waypointPod(wp, { uid: 'demo/wp-1', name: 'wp-1', node: 'n2', addresses: [PEER.ip] }),
    ],
    service: [echo, serviceRecord({ name: 'db', namespace: 'demo', vip: '10.96.0.20', port: 5432, targetPort: 5432, selector: { app: 'db' } })],
    policy: [], peerauth: [], waypoint: [wp], httproute: [], grpcroute: [],
  }, 1);
  return s;
}

const echo1 = (s: MeshState) => s.workloadByAddress('10.2.0.1')!;

t.test('a waypoint bound to a service selecting the destination is believed; the principal stays the waypoint', async (t) => {
  for (const [name, s] of [['namespace label', mesh({ nsBinding: 'waypoint' })], ['service label', mesh({ serviceBinding: 'waypoint' })]] as const) {
    t.equal(boundWaypointPeer(s, WP_ID, echo1(s)), 'demo/waypoint', name);
    const src = clientAddress(s, 'for="10.1.0.1:5555"', WP_ID, PEER, () => boundWaypointPeer(s, WP_ID, echo1(s)) !== undefined);
    t.same({ ip: src.ip, port: src.port, ignored: src.ignored, who: src.workload?.record.name }, { ip: '10.1.0.1', port: 5555, ignored: undefined, who: 'client' }, name);
  }
});

t.test('not believed otherwise: the waypoint\'s own address is the source', async (t) => {
  const cases: Array<[string, MeshState, string, string]> = [
    ['no binding at all', mesh(), WP_ID, '10.2.0.1'],
    ['bound to none', mesh({ nsBinding: 'waypoint', serviceBinding: 'none' }), WP_ID, '10.2.0.1'],
    ['bound to another waypoint', mesh({ nsBinding: 'elsewhere' }), WP_ID, '10.2.0.1'],
    ['a destination no bound service selects (db)', mesh({ serviceBinding: 'waypoint' }), WP_ID, '10.2.0.9'],
    ['the service\'s waypoint serves only workloads (and the pod is not bound)', mesh({ serviceBinding: 'waypoint', waypoint: { for: 'workload' } }), WP_ID, '10.2.0.1'],
    ['the waypoint serves nothing', mesh({ nsBinding: 'waypoint', waypoint: { for: 'none' } }), WP_ID, '10.2.0.1'],
    ['a mesh peer that is no waypoint', mesh({ nsBinding: 'waypoint' }), 'spiffe://cluster.local/ns/demo/sa/db', '10.2.0.1'],
    ['the same service account in another namespace', mesh({ nsBinding: 'waypoint' }), 'spiffe://cluster.local/ns/other/sa/waypoint', '10.2.0.1'],
    ['another trust domain', mesh({ nsBinding: 'waypoint' }), 'spiffe://evil.example/ns/demo/sa/waypoint', '10.2.0.1'],
  ];
  for (const [name, s, peerId, dst] of cases) {
    const destination = s.workloadByAddress(dst)!;
    t.equal(boundWaypointPeer(s, peerId, destination), undefined, name);
    const src = clientAddress(s, 'for="10.1.0.1:5555"', peerId, PEER, () => boundWaypointPeer(s, peerId, destination) !== undefined);
    t.same({ ip: src.ip, ignored: src.ignored }, { ip: PEER.ip, ignored: 'other_identity' }, `${name}: the peer address`);
  }
  // Even a bound waypoint may only name registry workloads.
  const s = mesh({ nsBinding: 'waypoint' });
  const src = clientAddress(s, 'for="203.0.113.9:1"', WP_ID, PEER, () => true);
  t.same({ ip: src.ip, ignored: src.ignored }, { ip: PEER.ip, ignored: 'unknown_workload' });
});

t.test('a workload waypoint (for workload or all) bound to the destination pod is believed', async (t) => {
  const s = mesh({ nsBinding: 'waypoint', waypoint: { for: 'workload' } });
  t.equal(echo1(s).waypoint, 'waypoint');
  // The namespace label binds the pods too; a `workload` waypoint speaks for their traffic.
  t.equal(boundWaypointPeer(s, WP_ID, echo1(s)), 'demo/waypoint');
  const all = mesh({ serviceBinding: 'waypoint', waypoint: { for: 'all' } });
  t.equal(boundWaypointPeer(all, WP_ID, echo1(all)), 'demo/waypoint');
});

t.test('binding changes apply to the next stream', async (t) => {
  const s = mesh({ nsBinding: 'waypoint' });
  t.equal(boundWaypointPeer(s, WP_ID, echo1(s)), 'demo/waypoint');
  const change: Change = { op: 'put', kind: 'namespace', key: 'demo', record: { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient' } } };
  s.applyChanges([change], 2);
  t.equal(boundWaypointPeer(s, WP_ID, echo1(s)), undefined);
});
