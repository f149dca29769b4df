import t from 'tap';
import { MeshState } from '../src/registry/state';
import { RoundRobin } from '../src/mesh/load-balancer';
import { fixedSelfAddresses, loopGuard } from '../src/ztunnel/loop-guard';
import { capturedServicePorts, resolveVip } from '../src/ztunnel/vip-resolve';
import { ambientNamespace, nodeRecord, plainNamespace, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';

/*
 * n1 hosts echo-1 (mesh), echo-3 (mesh, unhealthy), mixed-out (opted out) and web (legacy);
 * n2 hosts echo-2 (mesh) and mixed-in (mesh).
 */
function mesh(): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.replaceAll({
    node: [nodeRecord('n1', '192.0.2.1'), nodeRecord('n2', '192.0.2.2')],
    namespace: [ambientNamespace('demo'), plainNamespace('legacy')],
    workload: [
      workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n1', ip: '10.1.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-2', namespace: 'demo', node: 'n2', ip: '10.2.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-3', namespace: 'demo', node: 'n1', ip: '10.1.0.3', sa: 'echo', labels: { app: 'echo' }, healthy: false }),
      { ...workloadRecord({ name: 'mixed-out', namespace: 'demo', node: 'n1', ip: '10.1.0.7' }), labels: { app: 'mixed', 'weft.io/dataplane-mode': 'none' } },
      workloadRecord({ name: 'mixed-in', namespace: 'demo', node: 'n2', ip: '10.2.0.7', labels: { app: 'mixed' } }),
      workloadRecord({ name: 'web', namespace: 'legacy', node: 'n1', ip: '10.1.0.9', labels: { app: 'web' } }),
      workloadRecord({ name: 'sick', namespace: 'demo', node: 'n1', ip: '10.1.0.11', labels: { app: 'sick' }, healthy: false }),
    ],
    service: [
      serviceRecord({ name: 'echo', namespace: 'demo', vip: '10.96.0.10', port: 80, targetPort: 8080, selector: { app: 'echo' } }),
      serviceRecord({ name: 'mixed', namespace: 'demo', vip: '10.96.0.11', port: 80, targetPort: 8081, selector: { app: 'mixed' } }),
      serviceRecord({ name: 'web', namespace: 'legacy', vip: '10.96.0.20', port: 80, targetPort: 8080, selector: { app: 'web' } }),
      serviceRecord({ name: 'sick', namespace: 'demo', vip: '10.96.0.30', port: 80, targetPort: 8080, selector: { app: 'sick' } }),
      serviceRecord({ name: 'loopy', namespace: 'demo', vip: '10.96.0.40', port: 80, targetPort: 15006, selector: { app: 'echo' } }),
    ],
    policy: [], peerauth: [],
  }, 1);
  return s;
}

const ECHO = { ip: '10.96.0.10', port: 80 };
/** n1's ztunnel. */
const GUARD = loopGuard(fixedSelfAddresses(['192.0.2.1']));

t.test('not a VIP: the pod-IP path applies', async (t) => {
  t.same(resolveVip(mesh(), { ip: '10.1.0.1', port: 8080 }, 'n1', new RoundRobin(), GUARD), { kind: 'not-a-service' });
});

t.test('a VIP spreads evenly over healthy endpoints; the local mesh one is handled here, the remote one forwarded', async (t) => {
  const s = mesh();
  const lb = new RoundRobin();
  const seen = new Map<string, number>();
  for (let i = 0; i < 10; i++) {
    const d = resolveVip(s, ECHO, 'n1', lb, GUARD);
    if (d.kind !== 'local' && d.kind !== 'forward') return t.fail(`unexpected ${d.kind}`);
    t.equal(d.service.name, 'echo');
    t.equal(d.target.port, 8080, 'port mapped to targetPort');
    t.equal(d.target.ip, d.destination.record.addresses[0]);
    const name = d.destination.record.name;
    seen.set(`${d.kind}:${name}`, (seen.get(`${d.kind}:${name}`) ?? 0) + 1);
    if (d.kind === 'forward') t.match(d.reason, /on node n2/);
  }
  t.same(Object.fromEntries(seen), { 'local:echo-1': 5, 'forward:echo-2': 5 }, 'never the unhealthy echo-3');
});

t.test('the same service seen from the other node', async (t) => {
  const s = mesh();
  const lb = new RoundRobin();
  const kinds = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const d = resolveVip(s, ECHO, 'n2', lb, GUARD);
    if (d.kind === 'local' || d.kind === 'forward') kinds.add(`${d.kind}:${d.destination.record.name}`);
  }
  t.same([...kinds].sort(), ['forward:echo-1', 'local:echo-2']);
});

t.test('a local endpoint outside the mesh is forwarded, not checked', async (t) => {
  const s = mesh();
  const lb = new RoundRobin();
  const kinds = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const d = resolveVip(s, { ip: '10.96.0.11', port: 80 }, 'n1', lb, GUARD);
    if (d.kind === 'forward') {
      kinds.add(d.destination.record.name);
      if (d.destination.record.name === 'mixed-out') t.match(d.reason, /not in the mesh/);
    } else {
      t.fail(`unexpected ${d.kind}`);
    }
  }
  t.same([...kinds].sort(), ['mixed-in', 'mixed-out']);
});

t.test('refusals name the service and say why', async (t) => {
  const s = mesh();
  const lb = new RoundRobin();
  const noPort = resolveVip(s, { ip: '10.96.0.10', port: 81 }, 'n1', lb, GUARD);
  t.match(noPort, { kind: 'refuse', flag: 'NO_ROUTE', reason: /demo\/echo has no port 81 \(ports: 80\)/ });
  const none = resolveVip(s, { ip: '10.96.0.30', port: 80 }, 'n1', lb, GUARD);
  t.match(none, { kind: 'refuse', flag: 'NO_HEALTHY_UPSTREAM', reason: /demo\/sick .*no healthy endpoint/ });
  const loop = resolveVip(s, { ip: '10.96.0.40', port: 80 }, 'n1', lb, GUARD);
  t.match(loop, { kind: 'refuse', flag: 'LOOP', reason: /proxy port 15006/ });
});

t.test('captured service ports: services with an enrolled endpoint on the node, health ignored', async (t) => {
  const s = mesh();
  const key = (xs: { vip: string; port: number }[]) => xs.map((x) => `${x.vip}:${x.port}`).sort();
  t.same(key(capturedServicePorts(s, 'n1')), ['10.96.0.10:80', '10.96.0.30:80', '10.96.0.40:80'],
    'echo and loopy (echo-1 here), sick (enrolled though unhealthy); not mixed (only an opted-out pod here) nor web (legacy)');
  t.same(key(capturedServicePorts(s, 'n2')), ['10.96.0.10:80', '10.96.0.11:80', '10.96.0.40:80']);
  t.same(capturedServicePorts(s, 'n3'), [], 'a node without enrolled pods captures no service');
});

t.test('captured service ports: every VIP of a dual-stack service, IPv6 in canonical text', async (t) => {
  const s = mesh();
  const dual = serviceRecord({ name: 'dual', namespace: 'demo', vip: '10.96.0.50', port: 80, targetPort: 8080, selector: { app: 'echo' } });
  dual.vips = ['10.96.0.50', 'FD00:7EFF:0:0::50'];
  s.applyChanges([{ op: 'put', kind: 'service', key: 'demo/dual', record: dual }], 2);
  const key = (xs: { vip: string; port: number }[]) => xs.map((x) => `${x.vip} ${x.port}`).sort();
  t.same(key(capturedServicePorts(s, 'n1')), ['10.96.0.10 80', '10.96.0.30 80', '10.96.0.40 80', '10.96.0.50 80', 'fd00:7eff::50 80'],
    'the IPv6 ClusterIP too (left out, a same-node client would reach echo-1 through kube-proxy uncaptured), spelt as ip6tables-save does');
});
