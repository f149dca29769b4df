/**
 * The Redis flags every component takes (src/lib/common-options.ts): each bad value
 * is refused at start naming its flag, the cross-field rules hold, and the ioredis
 * options are built from the files each time a client is made (so a rotated Secret is
 * picked up by the follower's next connection).
 */
import t from 'tap';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseOptions } from '../src/lib/options';
import { redisOptionSpecs, redisTarget } from '../src/lib/common-options';
import { describeRedis, redisOptions } from '../src/registry/connection';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { caConfig, caSpecs } from '../src/ca/command';
import { loadContext } from '../src/cli/context';
import { tempDir, writeContextFile } from './helpers/cli';

const PEM_CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const PEM_KEY = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';

t.test('Redis flags', async (t) => {
  const tmp = tempDir('weft-redis-flags-');
  t.teardown(() => tmp.remove());
  const file = (name: string, text: string): string => {
    const f = join(tmp.dir, name);
    writeFileSync(f, text);
    return f;
  };
  const pw = file('password', 's3cret\n');
  const ca = file('ca.crt', PEM_CERT);
  const cert = file('tls.crt', PEM_CERT);
  const key = file('tls.key', PEM_KEY);
  const parsed = (argv: string[]) => redisTarget(parseOptions(redisOptionSpecs, argv, {}).values);
  const refusal = (argv: string[]): string => {
    try {
      parsed(argv);
    } catch (err) {
      t.equal((err as { code?: string }).code, 'WEFT_CONFIG_INVALID');
      return (err as Error).message;
    }
    throw new Error(`accepted ${argv.join(' ')}`);
  };

  t.same(parsed([]), { url: 'redis://127.0.0.1:6379' }, 'defaults: no credentials');
  t.same(parsed(['--redis-url', 'rediss://weft-redis:6379', '--redis-username', 'weft-ztunnel', '--redis-password-file', pw,
    '--redis-ca-file', ca, '--redis-cert-file', cert, '--redis-key-file', key]), {
    url: 'rediss://weft-redis:6379', username: 'weft-ztunnel', passwordFile: pw, caFile: ca, certFile: cert, keyFile: key,
  }, 'every flag');
  const fromEnv = redisTarget(parseOptions(redisOptionSpecs, [], {
    WEFT_REDIS_URL: 'rediss://weft-redis:6379', WEFT_REDIS_USERNAME: 'weft-ca', WEFT_REDIS_PASSWORD_FILE: pw, WEFT_REDIS_CA_FILE: ca,
  }).values);
  t.same(fromEnv, { url: 'rediss://weft-redis:6379', username: 'weft-ca', passwordFile: pw, caFile: ca }, 'and their environment variables');

  t.match(refusal(['--redis-password-file', join(tmp.dir, 'absent')]), /--redis-password-file.*cannot read.*ENOENT/, 'missing password file');
  t.throws(() => parseOptions(redisOptionSpecs, [], { WEFT_REDIS_PASSWORD_FILE: join(tmp.dir, 'absent') }),
    { code: 'WEFT_CONFIG_INVALID', message: /^invalid WEFT_REDIS_PASSWORD_FILE=.*absent.*cannot read it \(ENOENT\)/ }, 'a path from the environment names its variable');
  t.match(refusal(['--redis-password-file', file('empty', '\nsecond line\n')]), /--redis-password-file.*first line is empty/, 'empty password');
  t.match(refusal(['--redis-ca-file', file('not-pem', 'hello')]), /--redis-ca-file.*no PEM certificate/, 'CA file without a certificate');
  t.match(refusal(['--redis-cert-file', key]), /--redis-cert-file.*no PEM certificate/, 'client certificate that is not one');
  t.match(refusal(['--redis-key-file', cert]), /--redis-key-file.*no PEM private key/, 'client key that is not one');
  t.match(refusal(['--redis-username', 'a@b']), /--redis-username/, 'user name with @');
  t.match(refusal(['--redis-url', 'http://h:1']), /--redis-url.*redis: or rediss:/, 'other scheme');
  t.match(refusal(['--redis-ca-file', ca]), /--redis-ca-file with a plain redis:\/\/.*rediss:\/\//, 'TLS files need rediss://');
  t.match(refusal(['--redis-url', 'rediss://h:1', '--redis-cert-file', cert]), /--redis-cert-file without --redis-key-file/, 'certificate without key');
  t.match(refusal(['--redis-url', 'rediss://h:1', '--redis-key-file', key]), /--redis-key-file without --redis-cert-file/, 'key without certificate');
  const both = refusal(['--redis-url', 'redis://u:hunter2@h:1', '--redis-password-file', pw]);
  t.match(both, /give the password once/, 'password in the URL and in a file');
  t.notMatch(both, /hunter2/, 'and the refusal does not repeat the password');
  const bad = refusal(['--redis-url', 'http://u:hunter2@h:1']);
  t.notMatch(bad, /hunter2/, 'a refused URL is shown redacted');

  t.test('Sentinel flags: addresses and master name together, each refusal naming its field', async (t) => {
    const spw = file('sentinel-password', 'sentinel-secret\n');
    const s = parsed(['--redis-url', 'rediss://weft-redis:6379', '--redis-sentinels', 's0:26379, [::1]:26380,10.0.0.3:26379',
      '--redis-master-name', 'weft-registry', '--redis-sentinel-username', 'weft-sentinel', '--redis-sentinel-password-file', spw]);
    t.same(s.sentinel, {
      addresses: [{ host: 's0', port: 26379 }, { host: '::1', port: 26380 }, { host: '10.0.0.3', port: 26379 }],
      masterName: 'weft-registry', username: 'weft-sentinel', passwordFile: spw,
    }, 'every Sentinel flag');
    t.same(redisTarget(parseOptions(redisOptionSpecs, [], { WEFT_REDIS_SENTINELS: 's0:26379', WEFT_REDIS_MASTER_NAME: 'm' }).values).sentinel,
      { addresses: [{ host: 's0', port: 26379 }], masterName: 'm' }, 'and their environment variables');
    t.match(refusal(['--redis-sentinels', 's0']), /^invalid --redis-sentinels="s0": entry 1 \("s0"\) is not host:port/, 'an address without a port');
    t.match(refusal(['--redis-sentinels', 's0:26379,s1:99999']), /--redis-sentinels.*entry 2/, 'a port out of range names its entry');
    t.match(refusal(['--redis-sentinels', 's0:26379,']), /--redis-sentinels.*entry 2/, 'an empty entry');
    t.throws(() => parseOptions(redisOptionSpecs, [], { WEFT_REDIS_SENTINELS: 'x' }), { message: /^invalid WEFT_REDIS_SENTINELS=/ }, 'from the environment: names the variable');
    t.match(refusal(['--redis-sentinels', 's0:26379']), /--redis-sentinels without --redis-master-name/, 'Sentinels without a master name');
    t.match(refusal(['--redis-master-name', 'm']), /--redis-master-name without --redis-sentinels/, 'a master name without Sentinels');
    t.match(refusal(['--redis-sentinel-password-file', spw]), /--redis-sentinel-password-file without --redis-sentinels/, 'Sentinel auth without Sentinels');
    t.match(refusal(['--redis-sentinels', 's0:1', '--redis-master-name', 'a b']), /--redis-master-name/, 'a master name with a space');
    t.match(refusal(['--redis-sentinels', 's0:1', '--redis-master-name', 'm', '--redis-sentinel-password-file', file('sempty', '\n')]),
      /--redis-sentinel-password-file.*first line is empty/, 'an empty Sentinel password');

    const opts = redisOptions(s);
    t.match(opts, { name: 'weft-registry', role: 'master', sentinelUsername: 'weft-sentinel', sentinelPassword: 'sentinel-secret', enableTLSForSentinelMode: true },
      'ioredis asks the Sentinels for the primary, with their own credentials');
    t.same(opts.sentinels, [{ host: 's0', port: 26379 }, { host: '::1', port: 26380 }, { host: '10.0.0.3', port: 26379 }]);
    t.ok(opts.reconnectOnError?.(new Error('READONLY You can\'t write against a read only replica.')), 'a write to a demoted primary reconnects');
    t.notOk(opts.reconnectOnError?.(new Error('ERR other')), 'other errors do not');
    t.equal(redisOptions(s, { retryStrategy: () => null }).sentinelRetryStrategy?.(1), null, 'no retries asked: none through the Sentinels either');
    t.equal(redisOptions(s, { retryStrategy: () => 7 }).sentinelRetryStrategy?.(1), 7, "the caller's retries also when no Sentinel names a primary");
    t.match(describeRedis(s), /^Sentinel master weft-registry via s0:26379,::1:26380,10\.0\.0\.3:26379 \(user weft-sentinel\)$|^Sentinel master weft-registry via s0:26379,::1:26380,10\.0\.0\.3:26379$/, 'described by its Sentinels');
    t.notOk(redisOptions({ url: 'redis://h:1' }).sentinels, 'no Sentinels unless asked');
  });

  t.test('every component checks them at start', async (t) => {
    const env = { WEFT_NODE_NAME: 'n1', WEFT_NODE_ADDRESS: '10.0.0.1', WEFT_TRUST_ANCHOR_FILE: '/etc/weft/trust-anchors/root-cert.pem' };
    t.throws(() => loadZtunnelConfig(['--redis-ca-file', ca], env), { code: 'WEFT_CONFIG_INVALID', message: /--redis-ca-file/ }, 'ztunnel');
    t.throws(() => loadZtunnelConfig(['--redis-sentinels', 's0:26379'], env), { code: 'WEFT_CONFIG_INVALID', message: /--redis-master-name/ }, 'ztunnel: Sentinels');
    t.match(loadZtunnelConfig(['--redis-sentinels', 's0:26379', '--redis-master-name', 'm'], env).redis.sentinel, { masterName: 'm' }, 'ztunnel takes them');
    t.throws(() => caConfig(parseOptions(caSpecs, ['--root-dir', '/r', '--redis-url', 'rediss://h:1', '--redis-key-file', key], {}).values),
      { code: 'WEFT_CONFIG_INVALID', message: /--redis-key-file without/ }, 'CA');
  });

  t.test('the CLI: credentials from the lab context file, flags override them', async (t) => {
    const ctxFile = writeContextFile(join(tmp.dir, 'context.json'), {
      kind: 'lab', redisUrl: 'rediss://127.0.0.1:16379', redisUsername: 'weft-operator', redisPasswordFile: pw, redisCaFile: ca, nodes: [],
    });
    const base = { context: ctxFile, redisUrl: '' };
    t.same(loadContext(base, {}).redis, { url: 'rediss://127.0.0.1:16379', username: 'weft-operator', passwordFile: pw, caFile: ca }, 'from the context file');
    const other = file('other-password', 'x\n');
    t.same(loadContext({ ...base, redisUsername: 'weft-ca', redisPasswordFile: other }, {}).redis,
      { url: 'rediss://127.0.0.1:16379', username: 'weft-ca', passwordFile: other, caFile: ca }, 'flags win');
    t.throws(() => loadContext({ ...base, redisUrl: 'redis://127.0.0.1:16379' }, {}), { code: 'WEFT_CONFIG_INVALID', message: /--redis-ca-file with a plain redis:/ },
      'the same cross-field rules');
    t.same(loadContext({ context: '', redisUrl: 'redis://h:1', redisUsername: 'weft-operator' }, { HOME: tmp.dir }).redis, { url: 'redis://h:1', username: 'weft-operator' },
      '--redis-url alone with a user');
    t.match(loadContext({ ...base, redisSentinels: 's0:26379', redisMasterName: 'm' }, {}).redis,
      { url: 'rediss://127.0.0.1:16379', sentinel: { addresses: [{ host: 's0', port: 26379 }], masterName: 'm' } }, 'Sentinel flags over a context');
    t.match(loadContext({ context: '', redisUrl: '', redisSentinels: 's0:26379', redisMasterName: 'm' }, { HOME: tmp.dir }).redis,
      { sentinel: { masterName: 'm' } }, 'Sentinels alone name the registry');
  });

  t.test('ioredis options come from the files, read anew for each client', async (t) => {
    const rotating = file('rotating', 'first\n');
    const conn = { url: 'rediss://h:1', username: 'weft-ca', passwordFile: rotating, caFile: ca, certFile: cert, keyFile: key };
    const a = redisOptions(conn, { connectTimeout: 5 });
    t.match(a, { username: 'weft-ca', password: 'first', connectTimeout: 5, enableReadyCheck: false, disableClientInfo: true });
    t.same(a.tls, { ca: PEM_CERT, cert: PEM_CERT, key: PEM_KEY });
    writeFileSync(rotating, 'second\n');
    t.equal(redisOptions(conn).password, 'second', 'a rotated password is used by the next client');
    rmSync(rotating);
    t.throws(() => redisOptions(conn), { code: 'WEFT_CONFIG_INVALID', message: /--redis-password-file=.*rotating.*Secret still mounted/ },
      'a file gone since start names its flag');
    const rotatingCa = file('rotating-ca.crt', PEM_CERT);
    t.same(redisOptions({ url: 'rediss://h:1', caFile: rotatingCa }).tls, { ca: PEM_CERT });
    writeFileSync(rotatingCa, 'half-written\n');
    t.throws(() => redisOptions({ url: 'rediss://h:1', caFile: rotatingCa }), { code: 'WEFT_CONFIG_INVALID', message: /--redis-ca-file=.*rotating-ca\.crt: no PEM certificate/ },
      'a file broken since start gets the same check as at start, naming its flag');
    t.notOk(redisOptions('redis://h:1').tls, 'a bare URL: no TLS options (rediss:// alone uses the system CAs)');
  });
});
