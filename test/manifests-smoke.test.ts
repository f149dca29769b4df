/**
 * The manifests' own command lines, run for real: Redis, then the CA with the args of
 * daemonset/ca.yaml, then the ztunnel's start script of daemonset/ztunnel.yaml (it mints
 * its join token, joins, captures) with the environment of weft-config — all in one
 * throwaway network namespace standing in for a node, with the built dist/ in place of
 * the image's /app/dist. Proves that the flags parse, the CA certificate carries the
 * name the ztunnels dial, the join-token flow works, readiness turns 200 on 15021, and
 * SIGTERM removes the capture rules.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, netnsSkipReason } from './helpers/netns';
import { podContainers, renderKustomization, type K8sObject } from './helpers/kustomize';

const ROOT = join(__dirname, '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const skip = netnsSkipReason() || (existsSync(MAIN) ? false : 'dist/ is not built (npm run build)');

const objects = renderKustomization(join(ROOT, 'daemonset'));
const find = (kind: string, name: string): K8sObject => objects.find((o) => o.kind === kind && o.metadata.name === name)!;

t.test('CA and ztunnel start from the manifests\' command lines', { skip }, async (t) => {
  const topo = await createTopology(t);
  const ns = await topo.addNetns('k8s');
  // The node's address: capture refuses loopback (pod traffic cannot be DNAT'ed there).
  const NODE_IP = '203.0.113.1';
  const link = await topo.addVeth({ netns: ns }, { netns: ns });
  await topo.addAddress(ns, link.a, `${NODE_IP}/24`);
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs.reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const gone = new Promise((r) => p.once('close', r));
      p.kill('SIGKILL');
      await gone;
    }
  });
  const output = new Map<ChildProcess, string>();
  const run = (argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess => {
    // `ip netns exec` execs into the command, so the PID is the process itself.
    const p = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, ...env } });
    output.set(p, '');
    const keep = (c: Buffer): void => { output.set(p, (output.get(p)! + c.toString()).slice(-20_000)); };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    procs.push(p);
    return p;
  };
  const httpGet = async (url: string): Promise<{ status: number; body: string }> => {
    const r = await topo.exec(ns, process.execPath, ['-e',
      `fetch(${JSON.stringify(url)}).then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })), () => console.log('{"status":0,"body":""}'))`,
    ], { timeoutMs: 10_000 });
    return JSON.parse(r.stdout) as { status: number; body: string };
  };
  const until = async (what: string, p: ChildProcess, f: () => Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      if (await f()) return;
      if (p.exitCode !== null) throw new Error(`${what}: process exited ${p.exitCode}: ${output.get(p)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${what} did not happen; output: ${output.get(p)}`);
  };

  const config = find('ConfigMap', 'weft-config').data as Record<string, string>;
  const env = { ...config, WEFT_REDIS_URL: 'redis://127.0.0.1:6379' };

  const redis = run(['redis-server', '--port', '6379', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await until('redis answers', redis, async () =>
    (await topo.exec(ns, 'redis-cli', ['-p', '6379', 'ping'], { check: false })).stdout.trim() === 'PONG');

  const caArgs = podContainers(find('Deployment', 'weft-ca'))[0]!.args as string[];
  const ca = run([process.execPath, MAIN, ...caArgs], env);
  await until('CA ready on 15014', ca, async () => (await httpGet('http://127.0.0.1:15014/healthz/ready')).status === 200);

  // What the controller would have written: this node, an enrolled namespace, one pod.
  const seed = `
    const { RegistryStore } = require(${JSON.stringify(join(ROOT, 'dist', 'registry', 'store.js'))});
    const f = require(${JSON.stringify(join(ROOT, 'dist', 'registry', 'fixtures.js'))});
    const s = RegistryStore.connect('redis://127.0.0.1:6379');
    s.apply([
      { op: 'put', kind: 'node', record: f.nodeRecord('node-1', '${NODE_IP}') },
      { op: 'put', kind: 'namespace', record: f.ambientNamespace('demo') },
      { op: 'put', kind: 'workload', record: f.workloadRecord({ namespace: 'demo', name: 'echo-1', node: 'node-1', addresses: ['203.0.113.5'], serviceAccount: 'echo' }) },
    ]).then(() => s.close()).then(() => console.log('seeded'));`;
  t.match((await topo.exec(ns, process.execPath, ['-e', seed], { timeoutMs: 15_000 })).stdout, /seeded/);

  const zc = podContainers(find('DaemonSet', 'weft-ztunnel'))[0]!;
  const command = (zc.command as string[]).map((s) => s.replaceAll('/app/dist/', `${ROOT}/dist/`));
  const caHost = config.WEFT_CA_ADDRESS!.split(':')[0]!;
  const ztunnel = run(command, {
    ...env,
    // The Service name does not resolve here; dial loopback but check the CA
    // certificate for the very name the manifests dial.
    WEFT_CA_ADDRESS: '127.0.0.1:15012', WEFT_CA_SERVER_NAME: caHost,
    WEFT_NODE_NAME: 'node-1', WEFT_NODE_ADDRESS: NODE_IP,
  });
  await until('ztunnel ready on 15021', ztunnel, async () => (await httpGet('http://127.0.0.1:15021/healthz/ready')).status === 200);
  t.match(output.get(ztunnel), /join token for node node-1/, 'the start script minted a token for its node');

  const certs = JSON.parse((await httpGet('http://127.0.0.1:15000/certs')).body) as { certificates: { identity: string; state: string }[] };
  const states = Object.fromEntries(certs.certificates.map((c) => [c.identity, c.state]));
  t.match(states, { 'spiffe://cluster.local/ns/demo/sa/echo': 'Ready' }, 'workload certificate issued after the node joined');
  const rules = await topo.exec(ns, 'iptables-save', ['-t', 'nat']);
  t.match(rules.stdout, /WEFT-PREROUTING/, 'capture rules installed in the node namespace');
  t.match(rules.stdout, /203\.0\.113\.5/, 'for the enrolled pod\'s IP');

  const exited = new Promise<number | null>((r) => ztunnel.once('close', (code) => r(code)));
  ztunnel.kill('SIGTERM');
  t.equal(await exited, 0, 'ztunnel exits cleanly on SIGTERM');
  const after = await topo.exec(ns, 'iptables-save', ['-t', 'nat']);
  t.notMatch(after.stdout, /WEFT-/, 'and removed its rules');
});
