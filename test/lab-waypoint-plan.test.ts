// The lab's waypoint pods as data: their addresses, records, network script, process
// command line and state entries, checked without touching the machine.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { networkUpScript, podDownCommands, podUpScript } from '../src/lab/network';
import { labLayout } from '../src/lab/paths';
import { freePodHost, planLab, planWaypoint, podLinkName } from '../src/lab/plan';
import { StateStore, readState } from '../src/lab/state';
import { parseTopology } from '../src/lab/topology';
import { waypointArgs, waypointProcessName, waypointReadyUrl, waypointRecords, waypointTokenFile } from '../src/lab/waypoint-pod';
import { MeshState } from '../src/registry/state';
import { ambientNamespace } from '../src/registry/fixtures';
import { validateRecord } from '../src/registry/validate';

const topo = parseTopology(`
nodes: [{ name: node-1 }, { name: node-2 }]
namespaces: [{ name: demo, labels: { weft.io/dataplane-mode: ambient } }]
pods:
  - { name: client, namespace: demo, node: node-1 }
  - { name: echo-1, namespace: demo, node: node-2 }
waypoints:
  - { name: waypoint, namespace: demo, node: node-2 }
  - { name: other, namespace: demo, node: node-1, serviceAccount: gw, for: workload }
`);
const plan = planLab(topo);

t.test('topology waypoints take the next addresses of their node, after its pods', async (t) => {
  t.same(plan.waypoints.map((w) => [w.uid, w.node, w.netns, w.ip, w.serviceAccount]), [
    ['demo/waypoint', 'node-2', 'weft-pod-demo-waypoint', '198.19.2.11', 'waypoint'],
    ['demo/other', 'node-1', 'weft-pod-demo-other', '198.19.1.11', 'gw'],
  ]);
  t.equal(plan.waypoints[0]!.nodeLink, podLinkName('demo', 'waypoint'));
  t.ok(/^weft-/.test(plan.waypoints[0]!.nodeLink) && plan.waypoints[0]!.nodeLink.length <= 15, 'veth weft-prefixed and fits IFNAMSIZ');
  t.notMatch(networkUpScript(plan), /weft-pod-demo-waypoint/, 'waypoint pods are made live (as by weft waypoint add), not by the network script');
  const v6 = planLab({ ...topo, ipv6: true });
  t.equal(v6.waypoints[0]!.ip6, 'fd00:7eff:2::11', 'dual stack: an IPv6 address from the node\'s pod prefix too');
});

t.test('a live waypoint gets the lowest host free of pods and waypoints', async (t) => {
  t.equal(freePodHost(plan, 'node-2', []), 11, 'after echo-1 (.10)');
  t.equal(freePodHost(plan, 'node-2', plan.waypoints), 12, 'after the waypoint at .11');
  const gap = [planWaypoint(plan.nodes[1]!, { name: 'a', namespace: 'demo', serviceAccount: 'a' }, 13)];
  t.equal(freePodHost(plan, 'node-2', gap), 11, 'fills a gap left by a removed waypoint');
  const full = Array.from({ length: 244 }, (_, i) => planWaypoint(plan.nodes[1]!, { name: `w${i}`, namespace: 'demo', serviceAccount: 'w' }, 11 + i));
  t.equal(freePodHost(plan, 'node-2', full), undefined, 'a full /24 has none');
});

t.test('records: a waypoint record and a never-enrolled workload, Unhealthy until ready', async (t) => {
  const w = plan.waypoints[0]!;
  const { waypoint, workload } = waypointRecords(w, 'Unhealthy');
  t.same(validateRecord('waypoint', waypoint, { unknownKeys: 'reject' }), waypoint, 'waypoint record passes the registry validator');
  t.same(validateRecord('workload', workload, { unknownKeys: 'reject' }), workload, 'workload record passes the registry validator');
  t.same(waypoint, { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' });
  t.same(workload, {
    uid: 'demo/waypoint', name: 'waypoint', namespace: 'demo', node: 'node-2', addresses: ['198.19.2.11'], serviceAccount: 'waypoint',
    labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'weft.io/dataplane-mode': 'none' },
    ports: [15008, 15021, 15020], status: 'Unhealthy',
  });
  t.equal(waypointRecords(plan.waypoints[1]!, 'Healthy').waypoint.for, 'workload', "the topology's `for` (a waypoint for workloads)");
  t.throws(() => parseTopology('nodes: [{ name: n }]\nnamespaces: [{ name: demo }]\nwaypoints: [{ name: w, namespace: demo, node: n, for: pods }]'),
    { message: /waypoints\[0\]\.for.*must be one of service, workload, all, none, got "pods"/ });
  // The mesh's view: its pod belongs to the waypoint and is not enrolled, in an ambient namespace.
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({ namespace: [ambientNamespace('demo')], waypoint: [waypoint], workload: [waypointRecords(w, 'Healthy').workload] }, 1);
  const pods = state.waypointPods(waypoint);
  t.same(pods.map((p) => [p.record.uid, p.enrolled, p.record.status]), [['demo/waypoint', false, 'Healthy']]);
});

t.test('network: one pod added live with the layout of every lab pod; removal deletes its veth first', async (t) => {
  const w = plan.waypoints[0]!;
  const node = plan.nodes[1]!;
  const script = podUpScript(node, w);
  t.match(script, /^#!\/bin\/sh\n/);
  t.match(script, /\nip netns add weft-pod-demo-waypoint\n/);
  t.match(script, new RegExp(`\\nip link add ${w.nodeLink} netns weft-node-2 type veth peer name eth0 netns weft-pod-demo-waypoint\\n`));
  t.match(script, new RegExp(`ip -n weft-node-2 -batch - <<'WEFT_EOF'\\naddr add 169\\.254\\.1\\.1/32 dev ${w.nodeLink}\\nlink set ${w.nodeLink} up\\nroute add 198\\.19\\.2\\.11/32 dev ${w.nodeLink} src 198\\.18\\.0\\.12\\nWEFT_EOF`));
  t.match(script, /ip -n weft-pod-demo-waypoint -batch - <<'WEFT_EOF'\nlink set lo up\naddr add 198\.19\.2\.11\/32 dev eth0\nlink set eth0 up\nroute add 169\.254\.1\.1 dev eth0 scope link\nroute add default via 169\.254\.1\.1 dev eth0\nWEFT_EOF/);
  t.notMatch(script, /ip_forward|iptables|route add .* dev weft-br0/, 'nothing changes in the root namespace');
  t.same(podDownCommands(node, w), [['-n', 'weft-node-2', 'link', 'del', w.nodeLink], ['netns', 'del', 'weft-pod-demo-waypoint']]);
});

t.test('the waypoint process: weft waypoint run with its identity, address, registry, CA and token file', async (t) => {
  const layout = labLayout('/lab');
  const w = plan.waypoints[1]!;
  t.same(waypointArgs(w, layout, plan), [
    'waypoint', 'run', '--name', 'other', '--namespace', 'demo', '--service-account', 'gw', '--address', '198.19.1.11',
    '--redis-url', 'redis://198.18.0.1:16379', '--ca-address', '198.18.0.1:15012', '--trust-anchor-file', '/lab/ca/root.pem',
    '--trust-domain', 'cluster.local', '--identity-token-file', '/lab/run/waypoint-demo-other.token',
  ]);
  t.equal(waypointTokenFile(layout, w), '/lab/run/waypoint-demo-other.token', 'the token lives in the run dir, removed by lab down');
  t.equal(waypointProcessName(w), 'waypoint/demo/other');
  t.equal(waypointReadyUrl(w), 'http://198.19.1.11:15021/healthz/ready');
});

t.test('state: waypoints are recorded and forgotten by uid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-wp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  store.addWaypoint(plan.waypoints[0]!);
  store.addWaypoint(plan.waypoints[1]!);
  store.addWaypoint(plan.waypoints[0]!);
  t.same(readState(dir)!.waypoints!.map((w) => w.uid), ['demo/other', 'demo/waypoint'], 'recording one again replaces it');
  store.removeWaypoint('demo/waypoint');
  t.same(readState(dir)!.waypoints!.map((w) => w.uid), ['demo/other']);
});
