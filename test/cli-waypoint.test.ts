// `weft waypoints`, `weft namespace use-waypoint`, `weft waypoint remove` (refusal and
// --force) and `weft waypoint add`'s refusals, against a real redis-server holding the
// demo mesh and a lab state file naming a waypoint pod whose namespaces this test made
// up (so nothing of a lab that may be running is touched).
import t from 'tap';
import { join } from 'node:path';
import { captureIo, startDemoRegistry, tempDir } from './helpers/cli';
import { caught } from './helpers/wait';
import namespace from '../src/cli/commands/namespace';
import status from '../src/cli/commands/status';
import waypoint from '../src/cli/commands/waypoint';
import waypoints from '../src/cli/commands/waypoints';
import { planLab, type PlannedWaypoint } from '../src/lab/plan';
import { readState, StateStore } from '../src/lab/state';
import { parseTopology } from '../src/lab/topology';
import { waypointRecords } from '../src/lab/waypoint-pod';
import { serviceRecord } from '../src/registry/fixtures';

t.test('waypoint commands', async (t) => {
  const labTmp = tempDir('weft-cli-wp-');
  t.teardown(labTmp.remove);
  const labDir = join(labTmp.dir, 'lab');
  const { redis, store, dir, contextFile } = await startDemoRegistry(t, { version: 1, trustDomain: 'cluster.local', labDir });
  const env = { HOME: dir, WEFT_CONTEXT: contextFile };
  const run = async (cmd: { runWith: (a: string[], io: ReturnType<typeof captureIo>['io']) => Promise<number> }, argv: string[]) => {
    const cap = captureIo(env);
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };

  // A lab state naming one waypoint pod, as `weft waypoint add` leaves it. Its netns and
  // veth names are this test's own and do not exist: removal finds them already gone.
  const plan = planLab(parseTopology(`
redisPort: ${Number(new URL(redis.url).port)}
nodes: [{ name: node-1 }, { name: node-2 }]
namespaces: [{ name: demo }]
`));
  const tag = `weft-t${process.pid % 100000}`;
  plan.nodes.forEach((n, i) => { n.netns = `${tag}-n${i + 1}`; });
  const wp: PlannedWaypoint = {
    uid: 'demo/waypoint', name: 'waypoint', namespace: 'demo', node: 'node-2', serviceAccount: 'waypoint',
    netns: `${tag}-wp`, ip: '198.19.2.30', nodeLink: `${tag}w`,
  };
  const lab = StateStore.create({ labDir, repo: '/repo', topologyFile: 'test.yaml', startedAt: new Date().toISOString(), plan });
  lab.update({ phase: 'up' });
  lab.addWaypoint(wp);
  lab.record({ type: 'netns', name: wp.netns });
  const recs = waypointRecords(wp, 'Healthy');
  await store.apply([{ op: 'put', kind: 'waypoint', record: recs.waypoint }, { op: 'put', kind: 'workload', record: recs.workload }]);

  t.test('weft waypoints: pod, address, identity, ready, unused', async (t) => {
    const { code, out } = await run(waypoints, []);
    t.equal(code, 0);
    const lines = out.trimEnd().split('\n');
    t.match(lines[0], /^NAMESPACE\s+NAME\s+NODE\/POD\s+ADDRESS\s+IDENTITY\s+READY\s+USED BY$/);
    t.match(lines[1], /^demo\s+waypoint\s+node-2\/waypoint\s+198\.19\.2\.30\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/waypoint\s+1\/1\s+-$/);
    t.equal(lines.length, 2);
    const json = JSON.parse((await run(waypoints, ['-o', 'json'])).out);
    t.same(json.items, [{
      namespace: 'demo', name: 'waypoint', serviceAccount: 'waypoint', for: 'service', identity: 'spiffe://cluster.local/ns/demo/sa/waypoint',
      pods: [{ name: 'waypoint', node: 'node-2', addresses: ['198.19.2.30'], ready: true }], readyPods: 1, usedBy: [],
    }]);
    t.equal((await run(waypoints, ['-n', 'legacy'])).out, 'No waypoints in namespace legacy; add one with weft waypoint add <namespace>/<name> --node <node>.\n');
  });

  t.test('namespace use-waypoint sets the label; a missing waypoint or namespace is refused', async (t) => {
    const r = await run(namespace, ['use-waypoint', 'demo', 'waypoint']);
    t.equal(r.code, 0);
    t.match(r.out, /namespace demo: label weft\.io\/use-waypoint=waypoint set at registry revision \d+/);
    t.same((await store.get('namespace', 'demo'))!.labels, { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' }, 'enrolment label kept');
    const again = JSON.parse((await run(namespace, ['use-waypoint', 'demo', 'waypoint', '-o', 'json'])).out);
    t.equal(again.changed, false, 'setting it twice writes nothing');
    t.match((await run(namespace, ['list'])).out, /demo\s+ambient\s+waypoint\s+/);

    const missing = await caught(() => run(namespace, ['use-waypoint', 'demo', 'nope']));
    t.equal(missing.code, 'WEFT_REGISTRY_NOT_FOUND');
    t.match(missing.message, /namespace demo has no waypoint "nope" \(its waypoints: waypoint\); add one first/);
    t.equal((await caught(() => run(namespace, ['use-waypoint', 'nowhere', 'waypoint']))).code, 'WEFT_REGISTRY_NOT_FOUND');
    t.equal((await caught(() => run(namespace, ['use-waypoint', 'demo']))).code, 'WEFT_USAGE');
    t.equal((await caught(() => run(namespace, ['use-waypoint', 'demo', 'Bad_Name']))).code, 'WEFT_USAGE');
    t.same((await store.get('namespace', 'demo'))!.labels['weft.io/use-waypoint'], 'waypoint', 'refusals write nothing');
  });

  t.test('USED BY lists the namespace and Services naming it; status has a waypoint row', async (t) => {
    await store.apply([{ op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo', vips: ['198.18.128.10'], ports: [{ name: 'http', port: 80, targetPort: 8080 }], waypoint: 'waypoint' }) }]);
    t.match((await run(waypoints, [])).out, /1\/1\s+namespace demo, service demo\/echo\n/);
    const st = await run(status, ['-o', 'json']);
    const json = JSON.parse(st.out);
    t.same(json.waypoints, [{
      namespace: 'demo', name: 'waypoint', status: 'ready', healthy: true, readyPods: 1, pods: 1,
      where: ['node-2/waypoint 198.19.2.30'], usedBy: ['namespace demo', 'service demo/echo'],
    }]);
    t.match((await run(status, [])).out, /waypoint\s+demo\/waypoint\s+ready\s+-\s+-\s+1\/1 pods ready \(node-2\/waypoint 198\.19\.2\.30\), used by namespace demo, service demo\/echo\n/);
  });

  t.test('remove is refused while used, naming the users; nothing is removed', async (t) => {
    const err = await caught(() => run(waypoint, ['remove', 'demo/waypoint']));
    t.equal(err.code, 'WEFT_WAYPOINT_IN_USE');
    t.match(err.message, /waypoint demo\/waypoint is still used by namespace demo, service demo\/echo; .*weft namespace use-waypoint demo none.*--force/);
    t.ok(await store.get('waypoint', 'demo/waypoint'), 'waypoint record kept');
    t.ok(await store.get('workload', 'demo/waypoint'), 'pod record kept');
    t.same(readState(labDir)!.waypoints!.map((w) => w.uid), ['demo/waypoint'], 'lab pod kept');
  });

  t.test('add refuses an unknown node, a taken name, an unknown namespace and bad references', async (t) => {
    const node = await caught(() => run(waypoint, ['add', 'demo/second', '--node', 'node-9']));
    t.equal(node.code, 'WEFT_USAGE');
    t.match(node.message, /the lab has no node "node-9" \(nodes: node-1, node-2\)/);
    const taken = await caught(() => run(waypoint, ['add', 'demo/waypoint', '--node', 'node-1']));
    t.equal(taken.code, 'WEFT_WAYPOINT_EXISTS');
    const pod = await caught(() => run(waypoint, ['add', 'demo/client', '--node', 'node-1']));
    t.equal(pod.code, 'WEFT_WAYPOINT_EXISTS');
    t.match(pod.message, /a pod named demo\/client already exists/);
    const ns = await caught(() => run(waypoint, ['add', 'nowhere/waypoint', '--node', 'node-1']));
    t.equal(ns.code, 'WEFT_REGISTRY_NOT_FOUND');
    t.equal((await caught(() => run(waypoint, ['add', 'demo/waypoint-2']))).code, 'WEFT_USAGE', '--node is required on the lab');
    t.equal((await caught(() => run(waypoint, ['add', 'waypoint', '--node', 'node-1']))).code, 'WEFT_USAGE', 'no namespace');
    t.equal((await caught(() => run(waypoint, ['add', 'demo/wp', '--node', 'node-1', '--service-account', 'Bad']))).code, 'WEFT_USAGE');
    t.equal((await caught(() => run(waypoint, ['frobnicate']))).code, 'WEFT_USAGE');
    t.same(readState(labDir)!.waypoints!.map((w) => w.uid), ['demo/waypoint'], 'refusals change nothing in the lab');
  });

  t.test('remove --force removes the pod and records, and says what stays bound', async (t) => {
    const r = await run(waypoint, ['remove', 'demo/waypoint', '--force']);
    t.equal(r.code, 0);
    t.match(r.out, /waypoint demo\/waypoint removed\nwarning: still bound by namespace demo, service demo\/echo: their traffic is refused/);
    t.equal(await store.get('waypoint', 'demo/waypoint'), undefined, 'waypoint record gone');
    t.equal(await store.get('workload', 'demo/waypoint'), undefined, 'pod record gone');
    const state = readState(labDir)!;
    t.same(state.waypoints, [], 'the lab forgot the pod');
    t.notOk(state.resources.some((x) => x.type === 'netns' && x.name === wp.netns), 'its netns is no longer recorded');
    const w = await run(waypoints, []);
    t.match(w.err, /warning: namespace demo uses waypoint waypoint, which does not exist: its services' traffic is refused until it does/);
    const gone = await caught(() => run(waypoint, ['remove', 'demo/waypoint']));
    t.equal(gone.code, 'WEFT_REGISTRY_NOT_FOUND', 'removing it again: not found');
  });

  t.test('use-waypoint none opts the namespace out', async (t) => {
    const r = await run(namespace, ['use-waypoint', 'demo', 'none']);
    t.match(r.out, /label weft\.io\/use-waypoint=none set \(was waypoint\)/);
    t.match(r.out, /Services with their own weft\.io\/use-waypoint label keep it: demo\/echo=waypoint/);
  });
});
