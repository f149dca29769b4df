import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, type TestRedis } from './helpers/redis';
import { startCaApp, type CaAppConfig } from '../src/ca/app';
import { caConfig, caSpecs, tokenCommand } from '../src/ca/command';
import { CaClient } from '../src/ca/client';
import { generateKeyAndCsr, generateRootCa } from '../src/ca/issuer';
import { obtainRoot, publishRoot, ROOT_CERT_REDIS_KEY, ROOT_REDIS_KEY } from '../src/ca/root-store';
import { parseOptions } from '../src/lib/options';
import { silentLogger } from '../src/lib/log';
import { RegistryStore } from '../src/registry/store';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { isWeftError } from '../src/lib/errors';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`;

let redis: TestRedis;
let redisClient: Redis;
let dir: string;

t.before(async () => {
  redis = await startRedis();
  redisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  dir = mkdtempSync(join(tmpdir(), 'weft-ca-test-'));
});
t.teardown(async () => {
  redisClient?.disconnect();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function config(extra: Partial<CaAppConfig> = {}): CaAppConfig {
  return {
    ...caConfig(parseOptions(caSpecs, ['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--redis-url', redis.url], {}).values),
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

t.test('weft ca end to end: token command, root in a directory, published root, registry-backed authorization', async (t) => {
  const lines: string[] = [];
  t.equal(await tokenCommand(['--node', 'node-1', '--redis-url', redis.url, '--ttl', '10m'], (s) => lines.push(s)), 0);
  const token = lines[0]!;
  t.match(token, /^weft-join\./);

  const rootDir = join(dir, 'root');
  const rootOut = join(dir, 'published', 'root.pem');
  const app = await startCaApp(config({ root: { kind: 'dir', dir: rootDir }, rootOut }), silentLogger());
  t.teardown(() => app.stop());
  t.equal(readFileSync(rootOut, 'utf8'), app.rootPem, 'root published to --root-out');
  t.equal(await redisClient.get(ROOT_CERT_REDIS_KEY), app.rootPem, 'root published to Redis');
  t.equal(statSync(join(rootDir, 'root-key.pem')).mode & 0o777, 0o600, 'root key is private');
  t.notOk(readFileSync(rootOut, 'utf8').includes('PRIVATE KEY'), 'only the public part is published');

  const store = RegistryStore.connect(redis.url);
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
  const again = await startCaApp(config({ root: { kind: 'dir', dir: rootDir } }), silentLogger());
  t.teardown(() => again.stop());
  t.equal(again.rootPem, app.rootPem, 'a restart keeps the root');
});

t.test('flag validation names the flag', async (t) => {
  const v = (argv: string[]) => caConfig(parseOptions(caSpecs, argv, {}).values);
  t.throws(() => v(['--root-cert', 'a.pem']), { code: 'WEFT_CONFIG_INVALID', message: /--root-cert without --root-key/ });
  t.throws(() => v(['--root-key', 'a.pem']), { code: 'WEFT_CONFIG_INVALID', message: /--root-key without --root-cert/ });
  t.throws(() => v(['--root-cert', 'a', '--root-key', 'b', '--root-dir', 'c']), { code: 'WEFT_CONFIG_INVALID', message: /--root-dir/ });
  t.throws(() => v(['--ip', '10.0.0.1,nope']), { code: 'WEFT_CONFIG_INVALID', message: /--ip.*nope.*not an IP/ });
  t.throws(() => v(['--dns-name', 'bad_name']), { code: 'WEFT_CONFIG_INVALID', message: /--dns-name/ });
  t.throws(() => v(['--listen', 'nope']), { code: 'WEFT_CONFIG_INVALID', message: /--listen/ });
  t.throws(() => v(['--cert-ttl', '10s']), { code: 'WEFT_CONFIG_INVALID', message: /--cert-ttl.*at least 1m/ });
  t.throws(() => v(['--trust-domain', 'Bad_TD']), { code: 'WEFT_CONFIG_INVALID', message: /--trust-domain/ });
  const d = v(['--listen', '198.51.100.1:15012', '--ip', '198.51.100.2', '--dns-name', 'ca.weft-system']);
  t.same(d.ipAddresses, ['127.0.0.1', '198.51.100.2', '198.51.100.1']);
  t.same(d.dnsNames, ['localhost', 'ca.weft-system']);
  t.same(d.root, { kind: 'redis' });
  t.equal(d.certTtlMs, 24 * 3600e3);
  t.equal(d.maxCertTtlMs, 90 * 24 * 3600e3);
  t.equal(v(['--metrics-listen', 'off']).metricsListen, undefined);
  t.same(v(['--root-cert', 'a', '--root-key', 'b']).root, { kind: 'files', certFile: 'a', keyFile: 'b' });
  await t.rejects(tokenCommand(['--node', 'Bad_Node', '--redis-url', redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--node/ });
  await t.rejects(tokenCommand(['--redis-url', redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--node/ });
  t.rejects(startCaApp(config({ maxCertTtlMs: 3600e3 }), silentLogger()), { code: 'WEFT_CONFIG_INVALID', message: /--cert-ttl/ });
});

t.test('root storage: Redis (one root for racing replicas), files, directory; broken roots refused', async (t) => {
  const logger = silentLogger();
  await redisClient.del(ROOT_REDIS_KEY);
  const [r1, r2] = await Promise.all([
    obtainRoot({ kind: 'redis' }, { redis: redisClient, trustDomain: TD, logger }),
    obtainRoot({ kind: 'redis' }, { redis: redisClient, trustDomain: TD, logger }),
  ]);
  t.equal(r1.certPem, r2.certPem, 'racing CAs converge on one root');
  t.equal((await obtainRoot({ kind: 'redis' }, { redis: redisClient, trustDomain: TD, logger })).certPem, r1.certPem, 'reloaded');
  await redisClient.set(ROOT_REDIS_KEY, 'garbage');
  await t.rejects(obtainRoot({ kind: 'redis' }, { redis: redisClient, trustDomain: TD, logger }), { code: 'WEFT_CA_ROOT_INVALID' });

  const pair = await generateRootCa({ trustDomain: TD });
  const certFile = join(dir, 'op-root.pem');
  const keyFile = join(dir, 'op-key.pem');
  writeFileSync(certFile, pair.certPem);
  writeFileSync(keyFile, pair.keyPem);
  t.equal((await obtainRoot({ kind: 'files', certFile, keyFile }, { redis: redisClient, trustDomain: TD, logger })).certPem, pair.certPem);
  await t.rejects(obtainRoot({ kind: 'files', certFile, keyFile: join(dir, 'missing.pem') }, { redis: redisClient, trustDomain: TD, logger }),
    { code: 'WEFT_CA_ROOT_INVALID', message: /missing\.pem.*ENOENT/ });
  await t.rejects(obtainRoot({ kind: 'files', certFile: keyFile, keyFile: certFile }, { redis: redisClient, trustDomain: TD, logger }),
    { code: 'WEFT_CA_ROOT_INVALID' }, 'swapped files');

  const half = join(dir, 'half');
  await obtainRoot({ kind: 'dir', dir: half }, { redis: redisClient, trustDomain: TD, logger });
  rmSync(join(half, 'root-cert.pem'));
  await t.rejects(obtainRoot({ kind: 'dir', dir: half }, { redis: redisClient, trustDomain: TD, logger }),
    { code: 'WEFT_CA_ROOT_INVALID', message: /only root-key\.pem/ });
  t.ok(existsSync(join(half, 'root-key.pem')), 'nothing was overwritten');

  await publishRoot(pair.certPem, { redis: redisClient });
  t.equal(await redisClient.get(ROOT_CERT_REDIS_KEY), pair.certPem);
});

t.test('a CA that cannot reach Redis says so', async (t) => {
  const err = await startCaApp({ ...config(), redisUrl: 'redis://127.0.0.1:1' }, silentLogger()).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE'));
  t.match((err as Error).message, /--redis-url/);
});
