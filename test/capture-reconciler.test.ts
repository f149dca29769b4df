// The ztunnel's capture reconciler against real iptables and ip6tables in throwaway
// network namespaces: a dual-stack enrolled pod (which made capture throw, so the
// ztunnel exited at start), readiness only once the rules are read back, rules kept
// on stop, drift repaired, and removal only on an explicit uninstall.
import t, { type Test } from 'tap';
import { silentLogger } from '../src/lib/log';
import { ambientNamespace, nodeRecord, serviceRecord, workloadRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import { ExecCommandRunner, type CommandRunner, type RunOptions, type RunResult } from '../src/iptables/runner';
import { WeftError } from '../src/lib/errors';
import { CaptureReconciler } from '../src/ztunnel/capture';
import { createTopology, netnsSkipReason, type StartNodeOptions } from './helpers/netns';
import { assertNativeBuilt, NATIVE } from './helpers/built';
import { waitFor } from './helpers/wait';

const skip = netnsSkipReason();
if (skip) t.plan(0, skip);
else assertNativeBuilt();

const runner = new ExecCommandRunner();
const NODE = '203.0.113.1';
const EXT = '203.0.113.2';
const NODE6 = 'fd00:7eff::1';
const EXT6 = 'fd00:7eff::2';
const A = '198.51.100.10';
const A6 = 'fd00:7eff:1::a';
const VIP = '198.51.100.50';
const VIP6 = 'fd00:7eff:1::50';

/** Answers each connection with the listener and the client it saw: argv = addr, ports... */
const SERVER = `
const net = require('node:net');
const [name, addr, ...ports] = process.argv.slice(1);
let n = 0;
for (const port of ports) net.createServer((s) => {
  s.on('error', () => {});
  s.end(JSON.stringify({ server: name, port: Number(port), remote: s.remoteAddress }) + '\\n');
}).listen(Number(port), addr, () => { if (++n === ports.length) console.log('listening'); });
`;

/** Connects to argv host port; prints the answer or the error code. */
const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect(Number(port), host);
let buf = '';
s.setTimeout(5000, () => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(0); });
s.on('data', (d) => { buf += d; });
s.on('end', () => { console.log(buf.trim()); process.exit(0); });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
`;

type Answer = { server?: string; port?: number; remote?: string; error?: string; orig?: { ip?: string; port?: number; error?: string } };

/** Node + external host + one dual-stack pod, wired like the lab (IPv6 only inside these namespaces). */
async function dualStackNode(t: Test, ztunnel: StartNodeOptions) {
  const topo = await createTopology(t);
  const node = await topo.addNetns('node');
  const ext = await topo.addNetns('ext');
  const up = await topo.addVeth({ netns: node }, { netns: ext });
  await topo.sysctl(node, 'net.ipv4.ip_forward', 1);
  // IPv6 forwarding only inside the throwaway node namespace.
  await topo.sysctl(node, 'net.ipv6.conf.all.forwarding', 1);
  await topo.addAddress(node, up.a, `${NODE}/24`);
  await topo.addAddress(ext, up.b, `${EXT}/24`);
  await topo.exec(node, 'ip', ['-6', 'addr', 'add', `${NODE6}/64`, 'dev', up.a, 'nodad']);
  await topo.exec(ext, 'ip', ['-6', 'addr', 'add', `${EXT6}/64`, 'dev', up.b, 'nodad']);
  await topo.addRoute(ext, ['198.51.100.0/24', 'via', NODE]);
  await topo.exec(ext, 'ip', ['-6', 'route', 'add', 'fd00:7eff:1::/64', 'via', NODE6]);
  const pod = await topo.addPod(node, { label: 'pod-a', ip: A });
  await topo.exec(pod.netns, 'ip', ['-6', 'addr', 'add', `${A6}/128`, 'dev', 'eth0', 'nodad']);
  await topo.exec(node, 'ip', ['-6', 'addr', 'add', 'fe80::1/64', 'dev', pod.hostIf, 'nodad']);
  await topo.exec(pod.netns, 'ip', ['-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0']);
  await topo.exec(node, 'ip', ['-6', 'route', 'add', `${A6}/128`, 'dev', pod.hostIf]);

  const servers = [
    topo.startNode(node, ztunnel),
    topo.startNode(ext, { script: SERVER, args: ['ext', '::', '8080'], typescript: false }),
    topo.startNode(pod.netns, { script: SERVER, args: ['pod-a', '::', '8080'], typescript: false }),
  ];
  await Promise.all(servers.map((s) => s.waitForLine(/^listening$/)));
  const dial = async (netns: string, host: string, port = 8080): Promise<Answer> =>
    JSON.parse((await topo.exec(netns, process.execPath, ['-e', CLIENT, host, String(port)], { timeoutMs: 15_000 })).stdout) as Answer;

  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({
    node: [nodeRecord('node-1', NODE)], namespace: [ambientNamespace('demo')],
    workload: [workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: [A, A6] })],
    service: [], policy: [], peerauth: [],
  }, 1);
  return { topo, node, ext, pod, dial, state };
}

t.test('a dual-stack enrolled pod: IPv4 captured, IPv6 refused both ways, never a crash', async (t) => {
  const { node, ext, pod, dial, state } = await dualStackNode(t, { script: SERVER, args: ['ztunnel', NODE, '15001', '15006', '15008'], typescript: false });
  t.same(await dial(pod.netns, EXT6), { server: 'ext', port: 8080, remote: A6 }, 'before capture: IPv6 from the pod goes straight out');
  t.same(await dial(ext, A6), { server: 'pod-a', port: 8080, remote: EXT6 }, 'and straight in');

  const capture = new CaptureReconciler({
    state, nodeName: 'node-1', listenAddresses: [NODE], logger: silentLogger(), netns: node, verifyIntervalMs: 50,
  });
  t.teardown(() => capture.remove().catch(() => {}));
  await capture.start();
  t.equal(capture.verified, true, 'started, and the rules read back in force (readiness)');

  t.same(await dial(pod.netns, EXT), { server: 'ztunnel', port: 15001, remote: A }, 'IPv4 egress captured to 15001');
  t.same(await dial(pod.netns, EXT6), { error: 'ECONNREFUSED' }, 'IPv6 egress refused: no IPv6 listen address to capture it to, and no plaintext');
  t.same(await dial(ext, A6), { error: 'ECONNREFUSED' }, 'IPv6 ingress refused too');
  t.same(await dial(ext, A), { server: 'ztunnel', port: 15006, remote: EXT }, 'IPv4 ingress captured to 15006');

  const save = async (cmd: string, table: string) => (await runner.run(cmd, ['-t', table], { netns: node })).stdout;
  t.match(await save('ip6tables-save', 'filter'), /-A FORWARD -j WEFT-FORWARD[\s\S]*-A WEFT-FORWARD -d fd00:7eff:1::a\/128 .*REJECT[\s\S]*-A WEFT-FORWARD -s fd00:7eff:1::a\/128 .*REJECT/);

  await t.test('drift (someone deletes our jump) is found and repaired', async (t) => {
    await runner.run('iptables', ['-t', 'nat', '-D', 'PREROUTING', '-j', 'WEFT-PREROUTING'], { netns: node });
    await waitFor('the jump is back', async () => /-A PREROUTING -j WEFT-PREROUTING/.test(await save('iptables-save', 'nat')), { timeoutMs: 10_000, intervalMs: 50 });
    await waitFor('verified again', async () => capture.verified, { timeoutMs: 10_000, intervalMs: 50 });
    t.same(await dial(pod.netns, EXT), { server: 'ztunnel', port: 15001, remote: A }, 'captured again');
  });

  await t.test('stop() keeps the rules (fail closed); remove() takes them all', async (t) => {
    await capture.stop();
    t.match(await save('iptables-save', 'nat'), /-A WEFT-PREROUTING -s 198\.51\.100\.10\/32/);
    t.match(await save('ip6tables-save', 'filter'), /WEFT-FORWARD/);
    t.same(await dial(pod.netns, EXT6), { error: 'ECONNREFUSED' }, 'still refused');
    await capture.remove();
    for (const [cmd, table] of [['iptables-save', 'nat'], ['iptables-save', 'filter'], ['ip6tables-save', 'nat'], ['ip6tables-save', 'filter']] as const) {
      t.notMatch(await save(cmd, table), /WEFT/, `${cmd} -t ${table}: nothing left`);
    }
    t.same(await dial(pod.netns, EXT6), { server: 'ext', port: 8080, remote: A6 }, 'IPv6 direct again');
  });
});

/** A stand-in ztunnel on both families: answers with the kernel's original destination (native helper). */
const NATIVE_SERVER = `
const net = require('node:net');
const native = require(${JSON.stringify(NATIVE)}).originalDst;
const addrs = process.argv.slice(1);
let n = 0;
for (const addr of addrs) for (const port of [15001, 15006, 15008]) net.createServer((s) => {
  s.on('error', () => {});
  let orig;
  try { orig = native(s._handle.fd); } catch (e) { orig = { error: e.code }; }
  s.end(JSON.stringify({ server: 'ztunnel', port, remote: s.remoteAddress, orig }) + '\\n');
}).listen(port, addr, () => { if (++n === addrs.length * 3) console.log('listening'); });
`;

t.test('with an IPv6 listen address, IPv6 is captured exactly like IPv4 (ip6tables, IP6T_SO_ORIGINAL_DST)', async (t) => {
  const { node, ext, pod, dial, state } = await dualStackNode(t, { script: NATIVE_SERVER, args: [NODE, NODE6], typescript: false });
  // A dual-stack Service with pod-a behind both ClusterIPs (inside the routed pod ranges).
  state.applyChanges([
    { op: 'put', kind: 'workload', key: 'demo/a', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: [A, A6], labels: { app: 'a' } }) },
    { op: 'put', kind: 'service', key: 'demo/a', record: serviceRecord({ namespace: 'demo', name: 'a', vips: [VIP, VIP6], selector: { app: 'a' } }) },
  ], 2);
  const capture = new CaptureReconciler({ state, nodeName: 'node-1', listenAddresses: [NODE, NODE6], logger: silentLogger(), netns: node });
  t.teardown(() => capture.remove().catch(() => {}));
  await capture.start();
  t.equal(capture.verified, true);
  t.same(await dial(ext, VIP, 80), { server: 'ztunnel', port: 15006, remote: EXT, orig: { ip: VIP, port: 80 } }, 'IPv4 ClusterIP of a local enrolled endpoint → 15006 (ahead of kube-proxy)');
  t.same(await dial(ext, VIP6, 80), { server: 'ztunnel', port: 15006, remote: EXT6, orig: { ip: VIP6, port: 80 } }, 'its IPv6 ClusterIP too, never kube-proxy\'s uncaptured path');
  t.same(await dial(pod.netns, EXT6), { server: 'ztunnel', port: 15001, remote: A6, orig: { ip: EXT6, port: 8080 } }, 'IPv6 egress → [node]:15001, original destination from the kernel');
  t.same(await dial(pod.netns, EXT), { server: 'ztunnel', port: 15001, remote: A, orig: { ip: EXT, port: 8080 } }, 'IPv4 egress as before');
  t.same(await dial(ext, A6), { server: 'ztunnel', port: 15006, remote: EXT6, orig: { ip: A6, port: 8080 } }, 'IPv6 plaintext ingress → 15006');
  t.same(await dial(ext, A6, 15008), { server: 'ztunnel', port: 15008, remote: EXT6, orig: { ip: A6, port: 15008 } }, 'IPv6 HBONE → 15008');
  const self = await dial(pod.netns, NODE6, 15001);
  t.same(self.orig, { ip: NODE6, port: 15001 }, 'the node IPv6 address is not captured (RETURN): no DNAT, the original destination is the node itself');
  const save = (await new ExecCommandRunner().run('ip6tables-save', ['-t', 'nat'], { netns: node })).stdout;
  t.match(save, /-A PREROUTING -j WEFT-PREROUTING/, 'ip6tables holds the same chains');
  t.match(save, /-A WEFT-OUTBOUND -d fe80::\/10 .*-j RETURN/);
});

/** The real runner, counting the read-backs (`*-save`) and able to make them fail. */
class SaveCountingRunner implements CommandRunner {
  saves = 0;
  failSaves = false;
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    if (cmd.endsWith('-save')) {
      this.saves++;
      if (this.failSaves) return Promise.reject(new WeftError('WEFT_COMMAND_FAILED', `${cmd} failed (test): cannot read the table`));
    }
    return runner.run(cmd, args, opts);
  }
}

/** A bare node namespace (the rules need no interfaces) and one enrolled IPv4 pod. */
async function bareNode(t: Test) {
  const topo = await createTopology(t);
  const node = await topo.addNetns('node');
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({
    node: [nodeRecord('node-1', NODE)], namespace: [ambientNamespace('demo')],
    workload: [workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: [A] })],
    service: [], policy: [], peerauth: [],
  }, 1);
  return { node, state };
}

/** A started reconciler on a bare node whose iptables-save calls are counted (and can be made to fail). */
async function countingReconciler(t: Test, verifyIntervalMs: number) {
  const { node, state } = await bareNode(t);
  const counting = new SaveCountingRunner();
  const capture = new CaptureReconciler({
    state, nodeName: 'node-1', listenAddresses: [NODE], logger: silentLogger(), netns: node, runner: counting, verifyIntervalMs,
  });
  t.teardown(() => capture.remove().catch(() => {}));
  await capture.start();
  t.equal(capture.verified, true);
  return { state, counting, capture };
}

t.test('a failed read-back takes readiness down (and it comes back with the rules)', async (t) => {
  const { counting, capture } = await countingReconciler(t, 20);
  counting.failSaves = true;
  await waitFor('readiness down after iptables-save failed', () => !capture.verified, { timeoutMs: 5_000 });
  t.match(capture.lastError, /could not be read back.*cannot read the table/);
  counting.failSaves = false;
  await waitFor('ready again once the rules can be read', () => capture.verified, { timeoutMs: 5_000 });
  t.equal(capture.lastError, undefined);
});

t.test('a registry change that changes no rule here reads nothing back; one that does, does', async (t) => {
  // The periodic check never runs during this test: only reconcile passes read back.
  const { state, counting, capture } = await countingReconciler(t, 600_000);
  const saves = counting.saves;
  const passes = capture.passes;
  const elsewhere = workloadRecord({ namespace: 'demo', name: 'far', node: 'node-2', addresses: ['198.51.100.99'] });
  state.applyChanges([{ op: 'put', kind: 'workload', key: elsewhere.uid, record: elsewhere }], 2);
  await waitFor('the change was reconciled', () => capture.passes === passes + 1, { timeoutMs: 5_000 });
  t.equal(counting.saves, saves, 'a pod on another node: no iptables-save');
  t.equal(capture.verified, true);

  const here = workloadRecord({ namespace: 'demo', name: 'b', node: 'node-1', addresses: ['198.51.100.11'] });
  const applies = capture.applies;
  state.applyChanges([{ op: 'put', kind: 'workload', key: here.uid, record: here }], 3);
  await waitFor('the new pod was applied', () => capture.applies === applies + 1, { timeoutMs: 5_000 });
  await capture.stop(); // waits for the pass to finish (verify included)
  t.equal(capture.verified, true);
  t.equal(counting.saves - saves, 4, 'IPv4 nat and filter changed: each read before its restore, then both read back');
});
