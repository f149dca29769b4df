// The lab's address plan, hosts files, registry records and network script: pure
// functions of the topology, checked without touching the machine.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildContext, readContext, removeContextIfOurs, requireContext, writeContext } from '../src/lab/context';
import { networkDownBatch, networkResources, networkUpScript, isAlreadyGone } from '../src/lab/network';
import { defaultTopologyFile } from '../src/lab/paths';
import { hostsFile, planLab, podLinkName, registryRecords, resolvConf, serviceRuleInput } from '../src/lab/plan';
import { conflictError, overlappingRoutes, parseProcRoutes } from '../src/lab/preflight';
import { forgetLabDir, recordedLabDir, recordLabDir, StateStore } from '../src/lab/state';
import { loadTopology, parseTopology } from '../src/lab/topology';
import { validateRecord } from '../src/registry/validate';

const plan = planLab(loadTopology(defaultTopologyFile()));

t.test('address plan of the default lab', async (t) => {
  t.same(plan.nodes.map((n) => [n.name, n.netns, n.address, n.podCidr, n.hostLink]), [
    ['node-1', 'weft-node-1', '198.18.0.11', '198.19.1.0/24', 'weft-n1'],
    ['node-2', 'weft-node-2', '198.18.0.12', '198.19.2.0/24', 'weft-n2'],
  ]);
  t.same(plan.pods.map((p) => [p.uid, p.netns, p.ip]), [
    ['demo/client', 'weft-pod-demo-client', '198.19.1.10'],
    ['demo/echo-1', 'weft-pod-demo-echo-1', '198.19.1.11'],
    ['demo/echo-2', 'weft-pod-demo-echo-2', '198.19.2.10'],
    ['legacy/client', 'weft-pod-legacy-client', '198.19.1.12'],
    ['legacy/echo-1', 'weft-pod-legacy-echo-1', '198.19.2.11'],
  ]);
  t.same(plan.services.map((s) => [s.hostname, s.vip, s.endpoints.map((e) => e.uid)]), [
    ['echo.demo.svc.cluster.local', '198.18.128.10', ['demo/echo-1', 'demo/echo-2']],
    ['echo.legacy.svc.cluster.local', '198.18.128.11', ['legacy/echo-1']],
    ['echo-v1.demo.svc.cluster.local', '198.18.128.12', ['demo/echo-1']],
    ['echo-v2.demo.svc.cluster.local', '198.18.128.13', ['demo/echo-2']],
  ]);
  const links = plan.pods.map((p) => p.nodeLink);
  t.equal(new Set(links).size, links.length, 'pod veth names are unique');
  for (const l of [...links, ...plan.nodes.map((n) => n.hostLink)]) t.ok(/^weft-/.test(l) && l.length <= 15, `${l} fits IFNAMSIZ and is weft-prefixed`);
  t.equal(podLinkName('demo', 'client'), podLinkName('demo', 'client'), 'veth names are stable');
});

t.test('fixed VIPs are honoured and allocation steps around them', async (t) => {
  const p = planLab(parseTopology(`
nodes: [{ name: a }]
namespaces: [{ name: ns }]
services:
  - { name: s1, namespace: ns, selector: { x: y }, ports: [{ port: 1 }] }
  - { name: s2, namespace: ns, selector: { x: y }, ports: [{ port: 1 }], vip: 198.18.128.11 }
  - { name: s3, namespace: ns, selector: { x: y }, ports: [{ port: 1 }] }
`));
  t.same(p.services.map((s) => s.vip), ['198.18.128.10', '198.18.128.11', '198.18.128.12']);
  t.same(p.services[0]!.endpoints, [], 'no matching pods: no endpoints');
});

t.test('hosts files: service names everywhere, the bare name only in its namespace', async (t) => {
  const demo = hostsFile(plan, plan.pods.find((p) => p.uid === 'demo/client')!);
  t.match(demo, /^198\.18\.128\.10\techo\.demo\.svc\.cluster\.local echo\.demo\.svc echo\.demo echo$/m);
  t.match(demo, /^198\.18\.128\.11\techo\.legacy\.svc\.cluster\.local echo\.legacy\.svc echo\.legacy$/m);
  t.match(demo, /^198\.19\.1\.10\tclient$/m);
  t.match(demo, /^127\.0\.0\.1\tlocalhost$/m);
  const legacy = hostsFile(plan, plan.pods.find((p) => p.uid === 'legacy/client')!);
  t.match(legacy, /^198\.18\.128\.11\t.* echo\.legacy echo$/m);
  t.notMatch(legacy, /echo\.demo echo$/m);
  t.match(resolvConf(plan.pods[0]!), /nameserver 127\.0\.0\.1[\s\S]*search demo\.svc\.cluster\.local/);
});

t.test('registry records pass the registry validator (the controller contract)', async (t) => {
  const recs = registryRecords(plan);
  for (const r of recs.nodes) t.same(validateRecord('node', r, { unknownKeys: 'reject' }), r);
  for (const r of recs.namespaces) t.same(validateRecord('namespace', r, { unknownKeys: 'reject' }), r);
  for (const r of recs.workloads) t.same(validateRecord('workload', r, { unknownKeys: 'reject' }), r);
  for (const r of recs.services) t.same(validateRecord('service', r, { unknownKeys: 'reject' }), r);
  const echo2 = recs.workloads.find((w) => w.uid === 'demo/echo-2')!;
  t.same(echo2, {
    uid: 'demo/echo-2', name: 'echo-2', namespace: 'demo', node: 'node-2', addresses: ['198.19.2.10'],
    serviceAccount: 'echo', labels: { app: 'echo', version: 'v2' }, status: 'Healthy', ports: [8080, 9000, 7070],
  });
  t.same(recs.namespaces.find((n) => n.name === 'demo')!.labels, { 'weft.io/dataplane-mode': 'ambient' });
  t.same(recs.services[0], {
    name: 'echo', namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', vips: ['198.18.128.10'],
    ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'tcp', port: 9000, targetPort: 9000 }], selector: { app: 'echo' },
  });
});

t.test('kube-proxy input: one entry per service port, endpoints at the target port', async (t) => {
  t.same(serviceRuleInput(plan), [
    { vip: '198.18.128.10', port: 80, endpoints: [{ ip: '198.19.1.11', port: 8080 }, { ip: '198.19.2.10', port: 8080 }] },
    { vip: '198.18.128.10', port: 9000, endpoints: [{ ip: '198.19.1.11', port: 9000 }, { ip: '198.19.2.10', port: 9000 }] },
    { vip: '198.18.128.11', port: 80, endpoints: [{ ip: '198.19.2.11', port: 8080 }] },
    { vip: '198.18.128.11', port: 9000, endpoints: [{ ip: '198.19.2.11', port: 9000 }] },
    { vip: '198.18.128.12', port: 80, endpoints: [{ ip: '198.19.1.11', port: 8080 }] },
    { vip: '198.18.128.13', port: 80, endpoints: [{ ip: '198.19.2.10', port: 8080 }] },
  ]);
});

t.test('network script: everything it creates is recorded; nothing routes out of the lab', async (t) => {
  const script = networkUpScript(plan);
  const res = networkResources(plan);
  const created = [
    ...[...script.matchAll(/^netns add (\S+)$/gm)].map((m) => `netns ${m[1]}`),
    ...[...script.matchAll(/^link add (\S+)(?: netns \S+)? type/gm)].map((m) => m[1]!),
  ];
  const recordedNetns = new Set(res.netns.map((n) => `netns ${n}`));
  for (const c of created.filter((c) => c.startsWith('netns '))) t.ok(recordedNetns.has(c), `${c} recorded`);
  // Root links are recorded; pod veths live inside node netns and go with them.
  for (const n of plan.nodes) t.ok(res.links.includes(n.hostLink), `${n.hostLink} recorded`);
  t.ok(res.links.includes('weft-br0'));
  t.equal(created.filter((c) => c.startsWith('netns ')).length, plan.nodes.length + plan.pods.length);

  // ip_forward only ever inside a node netns.
  const forwardLines = script.split('\n').filter((l) => l.includes('ip_forward'));
  t.equal(forwardLines.length, plan.nodes.length);
  for (const l of forwardLines) t.match(l, /^ip netns exec weft-node-\d+ sh -e -c /);
  // Default routes only in pods, via the node-side gateway; root routes go into the lab.
  const blocks = script.split(/\n(?=# )/);
  for (const b of blocks) {
    if (/route add default/.test(b)) t.match(b, /^# Pod /, 'default route only in a pod block');
  }
  const root = blocks.find((b) => b.startsWith('# Root namespace'))!;
  t.same(root.split('\n').filter((l) => l.startsWith('route add')), [
    'route add 198.19.1.0/24 via 198.18.0.11 dev weft-br0',
    'route add 198.19.2.0/24 via 198.18.0.12 dev weft-br0',
    'route add unreachable 198.19.0.0/16',
    'route add unreachable 198.18.128.0/24',
  ]);
  t.match(script, /ip -n weft-node-1 -batch - <<'WEFT_EOF'\nlink set lo up\naddr add 198\.18\.0\.11\/24 dev eth0/);
  t.match(script, /route add 198\.19\.2\.0\/24 via 198\.18\.0\.12 dev eth0/);
  t.match(script, new RegExp(`route add 198\\.19\\.1\\.10/32 dev ${plan.pods[0]!.nodeLink} src 198\\.18\\.0\\.11`), 'node-to-pod traffic leaves from the node address');
  t.match(script, /ip -n weft-pod-demo-client -batch - <<'WEFT_EOF'\nlink set lo up\naddr add 198\.19\.1\.10\/32 dev eth0\nlink set eth0 up\nroute add 169\.254\.1\.1 dev eth0 scope link\nroute add default via 169\.254\.1\.1 dev eth0/);
});

t.test('down batch removes root veths before the bridge, then namespaces, then routes', async (t) => {
  const batch = networkDownBatch(networkResources(plan)).trim().split('\n');
  t.same(batch.slice(0, 3), ['link del weft-n1', 'link del weft-n2', 'link del weft-br0']);
  t.same(batch.filter((l) => l.startsWith('netns del')).length, 7);
  t.same(batch.slice(-2), ['route del unreachable 198.19.0.0/16', 'route del unreachable 198.18.128.0/24']);
  t.ok(isAlreadyGone('Cannot find device "weft-n1"'));
  t.ok(isAlreadyGone('Cannot remove namespace file "/run/netns/weft-node-1": No such file or directory'));
  t.ok(isAlreadyGone('RTNETLINK answers: No such process'));
  t.notOk(isAlreadyGone('RTNETLINK answers: Operation not permitted'));
});

t.test('route conflicts: anything overlapping 198.18.0.0/15 except the default route', async (t) => {
  const text = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0', // default
    'eth0\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0', // 10.0.0.0/16
    'tun0\t000012C6\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0', // 198.18.0.0/16 (a fake-IP proxy)
    'br1\t000013C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 198.19.0.0/24
    'br2\t000014C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0', // 198.20.0.0/24
    'big\t000000C6\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0', // 198.0.0.0/8
  ].join('\n');
  t.same(overlappingRoutes(parseProcRoutes(text)).map((r) => r.iface), ['tun0', 'br1', 'big']);
});

t.test('context file: written, read back, removed only by the lab that wrote it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-ctx-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sub', 'context.json');
  t.equal(readContext(file), undefined);
  t.throws(() => requireContext(file), { code: 'WEFT_CONTEXT_MISSING' });
  const ctx = buildContext(plan, '/lab/a', '/lab/a/ca/root.pem');
  writeContext(file, ctx);
  const back = readContext(file)!;
  t.same(back, ctx);
  t.equal(back.kind, 'lab');
  t.equal(back.redisUrl, 'redis://127.0.0.1:16379');
  t.equal(back.clusterRedisUrl, 'redis://198.18.0.1:16379');
  t.equal(back.caAddress, '198.18.0.1:15012');
  t.same(back.nodes[1], { name: 'node-2', address: '198.18.0.12', netns: 'weft-node-2', podCidr: '198.19.2.0/24', readinessUrl: 'http://198.18.0.12:15021/healthz/ready' });
  t.equal(removeContextIfOurs(file, '/lab/b'), false, "another lab's context stays");
  t.same(JSON.parse(readFileSync(file, 'utf8')).labDir, '/lab/a');
  t.equal(removeContextIfOurs(file, '/lab/a'), true);
  t.equal(readContext(file), undefined);
  writeFileSync(file, '{"kind":"cluster"}');
  t.throws(() => readContext(file), { code: 'WEFT_CONFIG_INVALID' });
});

t.test('a conflict names the lab directory recorded as up, when it is another one with a state file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-rec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const record = join(dir, 'weft-lab.dir');
  const other = join(dir, 'other-checkout', '.weft-lab', 'faults');
  const conflicts = ['network namespace weft-node-1 exists'];

  t.match(conflictError(conflicts, '/mine', record).message, /if another lab directory made them, run `WEFT_LAB_DIR=<that dir> scripts\/lab down`/, 'no record: the generic remedy');

  recordLabDir(other, record);
  t.equal(recordedLabDir(record), other);
  t.match(conflictError(conflicts, '/mine', record).message, /if another lab directory made them/, 'a record without a state file there is not trusted');

  StateStore.create({ labDir: other, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  const err = conflictError(conflicts, '/mine', record);
  t.equal(err.code, 'WEFT_LAB_CONFLICT');
  t.match(err.message, `network namespace weft-node-1 exists. The lab in /mine did not record these`);
  t.match(err.message, `the lab recorded in ${other} is up (or was left by a run that was killed): run \`WEFT_LAB_DIR=${other} scripts/lab down\``);
  t.same(err.details, { conflicts, recordedLabDir: other });
  t.match(conflictError(conflicts, other, record).message, /if another lab directory made them/, "the record of this very directory is no other lab's");

  forgetLabDir('/mine', record);
  t.equal(recordedLabDir(record), other, "down of another directory leaves the record alone");
  forgetLabDir(other, record);
  t.equal(recordedLabDir(record), undefined);
});
