/**
 * The manifests' own command lines, run for real: Redis with the args of
 * daemonset/redis.yaml (TLS only, the ACL users of scripts/redis-secrets), then the CA with the args of
 * daemonset/ca.yaml, then the ztunnel with the args and environment of
 * daemonset/ztunnel.yaml and weft-config (it joins with its pod's ServiceAccount token,
 * captures) — all in one throwaway network namespace standing in for a node, with the
 * built dist/ in place of the image's entry point. The API server stand-in (with its
 * TokenReview endpoint) runs in this process and is reached from the namespace through
 * a Unix socket; a kubeconfig file takes the place of the CA's in-cluster service
 * account, a file the place of the projected token. Proves that the flags parse, the
 * CA certificate carries the name the ztunnels dial, the ServiceAccount-token join
 * works, readiness turns 200 on 15021, SIGTERM leaves the capture rules in place (fail
 * closed until the next ztunnel) and `weft ztunnel --cleanup` removes them. Each
 * component reaches Redis as its own ACL user, with the password and CA bundle of its
 * own Secret (mounted paths mapped onto the files the script made).
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertDistFresh } from './helpers/built';
import { createTopology, netnsSkipReason } from './helpers/netns';
import { podContainers, renderKustomization, type K8sObject } from './helpers/kustomize';
import { TestApiServer } from './helpers/apiserver';
import { TestTokenReview } from './helpers/token-review';
import { localEnv, localPath, makeRedisSecrets, secretMounts } from './helpers/redis-secrets';
import { initRoot } from '../src/ca/root-store';

const ROOT = join(__dirname, '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const skip = netnsSkipReason();
// A missing or stale build fails the file: skipping would hide it.
if (!skip) assertDistFresh();

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
  const dir = mkdtempSync(join(tmpdir(), 'weft-smoke-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The Secrets as an operator makes them; the certificate also names 127.0.0.1, the
  // address Redis is dialled at here (the Service name does not resolve).
  const secrets = join(dir, 'secrets');
  makeRedisSecrets(secrets, ['IP:127.0.0.1']);
  const redisUrl = new URL(config.WEFT_REDIS_URL!);
  t.equal(redisUrl.protocol, 'rediss:', 'the manifests dial Redis over TLS');
  redisUrl.hostname = '127.0.0.1';
  /** weft-config, the workload's literal env and its Secret mounts, as its container sees them. */
  const envOf = (w: K8sObject): Record<string, string> => {
    const literal = Object.fromEntries(((podContainers(w)[0]!.env as { name: string; value?: string }[] | undefined) ?? [])
      .filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
    return { ...localEnv({ ...config, ...literal }, secretMounts(w, secrets)), WEFT_REDIS_URL: redisUrl.toString().replace(/\/$/, '') };
  };

  // The API server: here, on loopback; in the namespace, 127.0.0.1:6443 relays to it
  // through a Unix socket (network namespaces share the file system).
  const api = await TestApiServer.start({ token: 'ca-sa-token' });
  t.teardown(() => api.stop());
  const reviews = new TestTokenReview(api);
  const apiPort = Number(new URL(api.url).port);
  const socket = join(dir, 'apiserver.sock');
  const relayed = new Set<net.Socket>();
  const relay = net.createServer((c) => {
    const up = net.connect(apiPort, '127.0.0.1');
    relayed.add(c);
    c.on('close', () => relayed.delete(c));
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => relay.listen(socket, r));
  t.teardown(() => new Promise<void>((r) => {
    relay.close(() => r());
    for (const c of relayed) c.destroy();
  }));
  const inner = run([process.execPath, '-e', `
    const net = require('node:net');
    net.createServer((c) => {
      const up = net.connect(${JSON.stringify(socket)});
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    }).listen(6443, '127.0.0.1', () => console.log('relaying'));`]);
  await until('API relay listening', inner, async () => /relaying/.test(output.get(inner)!));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: smoke',
    'clusters: [{name: smoke, cluster: {server: "http://127.0.0.1:6443"}}]',
    'users: [{name: weft-ca, user: {token: ca-sa-token}}]',
    'contexts: [{name: smoke, context: {cluster: smoke, user: weft-ca}}]',
  ].join('\n'));

  const redisSet = find('StatefulSet', 'weft-redis');
  const redisMounts = secretMounts(redisSet, secrets);
  redisMounts.set('/data', join(dir, 'data'));
  mkdirSync(join(dir, 'data'));
  const redisArgs = (podContainers(redisSet)[0]!.args as string[]).map((a) => localPath(a, redisMounts));
  const redis = run(redisArgs);
  const caBundle = join(secrets, 'ca.crt');
  await until('redis answers over TLS, and only to users with a password', redis, async () =>
    /NOAUTH/.test((await topo.exec(ns, 'redis-cli', ['--tls', '--cacert', caBundle, '-p', '6379', 'ping'], { check: false })).stdout));
  const plain = await topo.exec(ns, 'redis-cli', ['-p', '6379', 'ping'], { check: false });
  t.notMatch(plain.stdout, /PONG|NOAUTH/, 'no plaintext Redis');

  const caArgs = podContainers(find('Deployment', 'weft-ca'))[0]!.args as string[];
  t.ok(caArgs.includes('--kube-token-review'), 'the CA admits nodes by ServiceAccount token');
  // What `weft ca init-root` + the weft-ca-root Secret and weft-root-cert ConfigMap give
  // on a cluster: a root directory for the CA, its certificate for the ztunnel.
  const rootDir = join(dir, 'ca-root');
  const root = await initRoot(rootDir, { trustDomain: 'cluster.local' });
  const anchorFile = join(dir, 'root-cert.pem');
  writeFileSync(anchorFile, root.certPem);
  const rootArg = caArgs.find((a) => a.startsWith('--root-dir='));
  t.equal(rootArg, '--root-dir=/etc/weft/ca-root', 'the CA reads the mounted Secret');
  const ca = run([process.execPath, MAIN, ...caArgs.map((a) => (a === rootArg ? `--root-dir=${rootDir}` : a)), `--kubeconfig=${kubeconfig}`], envOf(find('Deployment', 'weft-ca')));
  await until('CA ready on 15014', ca, async () => (await httpGet('http://127.0.0.1:15014/healthz/ready')).status === 200);

  // What the controller would have written: this node, an enrolled namespace, one pod.
  const seed = `
    const { RegistryStore } = require(${JSON.stringify(join(ROOT, 'dist', 'registry', 'store.js'))});
    const f = require(${JSON.stringify(join(ROOT, 'dist', 'registry', 'fixtures.js'))});
    const s = RegistryStore.connect(${JSON.stringify({
      url: envOf(find('Deployment', 'weft-controller')).WEFT_REDIS_URL, username: 'weft-controller',
      passwordFile: join(secrets, 'weft-redis-user-controller', 'password'), caFile: caBundle,
    })});
    s.apply([
      { op: 'put', kind: 'node', record: f.nodeRecord('node-1', '${NODE_IP}') },
      { op: 'put', kind: 'namespace', record: f.ambientNamespace('demo') },
      { op: 'put', kind: 'workload', record: f.workloadRecord({ namespace: 'demo', name: 'echo-1', node: 'node-1', addresses: ['203.0.113.5'], serviceAccount: 'echo' }) },
    ]).then(() => s.close()).then(() => console.log('seeded'));`;
  t.match((await topo.exec(ns, process.execPath, ['-e', seed], { timeoutMs: 15_000 })).stdout, /seeded/);

  // The ztunnel's pod as the API server knows it, and the token the kubelet would
  // project for it (audience weft-ca).
  const ds = find('DaemonSet', 'weft-ztunnel');
  const podSpec = (ds.spec as { template: { spec: { serviceAccountName: string } } }).template.spec;
  api.put('pods', { metadata: { name: 'weft-ztunnel-smoke', namespace: ds.metadata.namespace }, spec: { nodeName: 'node-1', serviceAccountName: podSpec.serviceAccountName } });
  api.put('nodes', { metadata: { name: 'node-1' } });
  const saToken = reviews.issueForPod(ds.metadata.namespace!, 'weft-ztunnel-smoke', { audiences: ['weft-ca'] });
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, saToken);

  const zc = podContainers(ds)[0]!;
  t.equal(zc.command, undefined, 'the image entry point (node dist/cli/main.js) runs the args');
  const zEnv = envOf(ds);
  t.ok(zEnv.WEFT_JOIN_SA_TOKEN_FILE, 'the manifest names the token file');
  t.equal(zEnv.WEFT_REDIS_USERNAME, 'weft-ztunnel', 'the ztunnel is Redis user weft-ztunnel');
  t.ok(zEnv.WEFT_TRUST_ANCHOR_FILE, 'and the trust-anchor file');
  const caHost = config.WEFT_CA_ADDRESS!.split(':')[0]!;
  const ztunnel = run([process.execPath, MAIN, ...(zc.args as string[])], {
    ...zEnv,
    // The Service name does not resolve here; dial loopback but check the CA
    // certificate for the very name the manifests dial.
    WEFT_CA_ADDRESS: '127.0.0.1:15012', WEFT_CA_SERVER_NAME: caHost,
    WEFT_NODE_NAME: 'node-1', WEFT_NODE_ADDRESS: NODE_IP,
    WEFT_JOIN_SA_TOKEN_FILE: tokenFile, WEFT_TRUST_ANCHOR_FILE: anchorFile,
  });
  await until('ztunnel ready on 15021', ztunnel, async () => (await httpGet('http://127.0.0.1:15021/healthz/ready')).status === 200);
  t.ok(reviews.reviews.some((r) => r.token === saToken && r.audiences.join() === 'weft-ca' && r.authorization === 'Bearer ca-sa-token'),
    'the CA reviewed the ztunnel\'s token for audience weft-ca with its own credential');
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === `/api/v1/namespaces/${ds.metadata.namespace}/pods/weft-ztunnel-smoke`),
    'and checked the pod runs on the node');
  t.notMatch(output.get(ztunnel), /join token for node/, 'no token minted from Redis');
  t.ok(reviews.reviews.filter((r) => r.token === saToken).length >= 1 && api.requests.some((r) => r.path === '/api/v1/nodes/node-1'),
    'the CA checked the node too');

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
  t.match(after.stdout, /203\.0\.113\.5/, 'and left its rules in place: enrolled traffic fails closed until the next ztunnel');
  await topo.exec(ns, process.execPath, [MAIN, 'ztunnel', '--cleanup']);
  const cleaned = await topo.exec(ns, 'sh', ['-c', 'iptables-save; ip6tables-save']);
  t.notMatch(cleaned.stdout, /WEFT-/, 'weft ztunnel --cleanup (uninstall) removes them, IPv4 and IPv6, nat and filter');
});
