// A section of test/e2e/mesh.test.ts (it was test/e2e/capture-restart.test.ts, with a lab
// of its own). Capture fails closed across ztunnel restarts, and NodePort traffic cannot reach a
// mesh pod uncaptured. Before: a graceful stop removed the capture rules (a plaintext
// window on every rolling update), a SIGKILL left them behind for the next ztunnel to
// stumble over, and <node>:<NodePort> was DNAT'ed by kube-proxy straight to the pod.
import type { Test } from 'tap';
import { connect } from 'node:net';
import type { LabHandle } from '../helpers/lab';
import { captureRules } from '../../../src/faults/observe';
import { Tcpdump } from '../../../src/faults/wire';
import { isAlive } from '../../../src/lab/procs';
import { waitFor } from '../../helpers/wait';
import type { ProcessResource } from '../../../src/lab/state';

/** Connects from the root namespace (outside the cluster) and sends one HTTP GET. */
function get(host: string, port: number): Promise<{ pod?: string; peer?: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let body = '';
    s.setTimeout(5000, () => { s.destroy(); resolve({ error: 'timeout' }); });
    s.on('connect', () => s.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    s.on('data', (d: Buffer) => { body += d.toString(); });
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    s.on('end', () => {
      try {
        const a = JSON.parse(body.slice(body.indexOf('\r\n\r\n') + 4)) as { pod: string; peer: string };
        resolve({ pod: a.pod, peer: a.peer });
      } catch {
        resolve({ error: `bad answer: ${body.slice(0, 80)}` });
      }
    });
  });
}

/** On the mesh lab (test/e2e/mesh.test.ts); node-1's ztunnel ends running with the rules it began with. */
export function section(t: Test, lab: LabHandle): Promise<unknown> {
  return t.test('capture fails closed across ztunnel restarts; NodePort to a mesh pod is refused', async (t) => {
    const ctx = lab.context;
    const pod = (uid: string) => ctx.pods.find((p) => p.uid === uid)!;
    const node1 = ctx.nodes.find((n) => n.name === 'node-1')!;
    const node2 = ctx.nodes.find((n) => n.name === 'node-2')!;
    const client = pod('demo/client');
    const echo1 = pod('demo/echo-1');
    const echo2 = pod('demo/echo-2');
    const demoEcho = ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
    const legacyEcho = ctx.services.find((s) => s.namespace === 'legacy' && s.name === 'echo')!;
    const demoNodePort = demoEcho.ports.find((p) => p.nodePort)!.nodePort!;
    const legacyNodePort = legacyEcho.ports.find((p) => p.nodePort)!.nodePort!;
    const vipUrl = `http://${demoEcho.vip}/`;

    const works = async (t: Test, what: string) => {
      const a = await lab.request('demo/client', vipUrl);
      t.ok(a.pod === 'echo-1' || a.pod === 'echo-2', `${what}: demo/client → echo.demo answered by ${a.pod}`);
      t.notOk(a.peer?.startsWith(`${client.ip}:`), `${what}: delivered by a ztunnel, not by the client itself`);
    };
    const fails = async (t: Test, what: string, from: string, url: string) => {
      const r = await lab.exec(from, ['weft', 'lab', 'request', url, '--timeout', '3s']);
      t.not(r.code, 0, `${what}: ${from} → ${url} fails`);
      t.match(r.stderr, /ECONNREFUSED|ECONNRESET|socket hang up/, `${what}: refused at once (nothing listens on the captured port), not timed out: ${r.stderr.trim().split('\n')[0]}`);
    };

    await t.test('NodePort: to a mesh pod refused (PERMISSIVE included), to a pod outside the mesh untouched', async (t) => {
      t.same(await get(node1.address, demoNodePort), { error: 'ECONNREFUSED' }, `${node1.address}:${demoNodePort} → echo-1 (mesh, same node) refused`);
      t.same(await get(node2.address, demoNodePort), { error: 'ECONNREFUSED' }, `${node2.address}:${demoNodePort} → echo-2 refused`);
      const legacy = await get(node2.address, legacyNodePort);
      t.equal(legacy.pod, 'echo-1', `${node2.address}:${legacyNodePort} → legacy/echo-1 (outside the mesh) answers`);
      t.match(legacy.peer, /^198\.18\.0\.1:/, 'and sees the outside client itself, as kube-proxy with externalTrafficPolicy: Local');
      const r = await lab.exec('legacy/client', ['weft', 'lab', 'request', `http://${node1.address}:${demoNodePort}/`, '--timeout', '3s']);
      t.not(r.code, 0, 'also from a pod on the same node');
    });

    await works(t, 'before');
    const before = await captureRules(node1.netns);
    t.match(before, /-A PREROUTING -j WEFT-PREROUTING/, 'capture jump in place');
    t.match(before, /-A FORWARD -j WEFT-FORWARD/, 'guard jump in place');

    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      await t.test(`${signal}: while node-1 has no ztunnel, enrolled traffic is refused and nothing leaves in plaintext`, async (t) => {
        const proc = lab.state()!.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === 'ztunnel/node-1')!;
        t.ok(isAlive(proc), `the ztunnel the lab started runs (pid ${proc.pid})`);
        // The root-side end of node-1's veth: everything node-1 sends to the cluster
        // network (a bridge device itself only shows frames for the host).
        const uplink = lab.state()!.plan.nodes.find((n) => n.name === 'node-1')!.hostLink;
        const sniffers = [
          new Tcpdump(uplink, `tcp and src host ${client.ip}`),
          new Tcpdump('eth0', `tcp and src host ${client.ip}`, { netns: echo1.netns }),
          new Tcpdump('eth0', `tcp and src host ${client.ip}`, { netns: echo2.netns }),
          // Control: plaintext that is *supposed* to cross the bridge is seen.
          new Tcpdump(uplink, `tcp and src host ${pod('legacy/client').ip}`),
        ];
        t.teardown(() => Promise.all(sniffers.map((s) => s.stop().catch(() => []))));
        await Promise.all(sniffers.map((s) => s.started()));

        process.kill(proc.pid!, signal);
        // Bounded: a ztunnel that ignores the signal fails here, naming it, instead of hanging the run.
        await waitFor(`ztunnel/node-1 (pid ${proc.pid}) exits on ${signal}`, () => !isAlive(proc), { timeoutMs: 20_000, intervalMs: 20 });
        t.equal(await captureRules(node1.netns), before, 'the capture rules stayed exactly as they were');

        await fails(t, 'ztunnel down', 'demo/client', vipUrl);
        await fails(t, 'ztunnel down', 'demo/client', `http://${echo2.ip}:8080/`);
        await fails(t, 'ztunnel down', 'demo/client', `http://${echo1.ip}:8080/`);
        await fails(t, 'ztunnel down (inbound capture)', 'legacy/client', `http://${echo1.ip}:8080/`);
        t.same(await get(node1.address, demoNodePort), { error: 'ECONNREFUSED' }, 'NodePort still refused');
        const control = await lab.exec('legacy/client', ['weft', 'lab', 'request', `http://echo.legacy/`, '--timeout', '3s']);
        t.equal(control.code, 0, 'control: legacy/client → legacy echo (outside the mesh) works meanwhile');

        const [bridge, atEcho1, atEcho2, controlSeen] = await Promise.all(sniffers.map((s) => s.stop()));
        t.same(bridge, [], 'no packet from demo/client left node-1');
        t.same(atEcho1, [], 'none reached echo-1');
        t.same(atEcho2, [], 'none reached echo-2');
        t.ok(controlSeen!.length > 0, `the uplink sniffer does see plaintext that is meant to be there (${controlSeen!.length} packets)`);

        const restarted = await lab.weft(['lab', 'ztunnel', 'node-1', 'start']);
        t.equal(restarted.code, 0, `restarted: ${restarted.stdout.trim()}${restarted.stderr}`);
        await works(t, `after the ${signal} restart`);
        t.equal(await captureRules(node1.netns), before, 'the new ztunnel adopted the rules: no duplicate, no leftover, same order');
      });
    }

    await t.test('weft ztunnel --cleanup (uninstall) removes capture and guard, nothing else', async (t) => {
      const stop = await lab.weft(['lab', 'ztunnel', 'node-1', 'stop']);
      t.equal(stop.code, 0, stop.stderr);
      const cleanup = await lab.exec('node-1', ['weft', 'ztunnel', '--cleanup']);
      t.equal(cleanup.code, 0, cleanup.stderr);
      const after = await captureRules(node1.netns);
      t.notMatch(after, /WEFT-(PREROUTING|OUTPUT|INBOUND|OUTBOUND|FORWARD)/, 'capture chains and jumps gone');
      t.match(after, /-A PREROUTING -j WEFT-SERVICES/, "the lab's kube-proxy emulation stays");
      t.equal((await lab.weft(['lab', 'ztunnel', 'node-1', 'start'])).code, 0, 'started again');
      t.equal(await captureRules(node1.netns), before, 'the same rules as the first ztunnel made');
      await works(t, 'after cleanup and start');
    });
  });
}
