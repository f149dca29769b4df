import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisFixture } from './helpers/redis';
import { startCaApp, type CaAppConfig } from '../src/ca/app';
import { caConfig, caSpecs, tokenCommand } from '../src/ca/command';
import { CaClient } from '../src/ca/client';
import { generateKeyAndCsr, generateRootCa } from '../src/ca/issuer';
import { obtainRoot, ROOT_REDIS_KEY } from '../src/ca/root-store';
import { initRootCommand } from '../src/ca/command';
import { parseOptions } from '../src/lib/options';
import { silentLogger } from '../src/lib/log';
import { RegistryStore } from '../src/registry/store';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { isWeftError } from '../src/lib/errors';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`;

const fx = redisFixture(t);
let dir: string;

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weft-ca-test-'));
});
t.teardown(async () => {
  rmSync(dir, { recursive: true, force: true });
});

function config(extra: Partial<CaAppConfig> = {}): CaAppConfig {
  return {
    ...caConfig(parseOptions(caSpecs, ['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--redis-url', fx.redis.url,
      '--root-dir', join(dir, 'default-root'), '--generate-root'], {}).values),
    ...extra,
  };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}: ${String(last)}`);
}

t.test('weft ca end to end: token command, root made by init-root, published root, registry-backed authorization', async (t) => {
  const lines: string[] = [];
  t.equal(await tokenCommand(['--node', 'node-1', '--redis-url', fx.redis.url, '--ttl', '10m'], (s) => lines.push(s)), 0);
  const token = lines[0]!;
  t.match(token, /^weft-join\./);

  const rootDir = join(dir, 'root');
  const printed: string[] = [];
  t.equal(await initRootCommand(['--dir', rootDir], (s) => printed.push(s)), 0);
  t.same(printed, [join(rootDir, 'root-cert.pem')], 'init-root prints the certificate file');
  await t.rejects(initRootCommand(['--dir', rootDir], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /already exists.*never overwritten/ },
    'init-root never overwrites a root');
  const rootOut = join(dir, 'published', 'root.pem');
  const app = await startCaApp(config({ root: { kind: 'dir', dir: rootDir }, generateRoot: false, rootOut }), silentLogger());
  t.teardown(() => app.stop());
  t.equal(app.rootPem, readFileSync(join(rootDir, 'root-cert.pem'), 'utf8'), 'the CA signs with the init-root root');
  t.equal(readFileSync(rootOut, 'utf8').trim(), app.rootPem.trim(), 'root published to --root-out');
  t.same(await fx.client.keys('weft:ca:root*'), [], 'neither the root nor its certificate is put in Redis');
  t.equal(statSync(join(rootDir, 'root-key.pem')).mode & 0o777, 0o600, 'root key is private');
  t.notOk(readFileSync(rootOut, 'utf8').includes('PRIVATE KEY'), 'only the public part is published');

  const store = RegistryStore.connect(fx.redis.url);
  t.teardown(() => store.close());
  await store.apply([
    { op: 'put', kind: 'node', record: nodeRecord('node-1', '198.51.100.11') },
    { op: 'put', kind: 'namespace', record: ambientNamespace('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a', addresses: ['198.51.100.50'] }) },
  ]);

  const client = new CaClient({ address: `127.0.0.1:${app.port}`, rootPem: readFileSync(rootOut, 'utf8'), trustDomain: TD });
  t.teardown(() => client.close());
  await client.join('node-1', token);
  const { csrPem } = await generateKeyAndCsr();
  const chain = await until('the CA to see the workload', async () => client.createCertificate(csrPem, 0, ID_A));
  t.equal(new X509Certificate(chain[0]!).subjectAltName, `URI:${ID_A}`);

  const ready = await fetch(`http://127.0.0.1:${app.metricsPort}/healthz/ready`);
  t.equal(ready.status, 200);
  const text = await (await fetch(`http://127.0.0.1:${app.metricsPort}/metrics`)).text();
  t.match(text, /weft_ca_requests_total\{method="Join",result="ok"\} 1/);
  t.match(text, /weft_registry_revision/);

  await app.stop();
  const again = await startCaApp(config({ root: { kind: 'dir', dir: rootDir }, generateRoot: false }), silentLogger());
  t.teardown(() => again.stop());
  t.equal(again.rootPem, app.rootPem, 'a restart keeps the root');
});

t.test('flag validation names the flag', async (t) => {
  const v = (argv: string[]) => caConfig(parseOptions(caSpecs, [...(argv.some((a) => a.startsWith('--root')) ? [] : ['--root-dir', '/r']), ...argv], {}).values);
  t.throws(() => v(['--root-cert', 'a.pem']), { code: 'WEFT_CONFIG_INVALID', message: /--root-cert without --root-key/ });
  t.throws(() => v(['--root-key', 'a.pem']), { code: 'WEFT_CONFIG_INVALID', message: /--root-key without --root-cert/ });
  t.throws(() => v(['--root-cert', 'a', '--root-key', 'b', '--root-dir', 'c']), { code: 'WEFT_CONFIG_INVALID', message: /--root-dir/ });
  t.throws(() => caConfig(parseOptions(caSpecs, [], {}).values), { code: 'WEFT_CONFIG_INVALID', message: /no CA root given.*--root-dir.*init-root/ },
    'no root source: no Redis fallback');
  t.throws(() => v(['--root-in-redis', '--kube-token-review']), { code: 'WEFT_CONFIG_INVALID', message: /--root-in-redis together with --kube-token-review/ });
  t.throws(() => v(['--root-in-redis', '--root-dir', 'c']), { code: 'WEFT_CONFIG_INVALID', message: /choose one root source/ });
  t.throws(() => v(['--root-cert', 'a', '--root-key', 'b', '--generate-root']), { code: 'WEFT_CONFIG_INVALID', message: /--generate-root.*init-root/ });
  t.throws(() => v(['--max-cert-ttl', '91d']), { code: 'WEFT_CONFIG_INVALID', message: /--max-cert-ttl.*at most 90d/ });
  t.throws(() => v(['--csr-rate', '0']), { code: 'WEFT_CONFIG_INVALID', message: /--csr-rate/ });
  t.throws(() => v(['--join-rate', 'x']), { code: 'WEFT_CONFIG_INVALID', message: /--join-rate/ });
  t.same(v(['--root-in-redis']).root, { kind: 'redis' }, 'Redis only when asked for (lab/dev)');
  t.throws(() => v(['--ip', '10.0.0.1,nope']), { code: 'WEFT_CONFIG_INVALID', message: /--ip.*nope.*not an IP/ });
  t.throws(() => v(['--dns-name', 'bad_name']), { code: 'WEFT_CONFIG_INVALID', message: /--dns-name/ });
  t.throws(() => v(['--listen', 'nope']), { code: 'WEFT_CONFIG_INVALID', message: /--listen/ });
  t.throws(() => v(['--cert-ttl', '10s']), { code: 'WEFT_CONFIG_INVALID', message: /--cert-ttl.*at least 1m/ });
  t.throws(() => v(['--trust-domain', 'Bad_TD']), { code: 'WEFT_CONFIG_INVALID', message: /--trust-domain/ });
  const d = v(['--listen', '198.51.100.1:15012', '--ip', '198.51.100.2', '--dns-name', 'ca.weft-system']);
  t.same(d.ipAddresses, ['127.0.0.1', '198.51.100.2', '198.51.100.1']);
  t.same(d.dnsNames, ['localhost', 'ca.weft-system']);
  t.same(d.root, { kind: 'dir', dir: '/r' });
  t.notOk(d.generateRoot, 'never generated unless asked');
  t.equal(d.certTtlMs, 24 * 3600e3);
  t.equal(d.maxCertTtlMs, 90 * 24 * 3600e3);
  t.equal(v(['--metrics-listen', 'off']).metricsListen, undefined);
  t.same(v(['--root-cert', 'a', '--root-key', 'b']).root, { kind: 'files', certFile: 'a', keyFile: 'b' });
  await t.rejects(tokenCommand(['--node', 'Bad_Node', '--redis-url', fx.redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--node/ });
  await t.rejects(tokenCommand(['--redis-url', fx.redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--node/ });
  t.rejects(startCaApp(config({ maxCertTtlMs: 3600e3 }), silentLogger()), { code: 'WEFT_CONFIG_INVALID', message: /--cert-ttl/ });
});

t.test('root storage: files, directory, Redis (lab only); a missing root is an error, never a new root', async (t) => {
  const logger = silentLogger();
  const opts = { redis: fx.client, trustDomain: TD, logger };

  // Redis (--root-in-redis): missing without --generate-root fails and writes nothing.
  await fx.client.del(ROOT_REDIS_KEY);
  await t.rejects(obtainRoot({ kind: 'redis' }, opts), { code: 'WEFT_CA_ROOT_MISSING', message: /weft:ca:root.*does not mint a new one silently.*--generate-root/ });
  t.equal(await fx.client.exists(ROOT_REDIS_KEY), 0, 'no root was minted');
  const [r1, r2] = await Promise.all([
    obtainRoot({ kind: 'redis' }, { ...opts, generate: true }),
    obtainRoot({ kind: 'redis' }, { ...opts, generate: true }),
  ]);
  t.equal(r1.pair.certPem, r2.pair.certPem, 'racing CAs with --generate-root converge on one root');
  t.equal((await obtainRoot({ kind: 'redis' }, opts)).pair.certPem, r1.pair.certPem, 'reloaded without --generate-root');
  await fx.client.set(ROOT_REDIS_KEY, 'garbage');
  await t.rejects(obtainRoot({ kind: 'redis' }, { ...opts, generate: true }), { code: 'WEFT_CA_ROOT_INVALID' }, 'a corrupt root is not replaced either');
  await fx.client.del(ROOT_REDIS_KEY);

  const pair = await generateRootCa({ trustDomain: TD });
  const certFile = join(dir, 'op-root.pem');
  const keyFile = join(dir, 'op-key.pem');
  writeFileSync(certFile, pair.certPem);
  writeFileSync(keyFile, pair.keyPem);
  t.equal((await obtainRoot({ kind: 'files', certFile, keyFile }, opts)).pair.certPem, pair.certPem);
  await t.rejects(obtainRoot({ kind: 'files', certFile, keyFile: join(dir, 'missing.pem') }, opts),
    { code: 'WEFT_CA_ROOT_MISSING', message: /missing\.pem.*ENOENT.*never generates a root/ });
  await t.rejects(obtainRoot({ kind: 'files', certFile: keyFile, keyFile: certFile }, opts),
    { code: 'WEFT_CA_ROOT_INVALID' }, 'swapped files');

  // Directory: an empty one is an error unless --generate-root; nothing appears in it.
  const empty = join(dir, 'empty-root');
  await t.rejects(obtainRoot({ kind: 'dir', dir: empty }, opts), { code: 'WEFT_CA_ROOT_MISSING', message: /no CA root in --root-dir=.*init-root/ });
  t.notOk(existsSync(join(empty, 'root-key.pem')) || existsSync(join(empty, 'root-cert.pem')), 'no root was minted');
  const half = join(dir, 'half');
  await obtainRoot({ kind: 'dir', dir: half }, { ...opts, generate: true });
  rmSync(join(half, 'root-cert.pem'));
  await t.rejects(obtainRoot({ kind: 'dir', dir: half }, { ...opts, generate: true }),
    { code: 'WEFT_CA_ROOT_INVALID', message: /only root-key\.pem/ });
  t.ok(existsSync(join(half, 'root-key.pem')), 'nothing was overwritten');
  t.notOk(existsSync(join(half, 'root-cert.pem')), 'and nothing generated');
});

t.test('weft ca refuses to start when its root is gone, and mints none', async (t) => {
  const rootDir = join(dir, 'lost-root');
  const err = await startCaApp(config({ root: { kind: 'dir', dir: rootDir }, generateRoot: false }), silentLogger()).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_CA_ROOT_MISSING'), 'WEFT_CA_ROOT_MISSING');
  t.match((err as Error).message, /weft ca init-root --dir/);
  t.notOk(existsSync(join(rootDir, 'root-cert.pem')), 'no root was written');
});

t.test('a CA that cannot reach Redis says so', async (t) => {
  const err = await startCaApp({ ...config(), redis: 'redis://127.0.0.1:1' }, silentLogger()).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE'));
  t.match((err as Error).message, /--redis-url/);
});
