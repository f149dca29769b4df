import t from 'tap';
import { MeshState } from '../src/registry/state';
import { LeastConnections, RoundRobin, ServiceLoadBalancer } from '../src/mesh/load-balancer';
import { fixedSelfAddresses, loopGuard } from '../src/ztunnel/loop-guard';
import { routeOutbound } from '../src/ztunnel/outbound-route';
import { ambientNamespace, nodeRecord, plainNamespace, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';

/** The ztunnel of n1 (where the client runs): its node address and a second interface. */
const GUARD = loopGuard(fixedSelfAddresses(['192.0.2.1', '10.0.0.1']));

function mesh(): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.replaceAll({
    node: [nodeRecord('n1', '192.0.2.1'), nodeRecord('n2', '192.0.2.2')],
    namespace: [ambientNamespace('demo'), plainNamespace('legacy')],
    workload: [
      workloadRecord({ name: 'client', namespace: 'demo', node: 'n1', ip: '10.1.0.1' }),
      workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n2', ip: '10.2.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-2', namespace: 'demo', node: 'n2', ip: '10.2.0.2', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-3', namespace: 'demo', node: 'n2', ip: '10.2.0.3', sa: 'echo', labels: { app: 'echo' }, healthy: false }),
      workloadRecord({ name: 'old', namespace: 'legacy', node: 'n2', ip: '10.2.0.9', labels: { app: 'old' } }),
      workloadRecord({ name: 'legacy-client', namespace: 'legacy', node: 'n1', ip: '10.1.0.9' }),
      { ...workloadRecord({ name: 'optout', namespace: 'demo', node: 'n2', ip: '10.2.0.7' }), labels: { 'weft.io/dataplane-mode': 'none' } },
    ],
    service: [
      serviceRecord({ name: 'echo', namespace: 'demo', vip: '10.96.0.10', port: 80, targetPort: 8080, selector: { app: 'echo' } }),
      serviceRecord({ name: 'old', namespace: 'legacy', vip: '10.96.0.20', port: 80, targetPort: 8081, selector: { app: 'old' } }),
      serviceRecord({ name: 'empty', namespace: 'demo', vip: '10.96.0.30', port: 80, targetPort: 8080, selector: { app: 'nobody' } }),
      serviceRecord({ name: 'loopy', namespace: 'demo', vip: '10.96.0.40', port: 80, targetPort: 15008, selector: { app: 'echo' } }),
    ],
    policy: [], peerauth: [],
  }, 1);
  return s;
}

t.test('VIP → healthy endpoint and target port, tunnelled between mesh workloads', async (t) => {
  const s = mesh();
  const d = routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '10.96.0.10', port: 80 } }, new RoundRobin(), GUARD);
  t.equal(d.kind, 'hbone');
  if (d.kind !== 'hbone') return;
  t.equal(d.source.record.name, 'client');
  t.match(d.destination.record.name, /^echo-[12]$/);
  t.equal(d.identity, 'spiffe://cluster.local/ns/demo/sa/echo');
  t.same(d.target, { ip: d.destination.record.addresses[0], port: 8080 });
  t.equal(d.service?.name, 'echo');
});

t.test('round robin visits each healthy endpoint once per round, never the unhealthy one', async (t) => {
  const s = mesh();
  const lb = new RoundRobin();
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const d = routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '10.96.0.10', port: 80 } }, lb, GUARD);
    if (d.kind === 'hbone') seen.push(d.destination.record.name);
  }
  t.same(seen, ['echo-1', 'echo-2', 'echo-1', 'echo-2', 'echo-1', 'echo-2']);
});

t.test('least connections picks the emptiest endpoint; ties round robin', async (t) => {
  const s = mesh();
  const counts = new Map([['demo/echo-1', 5], ['demo/echo-2', 1]]);
  const lb = new LeastConnections((uid) => counts.get(uid) ?? 0);
  const svc = s.serviceByVip('10.96.0.10')!;
  const eps = s.endpoints(svc).filter((w) => w.record.status === 'Healthy');
  t.equal(lb.pick(svc, eps).record.name, 'echo-2');
  counts.set('demo/echo-1', 1);
  const picks = new Set([lb.pick(svc, eps).record.name, lb.pick(svc, eps).record.name]);
  t.same([...picks].sort(), ['echo-1', 'echo-2'], 'ties alternate');
  const byService = new ServiceLoadBalancer((uid) => counts.get(uid) ?? 0);
  counts.set('demo/echo-1', 9);
  t.equal(byService.pick({ ...svc, loadBalancing: 'LEAST_CONN' }, eps).record.name, 'echo-2', 'per-service LEAST_CONN');
});

t.test('pod IP → that workload, port unchanged', async (t) => {
  const d = routeOutbound(mesh(), { sourceIp: '10.1.0.1', dst: { ip: '10.2.0.2', port: 9090 } }, new RoundRobin(), GUARD);
  t.equal(d.kind, 'hbone');
  if (d.kind === 'hbone') {
    t.equal(d.destination.record.name, 'echo-2');
    t.same(d.target, { ip: '10.2.0.2', port: 9090 });
    t.equal(d.service, undefined);
  }
});

t.test('passthrough cases', async (t) => {
  const s = mesh();
  const rr = new RoundRobin();
  const cases: Array<[string, string, { ip: string; port: number }, { ip: string; port: number }, RegExp]> = [
    ['destination not in the mesh (pod IP)', '10.1.0.1', { ip: '10.2.0.9', port: 8081 }, { ip: '10.2.0.9', port: 8081 }, /not in the mesh/],
    ['destination not in the mesh (VIP resolved by the proxy)', '10.1.0.1', { ip: '10.96.0.20', port: 80 }, { ip: '10.2.0.9', port: 8081 }, /not in the mesh/],
    ['opted-out pod', '10.1.0.1', { ip: '10.2.0.7', port: 80 }, { ip: '10.2.0.7', port: 80 }, /not in the mesh/],
    ['unknown destination', '10.1.0.1', { ip: '203.0.113.5', port: 443 }, { ip: '203.0.113.5', port: 443 }, /not a mesh workload or service/],
    ['source not enrolled, mesh VIP', '10.1.0.9', { ip: '10.96.0.10', port: 80 }, { ip: '10.2.0.1', port: 8080 }, /source demo|source legacy\/legacy-client is not in the mesh/],
    ['unknown source', '10.9.9.9', { ip: '10.2.0.1', port: 8080 }, { ip: '10.2.0.1', port: 8080 }, /not a known workload/],
  ];
  for (const [name, src, dst, expected, reason] of cases) {
    const d = routeOutbound(s, { sourceIp: src, dst }, rr, GUARD);
    t.equal(d.kind, 'passthrough', name);
    if (d.kind === 'passthrough') {
      t.same({ ip: d.ip, port: d.port }, expected, `${name}: target`);
      t.match(d.reason, reason, `${name}: reason`);
    }
  }
});

t.test('refusals', async (t) => {
  const s = mesh();
  const rr = new RoundRobin();
  const cases: Array<[string, { ip: string; port: number }, string, RegExp]> = [
    ['VIP without healthy endpoints', { ip: '10.96.0.30', port: 80 }, 'NO_HEALTHY_UPSTREAM', /demo\/empty has no healthy endpoint/],
    ['VIP port not exposed', { ip: '10.96.0.10', port: 81 }, 'NO_ROUTE', /has no port 81 \(ports: 80\)/],
    ['loop: proxy port of a workload', { ip: '10.2.0.1', port: 15008 }, 'LOOP', /loop.*15008/],
    ['loop: 15001', { ip: '10.2.0.1', port: 15001 }, 'LOOP', /loop/],
    ['loop: 15006', { ip: '10.2.0.9', port: 15006 }, 'LOOP', /loop/],
    ['loop: service targets a proxy port', { ip: '10.96.0.40', port: 80 }, 'LOOP', /targets proxy port 15008/],
  ];
  for (const [name, dst, flag, reason] of cases) {
    const d = routeOutbound(s, { sourceIp: '10.1.0.1', dst }, rr, GUARD);
    t.equal(d.kind, 'refuse', name);
    if (d.kind === 'refuse') {
      t.equal(d.flag, flag, `${name}: flag`);
      t.match(d.reason, reason, `${name}: reason`);
    }
  }
});

t.test('loop guard: proxy ports anywhere, this node\'s addresses, loopback and link-local are never dialled', async (t) => {
  const s = mesh();
  // Bad registry data: an endpoint of a service at the node's own address.
  s.applyChanges([
    { op: 'put', kind: 'workload', key: 'demo/hostish', record: workloadRecord({ name: 'hostish', namespace: 'demo', node: 'n1', ip: '192.0.2.1', labels: { app: 'hostish' } }) },
    { op: 'put', kind: 'service', key: 'demo/hostish', record: serviceRecord({ name: 'hostish', namespace: 'demo', vip: '10.96.0.50', port: 80, targetPort: 8080, selector: { app: 'hostish' } }) },
  ], 2);
  const rr = new RoundRobin();
  const cases: Array<[string, { ip: string; port: number }, string, RegExp]> = [
    // The lab reproduction of issue 9: a pod dialled <node IP>:15001 and the ztunnel dialled itself ~10,000 times.
    ['node IP :15001 (the self-dial loop)', { ip: '192.0.2.1', port: 15001 }, 'LOOP', /192\.0\.2\.1:15001 is proxy port 15001/],
    ['node IP :15006', { ip: '192.0.2.1', port: 15006 }, 'LOOP', /proxy port/],
    ['node IP :15008', { ip: '192.0.2.1', port: 15008 }, 'LOOP', /proxy port/],
    ['node IP :15000 (admin)', { ip: '192.0.2.1', port: 15000 }, 'LOOP', /proxy port/],
    ['node IP :15020 (metrics)', { ip: '192.0.2.1', port: 15020 }, 'LOOP', /proxy port/],
    ['node IP :15021 (readiness)', { ip: '192.0.2.1', port: 15021 }, 'LOOP', /proxy port/],
    ['another node\'s :15008 (a ztunnel, not a workload)', { ip: '192.0.2.2', port: 15008 }, 'LOOP', /proxy port/],
    ['an unknown address :15008', { ip: '203.0.113.5', port: 15008 }, 'LOOP', /proxy port/],
    ['a VIP on a proxy port', { ip: '10.96.0.10', port: 15001 }, 'LOOP', /proxy port/],
    ['node IP, any other port', { ip: '192.0.2.1', port: 22 }, 'LOOP', /address of this node/],
    ['another interface of the node', { ip: '10.0.0.1', port: 443 }, 'LOOP', /address of this node/],
    ['loopback', { ip: '127.0.0.53', port: 53 }, 'LOOP', /address of this node/],
    ['IPv4-mapped loopback', { ip: '::ffff:127.0.0.1', port: 80 }, 'LOOP', /address of this node/],
    ['IPv6 loopback', { ip: '::1', port: 80 }, 'LOOP', /address of this node/],
    ['unspecified', { ip: '0.0.0.0', port: 80 }, 'LOOP', /address of this node/],
    ['a service endpoint at the node\'s address', { ip: '10.96.0.50', port: 80 }, 'LOOP', /192\.0\.2\.1:8080 is an address of this node/],
    ['cloud metadata', { ip: '169.254.169.254', port: 80 }, 'NO_ROUTE', /link-local/],
    ['IPv6 link-local', { ip: 'fe80::1', port: 80 }, 'NO_ROUTE', /link-local/],
  ];
  for (const source of ['10.1.0.1', '10.1.0.9', '10.9.9.9']) {
    for (const [name, dst, flag, reason] of cases) {
      const d = routeOutbound(s, { sourceIp: source, dst }, rr, GUARD);
      t.equal(d.kind, 'refuse', `${name} from ${source}`);
      if (d.kind === 'refuse') {
        t.equal(d.flag, flag, `${name}: flag`);
        t.match(d.reason, reason, `${name}: reason`);
      }
    }
  }
  // The guard is about this node: other nodes' addresses and ordinary ports pass.
  t.equal(routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '192.0.2.2', port: 22 } }, rr, GUARD).kind, 'passthrough');
  t.equal(routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '203.0.113.5', port: 443 } }, rr, GUARD).kind, 'passthrough');
});

t.test('health changes are seen on the next connection', async (t) => {
  const s = mesh();
  const rr = new RoundRobin();
  for (const name of ['echo-1', 'echo-2']) {
    const w = s.workload(`demo/${name}`)!.record;
    s.applyChanges([{ op: 'put', kind: 'workload', key: w.uid, record: { ...w, status: 'Unhealthy' } }], 2);
  }
  t.equal(routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '10.96.0.10', port: 80 } }, rr, GUARD).kind, 'refuse');
  const w3 = s.workload('demo/echo-3')!.record;
  s.applyChanges([{ op: 'put', kind: 'workload', key: w3.uid, record: { ...w3, status: 'Healthy' } }], 3);
  const d = routeOutbound(s, { sourceIp: '10.1.0.1', dst: { ip: '10.96.0.10', port: 80 } }, rr, GUARD);
  t.equal(d.kind === 'hbone' && d.destination.record.name, 'echo-3');
});
