import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { controllerConfig, controllerSpecs } from '../src/controller/command';
import { startControllerApp } from '../src/controller/app';
import { parseOptions } from '../src/lib/options';
import { silentLogger } from '../src/lib/log';
import { RegistryStore } from '../src/registry/store';
import { TestApiServer, namespaceObj, nodeObj } from './helpers/apiserver';
import { freePort, startRedis, type TestRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';

const ROOT = join(__dirname, '..');

let redis: TestRedis;
t.before(async () => {
  redis = await startRedis();
});
t.teardown(() => redis.stop());

function kubeconfig(dir: string, server: string): string {
  const file = join(dir, 'kubeconfig');
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'contexts: [{name: test, context: {cluster: c, user: u}}]',
    `clusters: [{name: c, cluster: {server: "${server}"}}]`,
    'users: [{name: u, user: {token: t0k}}]', '',
  ].join('\n'));
  return file;
}

t.test('flags: defaults, kubeconfig, bad values name the flag', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = kubeconfig(dir, 'https://10.0.0.1:6443');
  const { values } = parseOptions(controllerSpecs, ['--kubeconfig', file, '--lease-duration', '20s'], {});
  const c = controllerConfig(values, {});
  t.match(c, {
    cluster: { server: 'https://10.0.0.1:6443', token: 't0k' }, clusterDomain: 'cluster.local', leaseNamespace: 'weft-system',
    leaseName: 'weft-controller', leaseDurationSeconds: 20, leaderElection: true, metricsListen: { host: '0.0.0.0', port: 15014 },
  });
  t.equal(c.istioRootNamespace, 'istio-system', 'Istio\'s default root namespace');
  t.same(c.waypoints!.telemetry, { traceSampling: 0.01, otlpEndpoint: '' }, 'the waypoints\' tracing defaults');
  const traced = controllerConfig(parseOptions(controllerSpecs, ['--kubeconfig', file], { WEFT_OTLP_ENDPOINT: 'http://otel-collector.observability:4317', WEFT_TRACE_SAMPLING: '5%' }).values, {});
  t.same(traced.waypoints!.telemetry, { traceSampling: 0.05, otlpEndpoint: 'http://otel-collector.observability:4317' }, 'from weft-config\'s variables, for the waypoints');
  t.throws(() => parseOptions(controllerSpecs, ['--otlp-endpoint', 'grpc://x:4317'], {}), { code: 'WEFT_CONFIG_INVALID', message: /otlp-endpoint/ });
  t.equal(controllerConfig(parseOptions(controllerSpecs, ['--kubeconfig', file, '--istio-root-namespace', 'mesh-root'], {}).values, {}).istioRootNamespace, 'mesh-root');
  t.throws(() => parseOptions(controllerSpecs, ['--istio-root-namespace', 'Istio.System'], {}), { code: 'WEFT_CONFIG_INVALID', message: /istio-root-namespace/ });
  t.match(c.identity, /-\d+$/);
  t.throws(() => parseOptions(controllerSpecs, ['--cluster-domain', 'Bad_Domain'], {}), { code: 'WEFT_CONFIG_INVALID', message: /cluster-domain/ });
  t.throws(() => controllerConfig(parseOptions(controllerSpecs, [], {}).values, {}), { code: 'WEFT_CONFIG_INVALID', message: /--kubeconfig/ });
});

t.test('app: readiness, metrics, lease released on stop', async (t) => {
  const api = await TestApiServer.start();
  t.teardown(() => api.stop());
  api.put('nodes', nodeObj('n1', '203.0.113.10'));
  const prefix = `weft-${randomBytes(4).toString('hex')}:`;
  const app = await startControllerApp({
    cluster: { server: api.url }, redis: redis.url, redisPrefix: prefix, clusterDomain: 'cluster.local',
    leaseNamespace: 'weft-system', leaseName: 'weft-controller', identity: 'me', leaseDurationSeconds: 15,
    leaderElection: true, metricsListen: { host: '127.0.0.1', port: 0 },
  }, silentLogger());
  let stopped = false;
  t.teardown(() => (stopped ? undefined : app.stop()));
  const base = `http://127.0.0.1:${app.metricsPort}`;
  await waitFor('ready', async () => (await fetch(`${base}/healthz/ready`)).status === 200);
  t.match(await (await fetch(`${base}/healthz/ready`)).text(), /ready \((leader|follower)\)/);
  const store = RegistryStore.connect(redis.url, { prefix });
  t.teardown(() => store.close());
  await waitFor('node written', async () => (await store.get('node', 'n1')) !== undefined);
  const text = await (await fetch(`${base}/metrics`)).text();
  t.match(text, /weft_controller_leader 1/);
  t.match(text, /weft_controller_desired_records\{kind="node"\} 1/);
  t.equal(api.get('leases', 'weft-system', 'weft-controller')?.spec.holderIdentity, 'me');
  await app.stop();
  stopped = true;
  t.equal(api.get('leases', 'weft-system', 'weft-controller')?.spec.holderIdentity, '', 'released');
});

t.test('weft controller process: syncs, SIGTERM releases the lease and exits 0', async (t) => {
  const api = await TestApiServer.start({ token: 't0k' });
  t.teardown(() => api.stop());
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  const dir = mkdtempSync(join(tmpdir(), 'weft-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn(process.execPath, [
    `--import=${pathToFileURL(join(ROOT, 'node_modules', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs')).href}`,
    join(ROOT, 'src', 'cli', 'main.ts'), 'controller', '--kubeconfig', kubeconfig(dir, api.url),
    '--redis-url', redis.url, '--identity', 'proc-1', '--metrics-listen', `127.0.0.1:${port}`, '--log-level', 'warn',
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  // The child compiles the CLI's TypeScript as it loads it: on a loaded 2-core CI machine
  // that alone took more than the default 15 s once.
  await waitFor('namespace written', async () => (await store.get('namespace', 'demo')) !== undefined, { timeoutMs: 90_000 }).catch((err: Error) => {
    throw new Error(`${err.message}; output: ${stderr}`);
  });
  t.equal(api.get('leases', 'weft-system', 'weft-controller')?.spec.holderIdentity, 'proc-1');
  child.kill('SIGTERM');
  t.equal(await exited, 0, stderr);
  t.equal(api.get('leases', 'weft-system', 'weft-controller')?.spec.holderIdentity, '', 'lease released on SIGTERM');
  await store.delete('namespace', 'demo');
});
