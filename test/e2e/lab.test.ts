// The lab end to end, on real namespaces (root): up from clean, traffic between pods
// across nodes and through service VIPs, names inside pods, status, exec, and down,
// also after a simulated crash. Cleans up in teardown, also on failure.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { LAB_NET } from '../../src/lab/plan';
import { isAlive } from '../../src/lab/procs';
import { recordedLabDir, type LabState, type ProcessResource } from '../../src/lab/state';
import type { LabStatus } from '../../src/lab/status';
import { labSkipReason, startLab } from './helpers/lab';

const skip = labSkipReason();
if (skip) {
  t.plan(0, `lab e2e: ${skip}`);
} else {
  run();
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** What must be gone after down: every name the lab's plan uses, and its processes. */
function leftovers(state: LabState): string[] {
  const { plan } = state;
  const netns = new Set(listDir('/run/netns'));
  const links = new Set(listDir('/sys/class/net'));
  const left: string[] = [];
  for (const n of [...plan.nodes.map((x) => x.netns), ...plan.pods.map((x) => x.netns)]) {
    if (netns.has(n)) left.push(`netns ${n}`);
    if (existsSync(`/etc/netns/${n}`)) left.push(`/etc/netns/${n}`);
  }
  for (const l of [LAB_NET.bridge, ...plan.nodes.map((x) => x.hostLink)]) if (links.has(l)) left.push(`link ${l}`);
  for (const p of state.resources.filter((r): r is ProcessResource => r.type === 'process')) if (isAlive(p)) left.push(`process ${p.name} ${p.pid}`);
  return left;
}

/** The root namespace's filter table, where only the lab's FORWARD helper chain could live. */
function rootFilterRules(): string {
  return execFileSync('iptables-save', ['-t', 'filter'], { encoding: 'utf8' });
}

function waitForLinksGone(state: LabState): Promise<string[]> {
  // Deleting a netns frees its links asynchronously in the kernel; root-side veths are
  // deleted synchronously by down, so this only waits for stragglers, briefly.
  return new Promise((resolve) => {
    let tries = 0;
    const check = () => {
      const left = leftovers(state);
      if (left.length === 0 || ++tries > 50) resolve(left);
      else setTimeout(check, 20);
    };
    check();
  });
}

function run(): void {
  t.test('lab: up, traffic, names, status, exec, down, crash recovery', async (t) => {
    const lab = await startLab(t);
    const state = lab.state()!;
    t.equal(state.phase, 'up');
    t.match(lab.upOutput, /lab up in \d+\.\d+s/);
    // startLab refuses a missing build, so the ztunnels must have run: no silent downgrade.
    const withZtunnels = Boolean(state.ztunnels);
    t.ok(withZtunnels, 'the ztunnels run: demo traffic goes through them');

    await t.test('the context file describes the lab', async (t) => {
      const ctx = lab.context;
      t.equal(ctx.kind, 'lab');
      t.equal(ctx.redisUrl, 'redis://127.0.0.1:16379');
      t.equal(ctx.caAddress, '198.18.0.1:15012');
      t.equal(ctx.labDir, lab.labDir);
      t.same(ctx.nodes.map((n) => [n.name, n.address, n.netns]), [['node-1', '198.18.0.11', 'weft-node-1'], ['node-2', '198.18.0.12', 'weft-node-2']]);
    });

    await t.test('status reports every node, pod and process healthy', async (t) => {
      const res = await lab.weft(['lab', 'status', '--json']);
      t.equal(res.code, 0, res.stderr);
      const s = JSON.parse(res.stdout) as LabStatus;
      t.ok(s.healthy);
      t.same(s.nodes.map((n) => n.netnsExists), [true, true]);
      t.same(s.pods.map((p) => [p.uid, p.ip]), [
        ['demo/client', '198.19.1.10'], ['demo/echo-1', '198.19.1.11'], ['demo/echo-2', '198.19.2.10'],
        ['legacy/client', '198.19.1.12'], ['legacy/echo-1', '198.19.2.11'],
      ]);
      const names = s.processes.map((p) => p.name);
      t.ok(names.includes('redis') && names.includes('app/demo/echo-2'));
      t.ok(names.includes('ztunnel/node-1') && names.includes('ztunnel/node-2'));
      t.ok(s.processes.every((p) => p.alive && p.ready));
      const text = await lab.weft(['lab', 'status']);
      t.match(text.stdout, /healthy/);
      t.match(text.stdout, /demo\/echo-2\s+node-2\s+198\.19\.2\.10/);
    });

    await t.test('legacy pods reach each other across nodes, by pod IP and by VIP', async (t) => {
      const direct = await lab.request('legacy/client', 'http://198.19.2.11:8080/direct');
      t.same([direct.namespace, direct.pod, direct.node, direct.path], ['legacy', 'echo-1', 'node-2', '/direct']);
      t.equal(direct.peer.split(':')[0], '198.19.1.12', 'the app sees the client pod IP');
      const viaVip = await lab.request('legacy/client', `http://198.18.128.11/`);
      t.equal(viaVip.pod, 'echo-1');
      t.equal(viaVip.local, '198.19.2.11:8080', 'VIP:80 was translated to the endpoint:8080');
      const tcp = await lab.tcp('legacy/client', 'echo.legacy:9000', 1_000_000);
      t.ok(tcp.match, 'byte-exact TCP through the VIP');
      t.equal(tcp.received, 1_000_000);
    });

    await t.test('demo pods reach the service on both nodes', async (t) => {
      const seen = new Set<string>();
      for (let i = 0; i < 40 && seen.size < 2; i++) {
        const a = await lab.request('demo/client', 'http://echo.demo/');
        t.equal(a.namespace, 'demo');
        seen.add(`${a.pod}@${a.node}`);
        // Through ztunnels the app's peer is the delivering node (routes to pods carry
        // src = node address); without them, the client pod itself.
        const expectedPeer = withZtunnels ? lab.context.nodes.find((n) => n.name === a.node)!.address : '198.19.1.10';
        t.equal(a.peer.split(':')[0], expectedPeer, `peer of ${a.pod}`);
      }
      t.same([...seen].sort(), ['echo-1@node-1', 'echo-2@node-2'], 'both endpoints answered');
      const tcp = await lab.tcp('demo/client', 'echo.demo:9000', 2_000_000);
      t.ok(tcp.match, 'byte-exact TCP through the demo VIP');
    });

    await t.test('names resolve inside pods; the bare name only in its namespace', async (t) => {
      // Lookups only: all at once (each is a `weft lab exec`, a process start or two).
      const names = ['echo.demo', 'echo.demo.svc', 'echo.demo.svc.cluster.local', 'echo'];
      const [demo, [legacy, unknown, hosts]] = await Promise.all([
        Promise.all(names.map((name) => lab.exec('demo/client', ['getent', 'hosts', name]))),
        Promise.all([
          lab.exec('legacy/client', ['getent', 'hosts', 'echo']),
          lab.exec('demo/client', ['getent', 'hosts', 'example.com']),
          lab.exec('demo/client', ['cat', '/etc/hosts']),
        ]),
      ]);
      names.forEach((name, i) => {
        t.equal(demo[i]!.code, 0, `${name} resolves`);
        t.match(demo[i]!.stdout, /^198\.18\.128\.10\s/, `${name} -> demo VIP`);
      });
      t.match(legacy!.stdout, /^198\.18\.128\.11\s/, 'echo in legacy -> legacy VIP');
      t.not(unknown!.code, 0, 'names outside the lab do not resolve');
      t.match(hosts!.stdout, /Written by weft lab/, 'the pod sees its own /etc/hosts');
    });

    await t.test('nothing leaves the lab; the root namespace does not forward', async (t) => {
      // Independent probes: all at once.
      const [out, mesh, fwd, routes] = await Promise.all([
        lab.exec('legacy/client', ['weft', 'lab', 'request', 'http://192.0.2.1/', '--timeout', '3s']),
        lab.exec('demo/client', ['weft', 'lab', 'request', 'http://192.0.2.1/', '--timeout', '3s']),
        lab.exec('node-1', ['cat', '/proc/sys/net/ipv4/ip_forward']),
        lab.exec('node-1', ['ip', 'route']),
      ]);
      // legacy is not captured: the kernel answers at once that there is no route.
      t.equal(out.code, 1);
      t.match(out.stderr, /EHOSTUNREACH|ENETUNREACH/, 'no route beyond the lab: fails at once');
      // demo may be captured by its ztunnel, which then fails to dial out: refused or reset, never a timeout.
      t.equal(mesh.code, 1);
      t.match(mesh.stderr, /EHOSTUNREACH|ENETUNREACH|ECONNRESET|ECONNREFUSED|socket hang up/, 'fails without leaving the lab');
      t.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), '0', 'root ip_forward untouched');
      t.equal(fwd.stdout.trim(), '1', 'node netns forwards');
      t.notMatch(routes.stdout, /^default/m, 'no default route in a node');
    });

    await t.test('exec passes stdio and the exit status through; bad targets are usage errors', async (t) => {
      const res = await lab.exec('demo/echo-2', ['sh', '-c', 'echo "$WEFT_POD $WEFT_NAMESPACE $WEFT_NODE"; ip -4 -o addr show dev eth0; exit 7']);
      t.equal(res.code, 7);
      t.match(res.stdout, /^echo-2 demo node-2\n/);
      t.match(res.stdout, /inet 198\.19\.2\.10\/32/);
      const bad = await lab.weft(['lab', 'exec', 'demo/nope', '--', 'true']);
      t.equal(bad.code, 2);
      t.match(bad.stderr, /no pod or node "demo\/nope".*WEFT_USAGE/);
    });

    await t.test('a second lab cannot start over this one; this one is untouched', async (t) => {
      const other = await lab.weft(['lab', 'up', '--lab-dir', `${lab.labDir}-other`, '--context', `${lab.labDir}-other/context.json`]);
      t.equal(other.code, 1);
      t.match(other.stderr, /WEFT_LAB_CONFLICT/);
      t.match(other.stderr, /network namespace weft-node-1 exists/);
      // A killed run in another checkout leaves its lab up; the refusal names that directory.
      t.equal(recordedLabDir(), lab.labDir, 'up records its directory machine-wide');
      t.match(other.stderr, `run \`WEFT_LAB_DIR=${lab.labDir} scripts/lab down\``);
      const s = await lab.weft(['lab', 'status']);
      t.equal(s.code, 0, 'still healthy');
    });

    await t.test('down removes everything it made; down again is a no-op', async (t) => {
      const before = lab.state()!;
      const res = await lab.down();
      t.match(res.stdout, /lab down in/);
      t.same(await waitForLinksGone(before), []);
      t.notOk(existsSync(lab.contextFile), 'context file removed');
      t.notMatch(rootFilterRules(), /WEFT-LAB-FORWARD/, 'root FORWARD helper chain removed');
      t.equal(lab.state(), undefined, 'state file removed');
      t.equal(recordedLabDir(), undefined, 'machine-wide record of the directory removed');
      const again = await lab.down();
      t.match(again.stdout, /nothing to remove/);
    });

    await t.test('after a crash (processes killed, namespaces left), up replaces and down cleans', async (t) => {
      const up1 = await lab.weft(['lab', 'up']);
      t.equal(up1.code, 0, up1.stderr);
      const crashed = lab.state()!;
      const procs = crashed.resources.filter((r): r is ProcessResource => r.type === 'process');
      for (const p of procs) process.kill(p.pid!, 'SIGKILL');
      const status = await lab.weft(['lab', 'status']);
      t.equal(status.code, 1, 'status reports the crash');
      t.match(status.stdout, /DEGRADED/);
      t.match(status.stdout, /DEAD/);

      const up2 = await lab.weft(['lab', 'up']);
      t.equal(up2.code, 0, up2.stderr);
      t.match(up2.stdout, /previous lab is recorded: tearing it down first/);
      const a = await lab.request('legacy/client', 'http://echo.legacy/');
      t.equal(a.pod, 'echo-1', 'the replacement lab works');

      const second = lab.state()!;
      for (const p of second.resources.filter((r): r is ProcessResource => r.type === 'process')) process.kill(p.pid!, 'SIGKILL');
      const res = await lab.down();
      t.equal(res.code, 0);
      t.same(await waitForLinksGone(second), [], 'nothing left after down following a crash');
      t.same(await waitForLinksGone(crashed), []);
    });
  });
}
