import t from 'tap';
import { waypointPod, waypointRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import type { Change, WaypointRecord } from '../src/registry/types';
import { RoundRobin, ServiceLoadBalancer, type EndpointPicker } from '../src/mesh/load-balancer';
import { fixedSelfAddresses, loopGuard } from '../src/ztunnel/loop-guard';
import { routeOutbound, type OutboundDecision } from '../src/ztunnel/outbound-route';
import { ambientNamespace, nodeRecord, plainNamespace, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';

/** The ztunnel of n1 (where the client runs). */
const GUARD = loopGuard(fixedSelfAddresses(['192.0.2.1']));
const ECHO_VIP = { ip: '10.96.0.10', port: 80 };
const WP_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';

function wp(extra: Partial<WaypointRecord> = {}): WaypointRecord {
  return waypointRecord({ namespace: 'demo', name: 'waypoint', ...extra });
}

/**
 * demo: enrolled, client on n1, echo-1/-2 on n2; service echo bound to waypoint
 * `waypoint` by the namespace label, whose pods wp-a/wp-b run on n2/n3. Service
 * `unbound` opts out with its own label; legacy is not enrolled.
 */
function mesh(opts: { waypoints?: WaypointRecord[]; nsBinding?: string } = {}): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const demo = ambientNamespace('demo');
  if (opts.nsBinding !== '') demo.labels['weft.io/use-waypoint'] = opts.nsBinding ?? 'waypoint';
  const w = wp();
  s.replaceAll({
    node: [nodeRecord('n1', '192.0.2.1'), nodeRecord('n2', '192.0.2.2'), nodeRecord('n3', '192.0.2.3')],
    namespace: [demo, plainNamespace('legacy')],
    workload: [
      workloadRecord({ name: 'client', namespace: 'demo', node: 'n1', ip: '10.1.0.1' }),
      workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n2', ip: '10.2.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-2', namespace: 'demo', node: 'n2', ip: '10.2.0.2', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'legacy-client', namespace: 'legacy', node: 'n1', ip: '10.1.0.9' }),
      waypointPod(w, { uid: 'demo/wp-a', name: 'wp-a', node: 'n2', addresses: ['10.2.0.50'] }),
      waypointPod(w, { uid: 'demo/wp-b', name: 'wp-b', node: 'n3', addresses: ['10.3.0.50'] }),
    ],
    service: [
      serviceRecord({ name: 'echo', namespace: 'demo', vip: '10.96.0.10', port: 80, targetPort: 8080, selector: { app: 'echo' } }),
      { ...serviceRecord({ name: 'unbound', namespace: 'demo', vip: '10.96.0.11', port: 80, targetPort: 8080, selector: { app: 'echo' } }), waypoint: 'none' },
      { ...serviceRecord({ name: 'own', namespace: 'demo', vip: '10.96.0.12', port: 80, targetPort: 8080, selector: { app: 'echo' } }), waypoint: 'other' },
      serviceRecord({ name: 'loopy', namespace: 'demo', vip: '10.96.0.40', port: 80, targetPort: 15008, selector: { app: 'echo' } }),
    ],
    policy: [], peerauth: [],
    waypoint: opts.waypoints ?? [w],
    httproute: [], grpcroute: [],
  }, 1);
  return s;
}

function route(s: MeshState, dst = ECHO_VIP, sourceIp = '10.1.0.1', lb: EndpointPicker = new RoundRobin()): OutboundDecision {
  return routeOutbound(s, { sourceIp, dst }, lb, GUARD);
}

function put(s: MeshState, changes: Change[]): void {
  s.applyChanges(changes, s.revision + 1);
}

t.test('a VIP bound to a waypoint → HBONE to a ready waypoint pod, :authority the original VIP:port', async (t) => {
  const d = route(mesh());
  t.equal(d.kind, 'waypoint');
  if (d.kind !== 'waypoint') return;
  t.equal(d.source.record.name, 'client');
  t.equal(d.service?.name, 'echo');
  t.equal(`${d.waypoint.namespace}/${d.waypoint.name}`, 'demo/waypoint');
  t.equal(d.binding, 'namespace');
  t.equal(d.identity, WP_ID, 'the waypoint\'s identity is expected, not the endpoint\'s');
  t.same(d.target, ECHO_VIP, 'VIP and service port, not translated to the target port');
  t.match(d.pod.record.name, /^wp-[ab]$/);
  t.equal(d.readyPods, 2);
});

t.test('round robin over the waypoint\'s ready pods, per waypoint, also under LEAST_CONN services', async (t) => {
  const s = mesh();
  for (const lb of [new RoundRobin(), new ServiceLoadBalancer(() => 0)]) {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const d = route(s, ECHO_VIP, '10.1.0.1', lb);
      seen.push(d.kind === 'waypoint' ? d.pod.record.name : d.kind);
    }
    t.same(seen, ['wp-a', 'wp-b', 'wp-a', 'wp-b']);
  }
});

t.test('the service\'s own label wins over the namespace\'s; `none` opts out', async (t) => {
  const other = waypointRecord({ namespace: 'demo', name: 'other', serviceAccount: 'other-sa' });
  const s = mesh({ waypoints: [wp(), other] });
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/other-1', record: waypointPod(other, { uid: 'demo/other-1', name: 'other-1', node: 'n3', addresses: ['10.3.0.60'] }) }]);
  const own = route(s, { ip: '10.96.0.12', port: 80 });
  t.equal(own.kind === 'waypoint' && `${own.waypoint.name} ${own.binding} ${own.identity} ${own.pod.record.name}`,
    'other service spiffe://cluster.local/ns/demo/sa/other-sa other-1');
  const none = route(s, { ip: '10.96.0.11', port: 80 });
  t.equal(none.kind, 'hbone', 'opted out: straight to an endpoint');
  t.equal(none.kind === 'hbone' && none.target.port, 8080);
  const unboundNs = route(mesh({ nsBinding: '' }));
  t.equal(unboundNs.kind, 'hbone', 'no binding at all: straight to an endpoint');
});

t.test('fail closed: bound, but the waypoint is missing or has no ready pod → NO_WAYPOINT, never the endpoint', async (t) => {
  const missing = route(mesh({ waypoints: [] }));
  t.equal(missing.kind, 'refuse');
  if (missing.kind === 'refuse') {
    t.equal(missing.flag, 'NO_WAYPOINT');
    t.equal(missing.waypoint, 'demo/waypoint');
    t.equal(missing.service?.name, 'echo');
    t.match(missing.reason, /service demo\/echo is bound to waypoint demo\/waypoint \(label weft\.io\/use-waypoint of namespace demo\), which does not exist; refused rather than bypassing it\. Create it \(weft waypoint add demo\/waypoint\) or set weft\.io\/use-waypoint=none on the namespace/);
  }
  const ownMissing = route(mesh(), { ip: '10.96.0.12', port: 80 });
  t.match(ownMissing.kind === 'refuse' && ownMissing.reason, /\(its weft\.io\/use-waypoint label\).*on the service/);

  const s = mesh();
  const pod = (n: string) => s.workload(`demo/${n}`)!.record;
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/wp-a', record: { ...pod('wp-a'), status: 'Unhealthy' } }]);
  const one = route(s);
  t.equal(one.kind === 'waypoint' && one.pod.record.name, 'wp-b', 'an unhealthy pod is skipped');
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/wp-b', record: { ...pod('wp-b'), addresses: [] } }]);
  const none = route(s);
  t.equal(none.kind, 'refuse');
  if (none.kind === 'refuse') {
    t.equal(none.flag, 'NO_WAYPOINT');
    t.match(none.reason, /which has no ready pod \(2 pods, 1 not Healthy, 1 without an address\); refused rather than bypassing it\. Check weft waypoints -n demo/);
  }
  put(s, [{ op: 'delete', kind: 'workload', key: 'demo/wp-a' }, { op: 'delete', kind: 'workload', key: 'demo/wp-b' }]);
  t.match(route(s).kind === 'refuse' && (route(s) as { reason: string }).reason, /no pod at all: is it deployed\?/);
  // Recovers on the next connection once a pod is ready again.
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/wp-c', record: waypointPod(wp(), { uid: 'demo/wp-c', name: 'wp-c', node: 'n3', addresses: ['10.3.0.51'] }) }]);
  t.equal(route(s).kind, 'waypoint');
});

t.test('a pod labelled as the waypoint but running as another service account never gets its traffic', async (t) => {
  const s = mesh();
  const impostor = waypointPod({ ...wp(), serviceAccount: 'default' }, { uid: 'demo/imp', name: 'imp', node: 'n1', addresses: ['10.1.0.66'] });
  put(s, [{ op: 'delete', kind: 'workload', key: 'demo/wp-a' }, { op: 'delete', kind: 'workload', key: 'demo/wp-b' },
    { op: 'put', kind: 'workload', key: 'demo/imp', record: impostor }]);
  const d = route(s);
  t.equal(d.kind === 'refuse' && d.flag, 'NO_WAYPOINT');
  t.match(d.kind === 'refuse' && d.reason, /1 pod, 1 not running as spiffe:\/\/cluster\.local\/ns\/demo\/sa\/waypoint/);
});

t.test('a waypoint that is for workloads or nothing is no service waypoint: direct, with a note', async (t) => {
  const d = route(mesh({ waypoints: [wp({ for: 'none' })] }));
  t.equal(d.kind, 'hbone');
  t.match(d.kind === 'hbone' && d.waypointNote, /waypoint is for none traffic, not services/);
  t.match(d.kind === 'hbone' && d.waypointNote, /its endpoint 10\.2\.0\.[12]:8080 was chosen: pod demo\/echo-[12] is bound to waypoint demo\/waypoint .*which is for none traffic, not workloads/);
  t.equal(route(mesh({ waypoints: [wp({ for: 'all' })] })).kind, 'waypoint', 'all includes services');
  // For workloads: not the Service's waypoint, but the chosen endpoint's (below).
  const w = route(mesh({ waypoints: [wp({ for: 'workload' })] }));
  t.equal(w.kind === 'waypoint' && w.workload?.record.namespace, 'demo');
});

t.test("a Service without a waypoint whose chosen endpoint has a workload waypoint → that waypoint, :authority the endpoint's IP:target port (Istio)", async (t) => {
  // The Service opts out (none); echo-1 is bound to `mine`, for workloads; echo-2 to nothing.
  const mine = wp({ name: 'mine', for: 'workload' });
  const s = mesh({ waypoints: [wp(), mine], nsBinding: '' });
  const echo1 = s.workload('demo/echo-1')!.record;
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/mine-0', record: waypointPod(mine, { uid: 'demo/mine-0', name: 'mine-0', node: 'n3', addresses: ['10.3.0.60'] }) },
    { op: 'put', kind: 'workload', key: 'demo/echo-1', record: { ...echo1, labels: { ...echo1.labels, 'weft.io/use-waypoint': 'mine' } } }]);
  const lb = new RoundRobin();
  const seen = new Map<string, OutboundDecision>();
  for (let i = 0; i < 4; i++) {
    const d = route(s, { ip: '10.96.0.11', port: 80 }, '10.1.0.1', lb);
    seen.set(d.kind === 'waypoint' ? `waypoint ${d.workload?.record.name}` : d.kind === 'hbone' ? `hbone ${d.destination.record.name}` : d.kind, d);
  }
  t.same([...seen.keys()].sort(), ['hbone echo-2', 'waypoint echo-1'], 'echo-1 through its waypoint, echo-2 direct');
  const d = seen.get('waypoint echo-1')!;
  if (d.kind !== 'waypoint') return;
  t.equal(d.service?.name, 'unbound', 'the Service dialled is kept (metrics, explain)');
  t.equal(`${d.waypoint.name} ${d.binding} ${d.pod.record.name}`, 'mine workload mine-0');
  t.equal(d.identity, `spiffe://cluster.local/ns/demo/sa/${mine.serviceAccount}`, "the waypoint's identity is expected, not the endpoint's");
  t.same(d.target, { ip: '10.2.0.1', port: 8080 }, "the endpoint's address and target port, not the VIP");
  // The Service's own waypoint comes first: a bound Service never reaches the endpoint's.
  const bound = route(s, { ip: '10.96.0.12', port: 80 });
  t.equal(bound.kind === 'refuse' && `${bound.flag} ${bound.waypoint}`, 'NO_WAYPOINT demo/other', "the Service's own (missing) waypoint decides");
});

t.test("fail closed: the chosen endpoint's workload waypoint has no ready pod (or is missing) → NO_WAYPOINT, never the endpoint", async (t) => {
  const s = mesh({ waypoints: [wp({ for: 'workload' })] });
  for (const uid of ['demo/wp-a', 'demo/wp-b']) put(s, [{ op: 'put', kind: 'workload', key: uid, record: { ...s.workload(uid)!.record, status: 'Unhealthy' } }]);
  // `unbound` opts the Service out of the namespace's waypoint; its endpoints are still bound to it.
  const d = route(s, { ip: '10.96.0.11', port: 80 });
  t.equal(d.kind === 'refuse' && `${d.flag} ${d.waypoint} ${d.service?.name}`, 'NO_WAYPOINT demo/waypoint unbound');
  t.match(d.kind === 'refuse' && d.reason,
    /service demo\/unbound has no waypoint of its own; its endpoint 10\.2\.0\.[12]:8080 was chosen and pod demo\/echo-[12] is bound to waypoint demo\/waypoint .*which has no ready pod \(2 pods, 2 not Healthy\); refused rather than bypassing it/);
  const missing = route(mesh({ waypoints: [] }), { ip: '10.96.0.11', port: 80 });
  t.equal(missing.kind === 'refuse' && missing.flag, 'NO_WAYPOINT');
  t.match(missing.kind === 'refuse' && missing.reason, /its endpoint .* was chosen and pod demo\/echo-[12] is bound to waypoint demo\/waypoint .*which does not exist/);
  // A source outside the mesh is not captured: it reaches the endpoint, with a note.
  const legacy = route(s, { ip: '10.96.0.11', port: 80 }, '10.1.0.9');
  t.equal(legacy.kind, 'passthrough');
});

t.test('traffic addressed to a pod IP skips the service waypoint (MeshFrontend), with a note', async (t) => {
  const d = route(mesh(), { ip: '10.2.0.1', port: 8080 });
  t.equal(d.kind, 'hbone');
  if (d.kind !== 'hbone') return;
  t.equal(d.destination.record.name, 'echo-1');
  t.equal(d.identity, 'spiffe://cluster.local/ns/demo/sa/echo');
  t.match(d.waypointNote, /10\.2\.0\.1:8080 is a pod address: the waypoint demo\/waypoint .*not to a pod \(Gateway API MeshFrontend\)/);
});

t.test('a waypoint never routes to itself; a non-mesh source is not captured', async (t) => {
  const s = mesh();
  // A waypoint pod calling a service it serves (waypoint pods are not enrolled; even if one were).
  const self = route(s, ECHO_VIP, '10.2.0.50');
  t.equal(self.kind, 'passthrough');
  t.match(self.kind === 'passthrough' && self.waypointNote, /the source is a pod of waypoint demo\/waypoint: a waypoint is never routed to itself/);
  const a = s.workload('demo/wp-a')!.record;
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/wp-a', record: { ...a, labels: { ...a.labels, 'weft.io/dataplane-mode': 'ambient' } } }]);
  const enrolledSelf = route(s, ECHO_VIP, '10.2.0.50');
  t.equal(enrolledSelf.kind, 'hbone', 'an enrolled waypoint pod goes straight to the endpoint');
  t.match(enrolledSelf.kind === 'hbone' && enrolledSelf.destination.record.name, /^echo-/);
  const legacy = route(s, ECHO_VIP, '10.1.0.9');
  t.equal(legacy.kind, 'passthrough');
  t.match(legacy.kind === 'passthrough' && legacy.waypointNote, /the source is not in the mesh/);
});

t.test('port and loop checks come before the waypoint: the waypoint would refuse the same, later', async (t) => {
  const s = mesh();
  const noPort = route(s, { ip: '10.96.0.10', port: 81 });
  t.equal(noPort.kind === 'refuse' && `${noPort.flag} ${noPort.waypoint}`, 'NO_ROUTE demo/waypoint');
  t.equal(route(s, { ip: '10.96.0.40', port: 80 }).kind === 'refuse' && (route(s, { ip: '10.96.0.40', port: 80 }) as { flag: string }).flag, 'LOOP');
  t.equal(route(s, { ip: '10.96.0.10', port: 15001 }).kind === 'refuse' && (route(s, { ip: '10.96.0.10', port: 15001 }) as { flag: string }).flag, 'LOOP');
  // Bad registry data: the only ready waypoint pod at this node's own address.
  put(s, [{ op: 'delete', kind: 'workload', key: 'demo/wp-b' },
    { op: 'put', kind: 'workload', key: 'demo/wp-a', record: { ...s.workload('demo/wp-a')!.record, addresses: ['192.0.2.1'] } }]);
  const self = route(s);
  t.equal(self.kind === 'refuse' && self.flag, 'LOOP');
  t.match(self.kind === 'refuse' && self.reason, /waypoint pod demo\/wp-a: refused to prevent a loop: 192\.0\.2\.1:15008 is an address of this node/);
});

t.test('binding changes are seen on the next connection', async (t) => {
  const s = mesh();
  t.equal(route(s).kind, 'waypoint');
  put(s, [{ op: 'put', kind: 'namespace', key: 'demo', record: { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'none' } } }]);
  t.equal(route(s).kind, 'hbone');
  put(s, [{ op: 'put', kind: 'namespace', key: 'demo', record: { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' } } },
    { op: 'delete', kind: 'waypoint', key: 'demo/waypoint' }]);
  t.equal(route(s).kind, 'refuse');
});

t.test('a pod bound to a waypoint for workloads or all → HBONE to a waypoint pod, :authority the pod IP:port', async (t) => {
  for (const f of ['workload', 'all'] as const) {
    const d = route(mesh({ waypoints: [wp({ for: f })] }), { ip: '10.2.0.1', port: 8080 });
    t.equal(d.kind, 'waypoint', f);
    if (d.kind !== 'waypoint') continue;
    t.equal(d.service, undefined, `${f}: addressed to a pod, no service`);
    t.equal(d.workload?.record.name, 'echo-1', f);
    t.equal(d.binding, 'namespace', f);
    t.equal(d.identity, WP_ID, `${f}: the waypoint's identity is expected, not the pod's`);
    t.same(d.target, { ip: '10.2.0.1', port: 8080 }, `${f}: the pod IP and port as dialled`);
    t.match(d.pod.record.name, /^wp-[ab]$/, f);
  }
});

t.test('the pod\'s own label wins over the namespace\'s; `none` opts the pod out', async (t) => {
  const mine = wp({ name: 'mine', for: 'workload' });
  const s = mesh({ waypoints: [wp({ for: 'workload' }), mine], nsBinding: '' });
  const echo1 = s.workload('demo/echo-1')!.record;
  t.equal(route(s, { ip: '10.2.0.1', port: 8080 }).kind, 'hbone', 'no binding anywhere: direct');
  put(s, [{ op: 'put', kind: 'workload', key: 'demo/mine-0', record: waypointPod(mine, { uid: 'demo/mine-0', name: 'mine-0', node: 'n3', addresses: ['10.3.0.60'] }) },
    { op: 'put', kind: 'workload', key: 'demo/echo-1', record: { ...echo1, labels: { ...echo1.labels, 'weft.io/use-waypoint': 'mine' } } }]);
  const own = route(s, { ip: '10.2.0.1', port: 8080 });
  t.equal(own.kind === 'waypoint' && `${own.binding} ${own.waypoint.name} ${own.pod.record.name}`, 'workload mine mine-0');
  t.equal(route(s, { ip: '10.2.0.2', port: 8080 }).kind, 'hbone', 'echo-2 has no label');
  put(s, [{ op: 'put', kind: 'namespace', key: 'demo', record: { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' } } },
    { op: 'put', kind: 'workload', key: 'demo/echo-1', record: { ...echo1, labels: { ...echo1.labels, 'weft.io/use-waypoint': 'none' } } }]);
  const out = route(s, { ip: '10.2.0.1', port: 8080 });
  t.equal(out.kind, 'hbone', '`none` on the pod overrides the namespace');
  const ns = route(s, { ip: '10.2.0.2', port: 8080 });
  t.equal(ns.kind === 'waypoint' && `${ns.binding} ${ns.waypoint.name}`, 'namespace waypoint');
});

t.test('fail closed for pods too: bound, but the waypoint is missing or has no ready pod → NO_WAYPOINT, never the pod', async (t) => {
  const missing = route(mesh({ waypoints: [] }), { ip: '10.2.0.1', port: 8080 });
  t.equal(missing.kind === 'refuse' && `${missing.flag} ${missing.waypoint}`, 'NO_WAYPOINT demo/waypoint');
  t.match(missing.kind === 'refuse' && missing.reason,
    /10\.2\.0\.1:8080 is a pod address and pod demo\/echo-1 is bound to waypoint demo\/waypoint \(label weft\.io\/use-waypoint of namespace demo\), which does not exist; refused rather than bypassing it\. .*=none on the namespace/);
  const s = mesh({ waypoints: [wp({ for: 'workload' })] });
  for (const uid of ['demo/wp-a', 'demo/wp-b']) put(s, [{ op: 'put', kind: 'workload', key: uid, record: { ...s.workload(uid)!.record, status: 'Unhealthy' } }]);
  const none = route(s, { ip: '10.2.0.1', port: 8080 });
  t.equal(none.kind === 'refuse' && none.flag, 'NO_WAYPOINT');
  t.match(none.kind === 'refuse' && none.reason, /which has no ready pod \(2 pods, 2 not Healthy\)/);
});

t.test('pod traffic: a waypoint never routes to itself; a non-mesh source is not captured', async (t) => {
  const s = mesh({ waypoints: [wp({ for: 'workload' })] });
  const self = route(s, { ip: '10.2.0.1', port: 8080 }, '10.2.0.50');
  t.equal(self.kind, 'passthrough');
  t.match(self.kind === 'passthrough' && self.waypointNote, /the source is a pod of waypoint demo\/waypoint: a waypoint is never routed to itself/);
  const legacy = route(s, { ip: '10.2.0.1', port: 8080 }, '10.1.0.9');
  t.equal(legacy.kind, 'passthrough');
  t.match(legacy.kind === 'passthrough' && legacy.waypointNote, /pod demo\/echo-1 is bound to waypoint demo\/waypoint, but the source is not in the mesh/);
});
