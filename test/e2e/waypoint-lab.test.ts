// Waypoint pods on the real lab (root): one from the topology (made by `lab up`) and one
// added live with `weft waypoint add`; each its own pod netns with an address from its
// node's pod CIDR, never enrolled, registered as a workload plus a waypoint record;
// `weft waypoint remove` and `lab down` leave nothing behind. Readiness needs
// `weft waypoint run` (src/waypoint) and the CA's identity tokens.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { built, DIST, defaultTopologyFile } from '../../src/lab/paths';
import { podLinkName } from '../../src/lab/plan';
import { runWeft } from '../../src/lab/run';
import { labSkipReason, startLab, type LabHandle } from './helpers/lab';

const skip = labSkipReason();
if (skip) {
  t.plan(0, `lab e2e: ${skip}`);
} else {
  run();
}

/** The pod's IPv4 addresses on eth0, read inside its netns. */
function podAddresses(netns: string): string[] {
  const out = execFileSync('ip', ['-n', netns, '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
  return [...out.matchAll(/inet (\S+)/g)].map((m) => m[1]!);
}

function nodeLinks(nodeNetns: string): string {
  return execFileSync('ip', ['-n', nodeNetns, '-o', 'link', 'show'], { encoding: 'utf8' });
}

interface WaypointJson {
  namespace: string; name: string; identity: string; readyPods: number; usedBy: string[];
  pods: { name: string; node: string; addresses: string[]; ready: boolean }[];
}

async function waypointsJson(lab: LabHandle): Promise<WaypointJson[]> {
  const res = await lab.weft(['waypoints', '-o', 'json']);
  if (res.code !== 0) throw new Error(`weft waypoints failed: ${res.stderr}`);
  return (JSON.parse(res.stdout) as { items: WaypointJson[] }).items;
}

async function workloadJson(lab: LabHandle, ns: string): Promise<{ uid: string; enrolled: boolean; status: string; labels: Record<string, string> }[]> {
  const res = await lab.weft(['workloads', '-n', ns, '-o', 'json']);
  return (JSON.parse(res.stdout) as { items: { uid: string; enrolled: boolean; status: string; labels: Record<string, string> }[] }).items;
}

function run(): void {
  t.test('lab waypoints: from the topology and live; remove and down clean up', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-wp-topo-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const topology = join(dir, 'lab.yaml');
    writeFileSync(topology, `${readFileSync(defaultTopologyFile(), 'utf8')}\nwaypoints:\n  - { name: waypoint, namespace: demo, node: node-2 }\n`);
    const lab = await startLab(t, { topology });
    // startLab refuses a stale or missing build, so `weft waypoint run` is there: no silent downgrade.
    t.ok(built(DIST.waypoint), `${DIST.waypoint} is built`);

    await t.test('lab up made the topology\'s waypoint pod: netns, address, records, never enrolled', async (t) => {
      const w = lab.state()!.waypoints!.find((x) => x.uid === 'demo/waypoint')!;
      t.ok(w, 'recorded in the state file');
      t.equal(w.ip, '198.19.2.12', 'the next address of node-2, after echo-2 and legacy/echo-1');
      t.ok(existsSync('/run/netns/weft-pod-demo-waypoint'), 'its own pod netns');
      t.same(podAddresses('weft-pod-demo-waypoint'), ['198.19.2.12/32']);
      t.match(lab.upOutput, /waypoints: demo\/waypoint@198\.19\.2\.12/);
      const wl = (await workloadJson(lab, 'demo')).find((x) => x.uid === 'demo/waypoint')!;
      t.equal(wl.enrolled, false, 'never enrolled, in an ambient namespace');
      t.same(wl.labels, { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'weft.io/dataplane-mode': 'none' });
      const [item] = (await waypointsJson(lab)).filter((x) => x.name === 'waypoint');
      t.equal(item!.identity, 'spiffe://cluster.local/ns/demo/sa/waypoint');
      t.same(item!.pods.map((p) => `${p.node}/${p.name} ${p.addresses[0]}`), ['node-2/waypoint 198.19.2.12']);
    });

    await t.test('weft waypoint add starts a pod live on node-1; nothing else restarts', async (t) => {
      const before = lab.state()!.resources.flatMap((r) => (r.type === 'process' ? [`${r.name}:${r.pid}`] : []));
      const add = await lab.weft(['waypoint', 'add', 'demo/second', '--node', 'node-1', '--service-account', 'gw']);
      t.equal(add.code, 0, add.stderr);
      t.match(add.stdout, /It is ready \(its readiness endpoint answers 200\)/);
      t.match(add.stdout, /waypoint demo\/second added: pod on node-1 at 198\.19\.1\.13 \(netns weft-pod-demo-second\), identity spiffe:\/\/cluster\.local\/ns\/demo\/sa\/gw/);
      t.ok(existsSync('/run/netns/weft-pod-demo-second'));
      t.same(podAddresses('weft-pod-demo-second'), ['198.19.1.13/32']);
      t.match(nodeLinks('weft-node-1'), new RegExp(`${podLinkName('demo', 'second')}@`), 'its veth sits in node-1');
      const after = lab.state()!.resources.flatMap((r) => (r.type === 'process' ? [`${r.name}:${r.pid}`] : []));
      t.same(after.filter((p) => !p.startsWith('waypoint/demo/second:')), before, 'every other process keeps its PID');
      t.match(execFileSync('ip', ['-n', 'weft-node-1', 'route', 'get', '198.19.1.13'], { encoding: 'utf8' }),
        new RegExp(`dev ${podLinkName('demo', 'second')} src 198\\.18\\.0\\.11`), 'node-1 routes to it from the node address');
      // Its network works both ways: a request from inside it to a pod on the other node (outside the mesh).
      const answer = JSON.parse(execFileSync('ip', ['netns', 'exec', 'weft-pod-demo-second', process.execPath, DIST.main, 'lab', 'request', 'http://198.19.2.11:8080/'], { encoding: 'utf8' })) as { pod: string; peer: string };
      t.equal(answer.pod, 'echo-1', 'legacy/echo-1 answered');
      t.match(answer.peer, /^198\.19\.1\.13:\d+$/, 'and saw the waypoint pod\'s address');
      const items = await waypointsJson(lab);
      t.same(items.map((x) => `${x.namespace}/${x.name}`), ['demo/second', 'demo/waypoint']);
      const status = await lab.weft(['lab', 'status', '--json']);
      t.match(status.stdout, /"uid": "demo\/second"/, 'lab status lists the waypoint pod');
    });

    await t.test('readiness: Healthy once :15021/healthz/ready answers 200', async (t) => {
      const items = await waypointsJson(lab);
      for (const x of items) t.equal(x.readyPods, 1, `${x.namespace}/${x.name} has its pod ready`);
      const wl = (await workloadJson(lab, 'demo')).filter((x) => x.labels['gateway.networking.k8s.io/gateway-name']);
      t.same(wl.map((x) => x.status), ['Healthy', 'Healthy']);
      const st = await lab.weft(['status', '-o', 'json']);
      t.match(JSON.parse(st.stdout).waypoints, [{ name: 'second', status: 'ready' }, { name: 'waypoint', status: 'ready' }]);
    });

    await t.test('restart: stop marks the pod Unhealthy, start brings it back ready', async (t) => {
      const stop = await lab.weft(['lab', 'waypoint', 'demo/waypoint', 'stop', '--signal', 'SIGKILL']);
      t.equal(stop.code, 0, stop.stderr);
      t.match(stop.stdout, /waypoint demo\/waypoint \(pid \d+\) stopped with SIGKILL/);
      t.equal((await waypointsJson(lab)).find((x) => x.name === 'waypoint')!.readyPods, 0, 'no ready pod while stopped');
      const start = await lab.weft(['lab', 'waypoint', 'demo/waypoint', 'start']);
      t.equal(start.code, 0, start.stderr);
      t.equal((await waypointsJson(lab)).find((x) => x.name === 'waypoint')!.readyPods, 1, 'ready again');
    });

    await t.test('remove is refused while the namespace uses it; then it removes pod, veth and records', async (t) => {
      const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'second']);
      t.equal(use.code, 0, use.stderr);
      const refused = await lab.weft(['waypoint', 'remove', 'demo/second']);
      t.equal(refused.code, 1);
      t.match(refused.stderr, /still used by namespace demo.*\[WEFT_WAYPOINT_IN_USE\]/);
      t.ok(existsSync('/run/netns/weft-pod-demo-second'), 'nothing removed');
      t.equal((await lab.weft(['namespace', 'use-waypoint', 'demo', 'none'])).code, 0);

      const rm = await lab.weft(['waypoint', 'remove', 'demo/second']);
      t.equal(rm.code, 0, rm.stderr);
      t.notOk(existsSync('/run/netns/weft-pod-demo-second'), 'netns gone');
      t.notOk(existsSync('/etc/netns/weft-pod-demo-second'), '/etc/netns entry gone');
      t.notMatch(nodeLinks('weft-node-1'), new RegExp(podLinkName('demo', 'second')), 'veth gone from node-1');
      t.same((await waypointsJson(lab)).map((x) => x.name), ['waypoint'], 'records gone');
      t.notOk((await workloadJson(lab, 'demo')).some((x) => x.uid === 'demo/second'));
      const state = lab.state()!;
      t.notOk(state.resources.some((r) => 'name' in r && String(r.name).includes('demo-second')), 'nothing of it recorded');
      t.notOk(existsSync(join(lab.labDir, 'run', 'waypoint-demo-second.token')), 'token file gone');
    });

    await t.test('an add whose process dies at start-up fails naming its log and leaves nothing', async (t) => {
      // The waypoint inherits the CLI's environment: an invalid log level makes it exit at once.
      const res = await runWeft(['waypoint', 'add', 'demo/broken', '--node', 'node-1'], { ...lab.env, WEFT_LOG_LEVEL: 'shouting' });
      t.equal(res.code, 1);
      t.match(res.stderr, /waypoint demo\/broken: waypoint\/demo\/broken exited during start-up; its log .*waypoint-demo-broken\.log ends with/);
      t.notOk(existsSync('/run/netns/weft-pod-demo-broken'), 'netns removed');
      t.notOk((await workloadJson(lab, 'demo')).some((x) => x.uid === 'demo/broken'), 'records removed');
      t.notOk(lab.state()!.resources.some((r) => 'name' in r && String(r.name).includes('broken')), 'nothing recorded');
    });

    await t.test('lab down removes the waypoint pods with the rest', async (t) => {
      const res = await lab.down();
      t.equal(res.code, 0);
      t.notOk(existsSync('/run/netns/weft-pod-demo-waypoint'), 'topology waypoint netns gone');
      t.notOk(existsSync('/etc/netns/weft-pod-demo-waypoint'));
    });
  });
}
