// The kernel's answer (getsockopt SO_ORIGINAL_DST, native/original_dst.c) and the
// conntrack table's answer must agree for every captured connection, in real network
// namespaces with the real capture rules.
import t from 'tap';
import { join } from 'node:path';
import { createCaptureApplier } from '../src/iptables/apply';
import { generateCaptureRules } from '../src/iptables/rules';
import { ExecCommandRunner } from '../src/iptables/runner';
import { loadNativeOriginalDst, OriginalDstLookup } from '../src/ztunnel/original-dst-sockopt';
import { assertNativeBuilt, NATIVE } from './helpers/built';
import { createTopology, netnsSkipReason } from './helpers/netns';

const skip = netnsSkipReason();
// npm run build compiles the helper; its absence is a failure, not a reason to skip.
if (!skip) assertNativeBuilt();

const NODE = '203.0.113.1';
const EXT = '203.0.113.2';
const POD = '198.51.100.20';
const MODULE = join(__dirname, '..', 'src', 'ztunnel', 'original-dst-sockopt.ts');
const RESOLVER = join(__dirname, '..', 'src', 'ztunnel', 'original-dst.ts');

/** Stand-in ztunnel on NODE:15001: answers each connection with both methods' results. */
const STANDIN = `
const net = require('node:net');
const { loadNativeOriginalDst } = require(${JSON.stringify(MODULE)});
const { OriginalDstResolver } = require(${JSON.stringify(RESOLVER)});
const native = loadNativeOriginalDst(${JSON.stringify(NATIVE)});
const conntrack = new OriginalDstResolver();
net.createServer((s) => {
  s.on('error', () => {});
  const sockopt = native(s._handle.fd);
  conntrack.resolve(s).then((table) => s.end(JSON.stringify({ sockopt, table }) + '\\n'), (e) => s.end(JSON.stringify({ sockopt, error: e.message }) + '\\n'));
}).listen(15001, ${JSON.stringify(NODE)}, () => console.log('listening'));
`;

/** 24 concurrent connections to distinct destinations; prints the answers as JSON. */
const CLIENT = `
const net = require('node:net');
const targets = Array.from({ length: 24 }, (_, i) => ({ host: ${JSON.stringify(EXT)}, port: 7000 + i }));
Promise.all(targets.map((tg) => new Promise((resolve) => {
  const s = net.connect(tg.port, tg.host);
  let buf = '';
  s.setTimeout(5000, () => { s.destroy(); resolve({ error: 'timeout' }); });
  s.on('error', (e) => resolve({ error: e.code }));
  s.on('data', (d) => { buf += d; });
  s.on('end', () => resolve({ target: tg, ...JSON.parse(buf) }));
}))).then((r) => console.log(JSON.stringify(r)));
`;

t.test('getsockopt(SO_ORIGINAL_DST) agrees with conntrack on captured connections', { skip }, async (t) => {
  const topo = await createTopology(t);
  const node = await topo.addNetns('node');
  const ext = await topo.addNetns('ext');
  const uplink = await topo.addVeth({ netns: node }, { netns: ext });
  await topo.addAddress(node, uplink.a, `${NODE}/24`);
  await topo.addAddress(ext, uplink.b, `${EXT}/24`);
  await topo.sysctl(node, 'net.ipv4.ip_forward', '1');
  const pod = await topo.addPod(node, { label: 'pod', ip: POD });
  const applier = createCaptureApplier({ runner: new ExecCommandRunner(), netns: node });
  await applier.apply(generateCaptureRules({ nodeAddress: NODE, enrolledPodIps: [POD] }));
  const standin = topo.startNode(node, { script: STANDIN });
  await standin.waitForLine(/^listening$/);
  const { stdout } = await topo.exec(pod.netns, process.execPath, ['-e', CLIENT], { timeoutMs: 20_000 });
  const answers = JSON.parse(stdout) as Array<{ target: { host: string; port: number }; sockopt: { ip: string; port: number }; table?: { ip: string; port: number }; error?: string }>;
  t.equal(answers.length, 24);
  for (const a of answers) {
    t.same(a.sockopt, { ip: a.target.host, port: a.target.port }, `kernel answer for ${a.target.port}`);
    t.same(a.table, a.sockopt, `conntrack agrees for ${a.target.port}`);
  }
});

t.test('without the native helper the lookup falls back to conntrack', async (t) => {
  const lookup = new OriginalDstLookup({ native: null });
  t.equal(lookup.method, 'conntrack');
  lookup.close();
  t.equal(loadNativeOriginalDst('/nonexistent/weft_native.node'), undefined, 'a missing build is not an error');
});
