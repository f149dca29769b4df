import t from 'tap';
import { join } from 'node:path';
import { generateCaptureGuardRules, generateCaptureRules } from '../src/iptables/rules';
import { generateServiceRules } from '../src/iptables/services';
import { createCaptureApplier, createGuardApplier, createServicesApplier } from '../src/iptables/apply';
import { ExecCommandRunner } from '../src/iptables/runner';
import { createTopology, netnsSkipReason, type Topology } from './helpers/netns';

/*
 * End to end in real network namespaces, wired the way the lab wires a node:
 *
 *   pod-a 198.51.100.10 (enrolled)  ─┐
 *   pod-b 198.51.100.11 (not)       ─┼─ veths ─ node netns ─ veth ─ ext netns 203.0.113.2
 *   pod-c 198.51.100.12 (enrolled)  ─┘          203.0.113.1        (a remote host / peer node)
 *
 * Pods have a /32 and a default route via 169.254.1.1; the node side has 169.254.1.1/32
 * on each host veth and a /32 route per pod. A stand-in ztunnel in the node netns listens
 * on 203.0.113.1:15001/15006/15008 and answers each connection with the original
 * destination its OriginalDstResolver reads from conntrack.
 */
const skip = netnsSkipReason();
if (skip) t.plan(0, skip);

const runner = new ExecCommandRunner();
const NODE = '203.0.113.1';
const EXT = '203.0.113.2';
const A = '198.51.100.10';
const B = '198.51.100.11';
const C = '198.51.100.12';
const RESOLVER = join(__dirname, '..', 'src', 'ztunnel', 'original-dst.ts');

/** Stand-in ztunnel: argv = address, ports... Prints "listening" when ready. */
const STANDIN = `
const net = require('node:net');
const { OriginalDstResolver } = require(${JSON.stringify(RESOLVER)});
const [addr, ...ports] = process.argv.slice(1);
const resolver = new OriginalDstResolver();
let listening = 0;
for (const port of ports) {
  net.createServer((s) => {
    s.on('error', () => {});
    resolver.resolve(s).then(
      (orig) => s.write(JSON.stringify({ listener: Number(port), orig, remote: s.remoteAddress }) + '\\n'),
      (err) => s.write(JSON.stringify({ listener: Number(port), error: err.code + ': ' + err.message }) + '\\n'),
    ).then(() => s.on('data', (d) => s.write('echo:' + d)));
  }).listen(Number(port), addr, () => { if (++listening === ports.length) console.log('listening'); });
}
`;

/** A plain application server: argv = name, address, port. */
const APP = `
const net = require('node:net');
const [name, addr, port] = process.argv.slice(1);
net.createServer((s) => {
  s.on('error', () => {});
  s.write(JSON.stringify({ server: name, remote: s.remoteAddress }) + '\\n');
  s.on('data', (d) => s.write('echo:' + d));
}).listen(Number(port), addr, () => console.log('listening'));
`;

/** Connects to each argv ip:port at once; prints the first line each answered, as a JSON array. */
const CLIENT = `
const net = require('node:net');
const targets = process.argv.slice(1);
Promise.all(targets.map((target) => new Promise((resolve) => {
  const i = target.lastIndexOf(':');
  const s = net.connect(Number(target.slice(i + 1)), target.slice(0, i));
  let buf = '';
  s.setTimeout(5000, () => { s.destroy(); resolve({ error: 'timeout' }); });
  s.on('error', (e) => resolve({ error: e.code || e.message }));
  s.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\\n');
    if (nl !== -1) { s.destroy(); resolve(JSON.parse(buf.slice(0, nl))); }
  });
}))).then((r) => console.log(JSON.stringify(r)));
`;

/** A long-lived connection: prints "recv <line>" per line received, sends each stdin line. */
const HOLD = `
const net = require('node:net');
const [ip, port] = process.argv.slice(1);
const s = net.connect(Number(port), ip);
s.on('error', (e) => console.log('error ' + e.message));
let buf = '';
s.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) !== -1) { console.log('recv ' + buf.slice(0, nl)); buf = buf.slice(nl + 1); }
});
process.stdin.on('data', (d) => s.write(d));
`;

type Answer = { listener?: number; orig?: { ip: string; port: number }; remote?: string; server?: string; error?: string };

async function connectFrom(topo: Topology, netns: string, ...targets: string[]): Promise<Answer[]> {
  const { stdout } = await topo.exec(netns, process.execPath, ['-e', CLIENT, ...targets], { timeoutMs: 20_000 });
  return JSON.parse(stdout) as Answer[];
}

async function natSave(netns: string): Promise<string> {
  const { stdout } = await runner.run('iptables-save', ['-t', 'nat'], { netns });
  return stdout.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

t.test('node-level capture in real network namespaces', async (t) => {
  const topo = await createTopology(t);
  const node = await topo.addNetns('node');
  const ext = await topo.addNetns('ext');
  const uplink = await topo.addVeth({ netns: node }, { netns: ext });
  await topo.addAddress(node, uplink.a, `${NODE}/24`);
  await topo.addAddress(ext, uplink.b, `${EXT}/24`);
  await topo.addRoute(ext, ['198.51.100.0/24', 'via', NODE]);
  await topo.sysctl(node, 'net.ipv4.ip_forward', 1);
  const podA = await topo.addPod(node, { label: 'pod-a', ip: A });
  const podB = await topo.addPod(node, { label: 'pod-b', ip: B });
  const podC = await topo.addPod(node, { label: 'pod-c', ip: C });

  const servers = [
    topo.startNode(node, { script: STANDIN, args: [NODE, '15001', '15006', '15008'] }),
    topo.startNode(ext, { script: APP, args: ['ext', EXT, '8080'], typescript: false }),
    topo.startNode(podA.netns, { script: APP, args: ['pod-a', A, '8080'], typescript: false }),
  ];
  await Promise.all(servers.map((s) => s.waitForLine(/^listening$/)));

  t.same(await connectFrom(topo, podA.netns, `${EXT}:8080`), [{ server: 'ext', remote: A }], 'before capture: pod-a reaches ext directly');

  const applier = createCaptureApplier({ runner, netns: node });
  t.teardown(() => applier.remove().catch(() => {}));
  await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [A, C] }));
  const firstSave = await natSave(node);
  await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [C, A] }));
  t.equal(await natSave(node), firstSave, 'apply twice: identical iptables-save -t nat');

  t.test('enrolled pod egress goes to 15001 with its original destination', async (t) => {
    t.same(await connectFrom(topo, podA.netns, `${EXT}:8080`), [{ listener: 15001, orig: { ip: EXT, port: 8080 }, remote: A }]);
    t.same(await connectFrom(topo, podA.netns, '192.0.2.77:443'), [{ listener: 15001, orig: { ip: '192.0.2.77', port: 443 }, remote: A }],
      'even to a destination that does not exist');
  });

  t.test('concurrent captured connections each get their own original destination', async (t) => {
    const targets = Array.from({ length: 24 }, (_, i) => `${EXT}:${9000 + i}`);
    const answers = await connectFrom(topo, podA.netns, ...targets);
    t.same(answers.map((a) => a.orig?.port), targets.map((_, i) => 9000 + i));
    t.ok(answers.every((a) => a.listener === 15001 && a.orig?.ip === EXT));
  });

  t.test('enrolled → enrolled on the same node leaves through outbound first', async (t) => {
    t.same(await connectFrom(topo, podA.netns, `${C}:8080`), [{ listener: 15001, orig: { ip: C, port: 8080 }, remote: A }]);
  });

  t.test('a pod that is not enrolled is not captured', async (t) => {
    t.same(await connectFrom(topo, podB.netns, `${EXT}:8080`), [{ server: 'ext', remote: B }]);
  });

  t.test('plaintext to an enrolled pod from outside the mesh goes to 15006', async (t) => {
    t.same(await connectFrom(topo, podB.netns, `${A}:8080`), [{ listener: 15006, orig: { ip: A, port: 8080 }, remote: B }]);
    t.same(await connectFrom(topo, ext, `${A}:8080`), [{ listener: 15006, orig: { ip: A, port: 8080 }, remote: EXT }], 'also from another host');
  });

  t.test('HBONE to an enrolled pod goes to 15008, from a peer node and from the local ztunnel', async (t) => {
    t.same(await connectFrom(topo, ext, `${A}:15008`), [{ listener: 15008, orig: { ip: A, port: 15008 }, remote: EXT }], 'peer node (PREROUTING)');
    const [local] = await connectFrom(topo, node, `${A}:15008`);
    t.same(local?.listener, 15008, 'local ztunnel (nat OUTPUT)');
    t.same(local?.orig, { ip: A, port: 15008 });
  });

  t.test('the node itself (the ztunnel delivering inbound) reaches pods uncaptured', async (t) => {
    const [answer] = await connectFrom(topo, node, `${A}:8080`);
    t.equal(answer?.server, 'pod-a');
  });

  t.test('an enrolled pod dialling the node proxy ports directly is not redirected', async (t) => {
    t.same(await connectFrom(topo, podA.netns, `${NODE}:15008`), [{ listener: 15008, orig: { ip: NODE, port: 15008 }, remote: A }],
      'conntrack shows no NAT: the original destination is the proxy port itself (the ztunnel refuses it as a loop)');
  });

  t.test('service VIPs: captured for enrolled pods (VIP as original destination), kube-proxy for the rest', async (t) => {
    const VIP_EXT = '198.51.100.200';
    const VIP_A = '198.51.100.201';
    const services = [
      { vip: VIP_EXT, port: 80, endpoints: [{ ip: EXT, port: 8080 }] },
      { vip: VIP_A, port: 80, endpoints: [{ ip: A, port: 8080 }] },
    ];
    const svc = createServicesApplier({ runner, netns: node });
    t.teardown(() => svc.remove().catch(() => {}));
    await svc.apply(generateServiceRules(services));
    t.same(await connectFrom(topo, podA.netns, `${VIP_EXT}:80`), [{ listener: 15001, orig: { ip: VIP_EXT, port: 80 }, remote: A }], 'enrolled pod → VIP');
    t.same(await connectFrom(topo, podB.netns, `${VIP_EXT}:80`), [{ server: 'ext', remote: B }], 'non-mesh pod → VIP: kube-proxy DNAT');
    t.same(await connectFrom(topo, podB.netns, `${VIP_A}:80`), [{ server: 'pod-a', remote: B }],
      'without a captured service rule, non-mesh → VIP → enrolled endpoint on this node is not captured (the gap)');

    await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [A, C], capturedServices: [{ vip: VIP_A, port: 80 }] }));
    t.same(await connectFrom(topo, podB.netns, `${VIP_A}:80`), [{ listener: 15006, orig: { ip: VIP_A, port: 80 }, remote: B }],
      'with the capture rule for VIP_A:80 it reaches the ztunnel inbound, before kube-proxy, with the VIP as original destination');
    t.same(await connectFrom(topo, ext, `${VIP_A}:80`), [{ listener: 15006, orig: { ip: VIP_A, port: 80 }, remote: EXT }], 'also from another host');
    t.same(await connectFrom(topo, podA.netns, `${VIP_A}:80`), [{ listener: 15001, orig: { ip: VIP_A, port: 80 }, remote: A }],
      'an enrolled client still leaves through outbound');
    t.same(await connectFrom(topo, podB.netns, `${VIP_EXT}:80`), [{ server: 'ext', remote: B }], 'other services unchanged');
    await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [A, C] }));
    t.same(await connectFrom(topo, podB.netns, `${VIP_A}:80`), [{ server: 'pod-a', remote: B }], 'removing the service rule hands it back to kube-proxy');

    await svc.remove();
    const save = await natSave(node);
    t.notMatch(save, /WEFT-SERVICES/);
    t.match(save, /-A PREROUTING -j WEFT-PREROUTING/, 'removing services leaves capture in place');
  });

  t.test('the node addresses and link-local are reached directly by an enrolled pod, never through 15001', async (t) => {
    const onNode = topo.startNode(node, { script: APP, args: ['node', '0.0.0.0', '9999'], typescript: false });
    t.teardown(() => onNode.kill());
    await onNode.waitForLine(/^listening$/);
    t.same(await connectFrom(topo, podA.netns, `${NODE}:9999`, '169.254.1.1:9999'),
      [{ server: 'node', remote: A }, { server: 'node', remote: A }], 'node address and the link-local gateway: the pod itself connects');
    const [metadata] = await connectFrom(topo, podA.netns, '169.254.169.254:80');
    t.equal(metadata?.listener, undefined, 'a metadata endpoint is not captured either (nothing serves it here, so it fails)');
    t.ok(metadata?.error, `fails directly: ${metadata?.error}`);
  });

  t.test('NodePort (DNAT by kube-proxy) to an enrolled pod on this node: refused by the guard, never plaintext', async (t) => {
    const svc = createServicesApplier({ runner, netns: node });
    t.teardown(() => svc.remove().catch(() => {}));
    await svc.apply(generateServiceRules([], [{ nodePort: 30080, endpoints: [{ ip: A, port: 8080 }] }, { nodePort: 30081, endpoints: [{ ip: B, port: 8080 }] }]));
    const podB8080 = topo.startNode(podB.netns, { script: APP, args: ['pod-b', B, '8080'], typescript: false });
    t.teardown(() => podB8080.kill());
    await podB8080.waitForLine(/^listening$/);
    t.same(await connectFrom(topo, ext, `${NODE}:30080`), [{ server: 'pod-a', remote: EXT }],
      'without the guard the NodePort reaches the enrolled pod in plaintext, from the client itself (the bypass)');

    const guard = createGuardApplier({ runner, netns: node });
    t.teardown(() => guard.remove().catch(() => {}));
    await guard.apply(generateCaptureGuardRules({ family: 4, enrolledPodIps: [A, C], captured: true }));
    t.same(await connectFrom(topo, ext, `${NODE}:30080`), [{ error: 'ECONNREFUSED' }], 'with the guard it is reset at once');
    t.same(await connectFrom(topo, podB.netns, `${NODE}:30080`), [{ error: 'ECONNREFUSED' }], 'also from a pod of the same node');
    t.same(await connectFrom(topo, ext, `${NODE}:30081`), [{ server: 'pod-b', remote: EXT }], 'a NodePort to a pod outside the mesh is untouched');
    t.same(await connectFrom(topo, ext, `${A}:8080`), [{ listener: 15006, orig: { ip: A, port: 8080 }, remote: EXT }], 'the pod IP itself is still captured to 15006');
    t.same(await connectFrom(topo, podA.netns, `${C}:8080`), [{ listener: 15001, orig: { ip: C, port: 8080 }, remote: A }], 'mesh traffic unchanged');
    await guard.remove();
    t.notMatch((await runner.run('iptables-save', ['-t', 'filter'], { netns: node })).stdout, /WEFT/, 'guard removal leaves nothing');
  });

  t.test('reconciling a smaller enrolled set affects new connections only', async (t) => {
    const held = topo.startNode(podA.netns, { script: HOLD, args: [EXT, '8080'], stdin: true, typescript: false });
    t.teardown(() => held.kill());
    t.match(await held.waitForLine(/^recv /), /"listener":15001/, 'long-lived connection opened while pod-a is enrolled');

    await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [C] }));
    t.notMatch(await natSave(node), new RegExp(A.replace(/\./g, '\\.')), 'pod-a is gone from the rules');
    t.same(await connectFrom(topo, podA.netns, `${EXT}:8080`), [{ server: 'ext', remote: A }], 'a new connection from pod-a is no longer captured');
    t.same(await connectFrom(topo, podB.netns, `${A}:8080`), [{ server: 'pod-a', remote: B }], 'nor is traffic to pod-a');
    t.same(await connectFrom(topo, podC.netns, `${EXT}:8080`), [{ listener: 15001, orig: { ip: EXT, port: 8080 }, remote: C }], 'pod-c still is');

    held.send('still-here\n');
    t.equal(await held.waitForLine(/^recv echo:/), 'recv echo:still-here', 'the existing connection keeps flowing through the ztunnel');
  });

  t.test('remove() restores direct traffic and leaves no WEFT chain', async (t) => {
    await applier.remove();
    t.notMatch(await natSave(node), /WEFT/);
    t.same(await connectFrom(topo, podC.netns, `${EXT}:8080`), [{ server: 'ext', remote: C }]);
  });
});
