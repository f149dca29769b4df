/**
 * Redis as the manifests run it, for real: scripts/redis-secrets makes the ACL file
 * (from daemonset/redis-acl.rules), the CA and the server certificate; redis-server
 * serves TLS only with that ACL file. Each component then connects through the code
 * it runs in production (RegistryStore, RegistryFollower, the CLI) with its own user,
 * password file and CA bundle, and must be able to do its job and nothing more: the
 * ztunnel and the CA cannot write a record or touch weft:ca:*, the controller cannot
 * read the CA's keys or administer Redis, and nobody gets in without a password or
 * over plaintext.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import YAML from 'yaml';
import type { RedisConnection } from '../src/lib/common-options';
import { openRedis } from '../src/registry/connection';
import { RegistryFollower } from '../src/registry/follower';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import { RegistryStore } from '../src/registry/store';
import namespace from '../src/cli/commands/namespace';
import workloads from '../src/cli/commands/workloads';
import { captureIo, tempDir } from './helpers/cli';
import { startRedis } from './helpers/redis';
import { caught, waitFor } from './helpers/wait';

const ROOT = join(__dirname, '..');
const USERS = ['weft-controller', 'weft-ztunnel', 'weft-ca', 'weft-operator', 'weft-waypoint'] as const;
type User = typeof USERS[number];

t.test('each component\'s Redis user can do its job over TLS, and no more', async (t) => {
  const tmp = tempDir('weft-redis-acl-');
  t.teardown(() => tmp.remove());
  const dir = join(tmp.dir, 'secrets');
  // The very script an operator runs; --san because the test dials 127.0.0.1.
  const yaml = execFileSync(join(ROOT, 'scripts', 'redis-secrets'), ['--dir', dir, '--san', 'IP:127.0.0.1'], { encoding: 'utf8' });
  const secrets = YAML.parseAllDocuments(yaml).map((d) => d.toJS() as { kind: string; type: string; metadata: { name: string; namespace: string }; data: Record<string, string> });
  t.same(secrets.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`).sort(),
    ['weft-redis-acl', 'weft-redis-tls', ...USERS.map((u) => `weft-redis-user-${u.slice(5)}`)].map((n) => `Secret/weft-system/${n}`).sort(),
    'one Secret for Redis\' users, one for its certificate, one per component');
  for (const o of secrets) {
    for (const [key, b64] of Object.entries(o.data)) {
      t.equal(Buffer.from(b64, 'base64').toString(), readFileSync(join(dir, o.metadata.name, key), 'utf8'), `${o.metadata.name}/${key} as kept in --dir`);
    }
  }
  t.same(Object.keys(secrets.find((o) => o.metadata.name === 'weft-redis-user-ztunnel')!.data).sort(), ['ca.crt', 'password'],
    'a component gets its password and the CA bundle, nothing else');
  const acl = readFileSync(join(dir, 'weft-redis-acl', 'users.acl'), 'utf8');
  t.match(acl, /^user default off\n/, 'the default user is off');
  t.notMatch(acl, new RegExp(readFileSync(join(dir, 'weft-redis-user-ztunnel', 'password'), 'utf8').trim()), 'the ACL file holds hashes, not passwords');

  const redis = await startRedis({
    tls: { certFile: join(dir, 'weft-redis-tls', 'tls.crt'), keyFile: join(dir, 'weft-redis-tls', 'tls.key'), caFile: join(dir, 'ca.crt') },
    aclFile: join(dir, 'weft-redis-acl', 'users.acl'),
  });
  t.teardown(() => redis.stop());
  t.match(redis.url, /^rediss:/);
  const passwordOf = (user: User): string => join(dir, `weft-redis-user-${user.slice(5)}`, 'password');
  const as = (user: User): RedisConnection => ({
    url: redis.url, username: user, passwordFile: passwordOf(user), caFile: join(dir, `weft-redis-user-${user.slice(5)}`, 'ca.crt'),
  });
  const clients: Redis[] = [];
  t.teardown(() => { for (const c of clients) c.disconnect(); });
  const raw = (target: RedisConnection): Redis => {
    const c = openRedis(target, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 3000 });
    c.on('error', () => { /* asserted through the commands */ });
    clients.push(c);
    return c;
  };
  /** Every command must be refused by the ACL (NOPERM), whatever the key's state. */
  const refuses = async (user: User, commands: (string | number)[][]): Promise<void> => {
    const c = raw(as(user));
    for (const [cmd, ...args] of commands) {
      const err = await caught(() => c.call(String(cmd), ...args));
      t.match(err.message, /NOPERM/, `${user} may not ${[cmd, ...args].join(' ')}`);
    }
  };

  await t.test('no way in without credentials, over plaintext, or with an unknown CA', async (t) => {
    const anon = raw({ url: redis.url, caFile: join(dir, 'ca.crt') });
    t.match((await caught(() => anon.ping())).message, /NOAUTH/, 'an unauthenticated client is refused');
    t.match((await caught(() => anon.call('AUTH', 'default', 'anything'))).message, /WRONGPASS|disabled/, 'the default user is off');
    const wrong = join(tmp.dir, 'wrong.password');
    writeFileSync(wrong, 'not-the-password\n');
    const bad = raw({ ...as('weft-controller'), passwordFile: wrong });
    t.match((await caught(() => bad.connect().then(() => bad.ping()))).message, /WRONGPASS|invalid username-password/, 'a wrong password is refused');
    const plain = raw({ url: redis.url.replace('rediss:', 'redis:'), username: 'weft-controller', passwordFile: passwordOf('weft-controller') });
    t.ok(await caught(() => plain.connect().then(() => plain.ping())), 'plaintext to the TLS port fails');
    // A server certificate from another CA (a man in the middle) is not trusted.
    const other = join(tmp.dir, 'other');
    execFileSync(join(ROOT, 'scripts', 'redis-secrets'), ['--dir', other, '--san', 'IP:127.0.0.1']);
    const mitm = raw({ ...as('weft-controller'), caFile: join(other, 'ca.crt') });
    // ioredis rejects with "Connection is closed"; the cause arrives on 'error'.
    let cause: Error | undefined;
    mitm.on('error', (err: Error) => { cause = err; });
    await caught(() => mitm.connect().then(() => mitm.ping()));
    t.match(cause?.message, /certificate|self.signed|unable to verify/i, 'a server outside the CA bundle is refused');
  });

  await t.test('a client certificate, for a Redis that demands one', async (t) => {
    const strict = await startRedis({
      tls: { certFile: join(dir, 'weft-redis-tls', 'tls.crt'), keyFile: join(dir, 'weft-redis-tls', 'tls.key'), caFile: join(dir, 'ca.crt'), authClients: 'yes' },
      aclFile: join(dir, 'weft-redis-acl', 'users.acl'),
    });
    t.teardown(() => strict.stop());
    // A client certificate signed by the CA the script made (its key stays in --dir).
    const key = join(tmp.dir, 'client.key');
    const csr = join(tmp.dir, 'client.csr');
    const cert = join(tmp.dir, 'client.crt');
    execFileSync('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=weft-ztunnel'], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial',
      '-CAserial', join(tmp.dir, 'ca.srl'), '-days', '1', '-out', cert], { stdio: 'ignore' });
    const target = { ...as('weft-ztunnel'), url: strict.url };
    const withCert = raw({ ...target, certFile: cert, keyFile: key });
    t.equal(await withCert.ping(), 'PONG', 'with --redis-cert-file/--redis-key-file the handshake and AUTH succeed');
    const without = raw(target);
    t.ok(await caught(() => without.connect().then(() => without.ping())), 'without a client certificate the server refuses');
  });

  const store = RegistryStore.connect(as('weft-controller'));
  t.teardown(() => store.close());

  await t.test('weft-controller writes the registry and nothing else', async (t) => {
    const rev = await store.apply([
      { op: 'put', kind: 'node', record: nodeRecord('node-1', '10.0.0.1') },
      { op: 'put', kind: 'namespace', record: ambientNamespace('demo') },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', addresses: ['10.1.0.1'] }) },
    ]);
    t.equal(rev, 1, 'apply (the Lua script and every command it calls) works');
    t.equal((await store.snapshot()).records.workload.length, 1, 'and so does a snapshot');
    await store.setNamespaceLabel('demo', 'team', 'a');
    t.same((await store.get('namespace', 'demo'))?.labels.team, 'a', 'compare-and-set label edit');
    await refuses('weft-controller', [
      ['GET', 'weft:ca:root'], ['SET', 'weft:ca:join:node-1', 'x'], ['SET', 'other', 'x'], ['DEL', 'weft:workload'],
      ['KEYS', '*'], ['FLUSHALL'], ['CONFIG', 'GET', '*'], ['INFO'], ['ACL', 'LIST'], ['SUBSCRIBE', 'x'], ['SELECT', '1'],
    ]);
  });

  for (const user of ['weft-ztunnel', 'weft-ca', 'weft-waypoint'] as const) {
    await t.test(`${user} follows the registry, read-only`, async (t) => {
      const state = new MeshState({ trustDomain: 'cluster.local' });
      const follower = new RegistryFollower({ url: as(user), state, blockMs: 200 });
      t.teardown(() => follower.stop());
      await follower.start();
      t.ok(state.workload('demo/a'), 'snapshot loaded');
      await store.put('workload', workloadRecord({ namespace: 'demo', name: `by-${user}`, node: 'node-1', addresses: ['10.1.0.9'] }));
      await waitFor('the change reaches the follower', () => state.workload(`demo/by-${user}`) !== undefined);
      t.pass('stream tail (XREAD) works');

      const writer = RegistryStore.connect(as(user));
      t.teardown(() => writer.close());
      const err = await caught(() => writer.put('workload', workloadRecord({ namespace: 'demo', name: 'evil', node: 'node-1' })));
      t.match(err.message, /NOPERM|no permissions/, 'cannot write a workload record through the store');
      await refuses(user, [
        ['HSET', 'weft:workload', 'demo/evil', '{}'], ['HDEL', 'weft:policy', 'demo/deny'], ['XADD', 'weft:changes', '*', 'rev', '99'],
        ['SET', 'weft:revision', '0'], ['INCR', 'weft:revision'], ['DEL', 'weft:workload'], ['EVAL', 'return 1', 0],
        ['SET', 'weft:workload', 'x'], ['KEYS', '*'], ['FLUSHALL'], ['CONFIG', 'GET', '*'], ['ACL', 'LIST'],
        // Neither reads or writes any key of the CA: the root is a Secret, the trust
        // anchors a file, and nodes join with ServiceAccount tokens.
        ['GET', 'weft:ca:root'], ['GET', 'weft:ca:join:node-1'], ['GET', 'weft:ca:root-cert'], ['SET', 'weft:ca:join:node-1', 'x'],
      ]);
      t.notOk(state.workload('demo/evil'), 'nothing was written');
    });
  }

  await t.test('weft-operator runs the CLI with its flags: views and enrolment', async (t) => {
    const flags = [
      '--redis-url', redis.url, '--redis-username', 'weft-operator',
      '--redis-password-file', passwordOf('weft-operator'), '--redis-ca-file', join(dir, 'ca.crt'),
    ];
    // No context file: HOME points at an empty directory, and no kubeconfig.
    const env = { HOME: tmp.dir, KUBECONFIG: join(tmp.dir, 'none') };
    const view = captureIo(env);
    t.equal(await workloads.runWith([...flags, '-o', 'json'], view.io), 0, view.stderr());
    t.match(view.stdout(), /demo\/a|"name": "a"/, 'reads the registry');
    const enrol = captureIo(env);
    t.equal(await namespace.runWith(['unenroll', 'demo', ...flags], enrol.io), 0, enrol.stderr());
    t.notOk((await store.get('namespace', 'demo'))?.labels['weft.io/dataplane-mode'], 'unenrolled through the registry');
    await refuses('weft-operator', [['GET', 'weft:ca:root'], ['SET', 'weft:ca:join:node-1', 'x'], ['FLUSHALL'], ['CONFIG', 'GET', '*']]);
  });
});
