// Dual stack on the lab: the same checks over IPv4 and IPv6. Before, one enrolled pod
// with an IPv6 address made capture throw (the ztunnel exited at start); now IPv6 is
// captured exactly like IPv4, by ip6tables rules from the same generator.
import t, { type Test } from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { RegistryStore } from '../../src/registry/store';
import { REPO_ROOT } from '../../src/lab/paths';
import { labSkipReason, startLab, E2E_LAB_DIR } from './helpers/lab';
import { waitFor } from '../helpers/wait';

const skip = labSkipReason();

function rootIpv6Forwarding(): string {
  return readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim();
}

t.test('dual stack: tunnelled, uncaptured and denied traffic behave the same over IPv4 and IPv6', { skip }, async (t) => {
  const forwardingBefore = rootIpv6Forwarding();
  const topology = parse(readFileSync(join(REPO_ROOT, 'scripts', 'lab.yaml'), 'utf8')) as Record<string, unknown>;
  const file = join(E2E_LAB_DIR, '..', 'dual-stack.yaml');
  // A fresh clone has no .weft-lab yet (startLab makes it later).
  mkdirSync(join(E2E_LAB_DIR, '..'), { recursive: true });
  writeFileSync(file, stringify({ ...topology, ipv6: true }));
  const lab = await startLab(t, { topology: file });
  const ctx = lab.context;
  const pod = (uid: string) => ctx.pods.find((p) => p.uid === uid)!;
  const node = (name: string) => ctx.nodes.find((n) => n.name === name)!;
  t.ok(pod('demo/echo-2').ip6, `pods have IPv6 addresses (${pod('demo/echo-2').ip6})`);

  await t.test('IPv6 stays inside the lab', async (t) => {
    t.equal(rootIpv6Forwarding(), forwardingBefore, 'IPv6 forwarding in the root namespace untouched');
    const routes = await lab.exec('demo/client', ['ip', '-6', 'route', 'show']);
    t.match(routes.stdout, /default via fe80::1 dev eth0/, 'pods route IPv6 to their node only');
    const nodeRoutes = await lab.exec('node-1', ['ip', '-6', 'route', 'show', 'default']);
    t.equal(nodeRoutes.stdout.trim(), '', 'nodes have no IPv6 default route');
  });

  const url = (ip: string, port = 8080) => `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}/`;
  const families = [
    { name: 'IPv4', ip: (uid: string) => pod(uid).ip, nodeIp: (n: string) => node(n).address },
    { name: 'IPv6', ip: (uid: string) => pod(uid).ip6!, nodeIp: (n: string) => node(n).address6! },
  ];
  const peerIp = (peer: string | undefined) => peer?.replace(/^\[?(.*?)\]?:\d+$/, '$1');

  for (const f of families) {
    await t.test(`${f.name}: mesh to mesh goes through the ztunnels (HBONE across nodes)`, async (t: Test) => {
      const remote = await lab.request('demo/client', url(f.ip('demo/echo-2')));
      t.equal(remote.pod, 'echo-2');
      t.equal(peerIp(remote.peer), f.nodeIp('node-2'), `echo-2 saw node-2's ztunnel (${remote.peer}), not the client`);
      const local = await lab.request('demo/client', url(f.ip('demo/echo-1')));
      t.equal(local.pod, 'echo-1');
      t.equal(peerIp(local.peer), f.nodeIp('node-1'), `echo-1 (same node) saw node-1's ztunnel (${local.peer})`);
    });

    await t.test(`${f.name}: outside the mesh to outside the mesh is not captured`, async (t: Test) => {
      const a = await lab.request('legacy/client', url(f.ip('legacy/echo-1')));
      t.equal(a.pod, 'echo-1');
      t.equal(peerIp(a.peer), f.ip('legacy/client'), 'the echo saw the client itself');
    });

    await t.test(`${f.name}: plaintext into the mesh goes through node-1's 15006`, async (t: Test) => {
      const a = await lab.request('legacy/client', url(f.ip('demo/echo-1')));
      t.equal(a.pod, 'echo-1');
      t.equal(peerIp(a.peer), f.nodeIp('node-1'), `delivered by node-1's ztunnel (${a.peer})`);
    });
  }

  await t.test('STRICT: plaintext into the mesh is refused over both families', async (t) => {
    const store = RegistryStore.connect(ctx.redisUrl);
    t.teardown(async () => {
      await store.delete('peerauth', 'demo/ipv6-strict').catch(() => undefined);
      await store.close();
    });
    await store.put('peerauth', { name: 'ipv6-strict', namespace: 'demo', mode: 'STRICT' });
    const refused = async (target: string) => (await lab.exec('legacy/client', ['weft', 'lab', 'request', target, '--timeout', '3s'])).code !== 0;
    await waitFor('STRICT in force on node-1', () => refused(url(pod('demo/echo-1').ip)), { timeoutMs: 10_000, intervalMs: 200 });
    // Independent probes, both families at once (each is a `weft lab exec`).
    const seen = await Promise.all(families.map((f) => Promise.all([
      refused(url(f.ip('demo/echo-1'))), refused(url(f.ip('demo/echo-2'))), lab.request('demo/client', url(f.ip('demo/echo-2'))),
    ])));
    families.forEach((f, i) => {
      const [to1, to2, mesh] = seen[i]!;
      t.ok(to1, `${f.name}: legacy/client → echo-1 refused`);
      t.ok(to2, `${f.name}: legacy/client → echo-2 (other node) refused`);
      t.equal(mesh.pod, 'echo-2', `${f.name}: mesh clients unaffected`);
    });
  });
});
