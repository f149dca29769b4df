// Lab topology validation: the checked-in default parses to the documented cluster, and
// every field has a rejection test that checks the error names that field.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWeftError } from '../src/lib/errors';
import { defaultTopologyFile } from '../src/lab/paths';
import { loadTopology, parseTopology, type Topology } from '../src/lab/topology';

t.test('the default topology (scripts/lab.yaml) is the documented cluster', async (t) => {
  const topo = loadTopology(defaultTopologyFile());
  t.equal(topo.redisPort, 16379);
  t.same(topo.nodes.map((n) => n.name), ['node-1', 'node-2']);
  t.same(topo.namespaces, [
    { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient' } },
    { name: 'legacy', labels: {} },
  ]);
  t.same(topo.pods.map((p) => [`${p.namespace}/${p.name}`, p.node, p.serviceAccount, p.run, p.labels]), [
    ['demo/client', 'node-1', 'client', 'none', {}],
    ['demo/echo-1', 'node-1', 'echo', 'echo', { app: 'echo', version: 'v1' }],
    ['demo/echo-2', 'node-2', 'echo', 'echo', { app: 'echo', version: 'v2' }],
    ['legacy/client', 'node-1', 'default', 'none', {}],
    ['legacy/echo-1', 'node-2', 'default', 'echo', { app: 'echo' }],
  ]);
  for (const ns of ['demo', 'legacy']) {
    const svc = topo.services.find((s) => s.namespace === ns && s.name === 'echo');
    t.same(svc?.selector, { app: 'echo' }, `${ns}/echo selector`);
    t.same(svc?.ports.map((p) => [p.port, p.targetPort]), [[80, 8080], [9000, 9000]], `${ns}/echo ports`);
  }
  for (const v of ['v1', 'v2']) {
    t.same(topo.services.find((s) => s.namespace === 'demo' && s.name === `echo-${v}`)?.selector, { app: 'echo', version: v }, `demo/echo-${v}: one version, for routes`);
  }
  t.ok(Object.isFrozen(topo) && Object.isFrozen(topo.pods[0]), 'the result is frozen');
});

t.test('defaults: redisPort, serviceAccount, run, targetPort, empty lists', async (t) => {
  const topo = parseTopology(`
nodes: [{ name: a }]
namespaces: [{ name: ns }]
pods: [{ name: p, namespace: ns, node: a }]
services: [{ name: s, namespace: ns, selector: { app: p }, ports: [{ port: 7 }] }]
`);
  t.equal(topo.redisPort, 16379);
  t.equal(topo.pods[0]!.serviceAccount, 'default');
  t.equal(topo.pods[0]!.run, 'none');
  t.same(topo.pods[0]!.labels, {});
  t.same(topo.services[0]!.ports, [{ port: 7, targetPort: 7 }]);
  t.same(parseTopology('nodes: [{ name: a }]').pods, []);
});

t.test('label values written as YAML numbers or booleans are taken as text', async (t) => {
  const topo = parseTopology('nodes: [{ name: a, labels: { zone: 1, gpu: true } }]');
  t.same(topo.nodes[0]!.labels, { zone: '1', gpu: 'true' });
});

// A valid document to derive each broken case from.
const BASE = {
  redisPort: 16379,
  nodes: [{ name: 'node-1' }, { name: 'node-2' }],
  namespaces: [{ name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient' } }, { name: 'legacy' }],
  pods: [
    { name: 'client', namespace: 'demo', node: 'node-1', serviceAccount: 'client' },
    { name: 'echo-1', namespace: 'demo', node: 'node-2', labels: { app: 'echo' }, run: 'echo' },
  ],
  services: [{ name: 'echo', namespace: 'demo', selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }],
  waypoints: [{ name: 'waypoint', namespace: 'demo', node: 'node-2' }],
};

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
function variant(edit: (d: Doc) => void): string {
  const d = JSON.parse(JSON.stringify(BASE)) as Doc;
  edit(d);
  return JSON.stringify(d); // JSON is YAML
}

t.test('the base document used by the rejection cases is valid', async (t) => {
  const topo: Topology = parseTopology(variant(() => {}));
  t.equal(topo.pods.length, 2);
  t.same(topo.waypoints, [{ name: 'waypoint', namespace: 'demo', node: 'node-2', serviceAccount: 'waypoint' }], 'a waypoint\'s service account defaults to its name');
  t.same(parseTopology('nodes: [{ name: a }]').waypoints, [], 'no waypoints by default');
  t.equal(parseTopology(variant((d) => { d.waypoints[0].serviceAccount = 'wp-sa'; })).waypoints[0]!.serviceAccount, 'wp-sa');
});

const cases: [string, string, (d: Doc) => void][] = [
  ['(top level)', 'a list instead of a mapping', () => {}],
  ['nodez', 'unknown top-level key', (d) => { d.nodez = []; }],
  ['redisPort', 'port 0', (d) => { d.redisPort = 0; }],
  ['redisPort', 'port too large', (d) => { d.redisPort = 70000; }],
  ['redisPort', 'port as text', (d) => { d.redisPort = 'redis'; }],
  ['nodes', 'no nodes', (d) => { d.nodes = []; }],
  ['nodes', 'nodes not a list', (d) => { d.nodes = { name: 'node-1' }; }],
  ['nodes', 'too many nodes', (d) => { d.nodes = Array.from({ length: 51 }, (_, i) => ({ name: `n${i}` })); }],
  ['nodes[0]', 'node not a mapping', (d) => { d.nodes[0] = 'node-1'; }],
  ['nodes[0].name', 'node name missing', (d) => { delete d.nodes[0].name; }],
  ['nodes[0].name', 'node name not a DNS label', (d) => { d.nodes[0].name = 'Node_1'; }],
  ['nodes[0].name', 'node name in the pod netns space', (d) => { d.nodes[0].name = 'pod-x'; }],
  ['nodes[1].name', 'duplicate node', (d) => { d.nodes[1].name = 'node-1'; }],
  ['nodes[0].zone', 'unknown node field', (d) => { d.nodes[0].zone = 'a'; }],
  ['nodes[0].labels.bad key', 'bad label key', (d) => { d.nodes[0].labels = { 'bad key': 'x' }; }],
  ['namespaces', 'namespaces not a list', (d) => { d.namespaces = 'demo'; }],
  ['namespaces[1].name', 'duplicate namespace', (d) => { d.namespaces[1].name = 'demo'; }],
  ['namespaces[0].name', 'namespace name too long', (d) => { d.namespaces[0].name = 'x'.repeat(64); }],
  ['namespaces[0].labels', 'labels not a mapping', (d) => { d.namespaces[0].labels = ['a']; }],
  ['namespaces[0].labels.weft.io/dataplane-mode', 'bad label value', (d) => { d.namespaces[0].labels['weft.io/dataplane-mode'] = 'ambient mode'; }],
  ['pods[0].name', 'pod name missing', (d) => { delete d.pods[0].name; }],
  ['pods[0].namespace', 'pod in an undeclared namespace', (d) => { d.pods[0].namespace = 'nope'; }],
  ['pods[0].node', 'pod on an undeclared node', (d) => { d.pods[0].node = 'node-9'; }],
  ['pods[0].serviceAccount', 'bad service account', (d) => { d.pods[0].serviceAccount = 'Client'; }],
  ['pods[0].run', 'unknown run', (d) => { d.pods[0].run = 'nginx'; }],
  ['pods[0].labels.app', 'bad pod label value', (d) => { d.pods[0].labels = { app: { nested: 1 } }; }],
  ['pods[0].image', 'unknown pod field', (d) => { d.pods[0].image = 'busybox'; }],
  ['pods[1]', 'duplicate pod', (d) => { d.pods[1].name = 'client'; }],
  ['pods[1]', 'pod netns names collide', (d) => {
    d.namespaces.push({ name: 'demo-x' });
    d.pods[0].name = 'x-y';
    d.pods[1] = { name: 'y', namespace: 'demo-x', node: 'node-1' };
  }],
  ['pods[240]', 'node full', (d) => { d.pods = Array.from({ length: 241 }, (_, i) => ({ name: `p${i}`, namespace: 'demo', node: 'node-1' })); }],
  ['services', 'services not a list', (d) => { d.services = {}; }],
  ['services[0].name', 'bad service name', (d) => { d.services[0].name = 'echo.svc'; }],
  ['services[0].namespace', 'service in an undeclared namespace', (d) => { d.services[0].namespace = 'nope'; }],
  ['services[1]', 'duplicate service', (d) => { d.services.push(JSON.parse(JSON.stringify(d.services[0]))); }],
  ['services[0].selector', 'empty selector', (d) => { d.services[0].selector = {}; }],
  ['services[0].selector.app', 'bad selector value', (d) => { d.services[0].selector = { app: 'a b' }; }],
  ['services[0].ports', 'no ports', (d) => { d.services[0].ports = []; }],
  ['services[0].ports[0].port', 'port 0', (d) => { d.services[0].ports[0].port = 0; }],
  ['services[0].ports[0].port', 'fractional port', (d) => { d.services[0].ports[0].port = 80.5; }],
  ['services[0].ports[0].targetPort', 'targetPort too large', (d) => { d.services[0].ports[0].targetPort = 65536; }],
  ['services[0].ports[0].name', 'bad port name', (d) => { d.services[0].ports[0].name = 'HTTP'; }],
  ['services[0].ports[1].port', 'duplicate port', (d) => { d.services[0].ports.push({ port: 80, targetPort: 9000 }); }],
  ['services[0].ports[0].protocol', 'unknown port field', (d) => { d.services[0].ports[0].protocol = 'UDP'; }],
  ['services[0].vip', 'vip outside 198.18.128.0/24', (d) => { d.services[0].vip = '10.0.0.1'; }],
  ['services[0].vip', 'vip .255', (d) => { d.services[0].vip = '198.18.128.255'; }],
  ['services[1].vip', 'duplicate vip', (d) => {
    d.services[0].vip = '198.18.128.5';
    d.services.push({ name: 'other', namespace: 'demo', selector: { app: 'x' }, ports: [{ port: 1 }], vip: '198.18.128.5' });
  }],
  ['waypoints', 'waypoints not a list', (d) => { d.waypoints = { name: 'waypoint' }; }],
  ['waypoints[0]', 'waypoint not a mapping', (d) => { d.waypoints[0] = 'waypoint'; }],
  ['waypoints[0].name', 'waypoint name missing', (d) => { delete d.waypoints[0].name; }],
  ['waypoints[0].name', 'waypoint name not a DNS label', (d) => { d.waypoints[0].name = 'Way_point'; }],
  ['waypoints[0].namespace', 'waypoint in an undeclared namespace', (d) => { d.waypoints[0].namespace = 'nope'; }],
  ['waypoints[0].namespace', 'waypoint namespace missing', (d) => { delete d.waypoints[0].namespace; }],
  ['waypoints[0].node', 'waypoint on an undeclared node', (d) => { d.waypoints[0].node = 'node-9'; }],
  ['waypoints[0].serviceAccount', 'bad waypoint service account', (d) => { d.waypoints[0].serviceAccount = 'SA'; }],
  ['waypoints[0].sidecar', 'unknown waypoint field', (d) => { d.waypoints[0].sidecar = true; }],
  ['waypoints[0]', 'waypoint named as a pod of its namespace', (d) => { d.waypoints[0].name = 'client'; }],
  ['waypoints[1]', 'duplicate waypoint', (d) => { d.waypoints.push({ ...d.waypoints[0], node: 'node-1' }); }],
  ['waypoints[0]', 'waypoint on a full node', (d) => {
    d.pods = Array.from({ length: 240 }, (_, i) => ({ name: `p${i}`, namespace: 'demo', node: 'node-2' }));
  }],
];

t.test('every invalid field is rejected with WEFT_LAB_TOPOLOGY_INVALID naming it', async (t) => {
  for (const [field, what, edit] of cases) {
    const text = field === '(top level)' ? '- a\n- b\n' : variant(edit);
    try {
      parseTopology(text, 'test.yaml');
      t.fail(`${what}: accepted`);
    } catch (err) {
      t.ok(isWeftError(err, 'WEFT_LAB_TOPOLOGY_INVALID'), `${what}: code`);
      t.equal((err as { details?: { field?: string } }).details?.field, field, `${what}: names ${field}`);
      t.match((err as Error).message, `test.yaml: ${field}:`, `${what}: message names file and field`);
    }
  }
});

t.test('YAML syntax errors and unreadable files are WEFT_LAB_TOPOLOGY_INVALID', async (t) => {
  t.throws(() => parseTopology('nodes: [', 'x.yaml'), { code: 'WEFT_LAB_TOPOLOGY_INVALID', message: /x\.yaml: not valid YAML/ });
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-topo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.throws(() => loadTopology(join(dir, 'missing.yaml')), { code: 'WEFT_LAB_TOPOLOGY_INVALID', message: /ENOENT.*--topology/ });
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'nodes: []\n');
  t.throws(() => loadTopology(file), { code: 'WEFT_LAB_TOPOLOGY_INVALID', message: new RegExp(`${file}: nodes: expected at least 1 entry`) });
});
