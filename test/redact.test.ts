/**
 * No credential leaves a process: URL passwords and secret values are masked in
 * messages, config dumps and every log line (src/lib/redact.ts, the logger's
 * streamWrite hook). The last test starts a real ztunnel (dist/) whose Redis URL
 * carries a password and whose join token is set, and reads its /config_dump and its
 * log output.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../src/lib/log';
import { parseOptions } from '../src/lib/options';
import { redactConfig, redactText, redactUrl } from '../src/lib/redact';
import { redisOptionSpecs } from '../src/lib/common-options';
import { assertDistFresh, MAIN } from './helpers/built';
import { tempDir } from './helpers/cli';
import { startRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';


t.test('redactUrl', async (t) => {
  t.equal(redactUrl('redis://weft-ca:hunter2@redis:6379'), 'redis://weft-ca:***@redis:6379');
  t.equal(redactUrl('rediss://:hunter2@redis:6380/0'), 'rediss://:***@redis:6380/0');
  t.equal(redactUrl('redis://redis:6379'), 'redis://redis:6379', 'nothing to hide');
  t.equal(redactUrl('redis://weft-ca@redis:6379'), 'redis://weft-ca@redis:6379', 'a user name is no secret');
  t.equal(redactUrl('redis://h:1?password=hunter2&family=4'), 'redis://h:1?password=***&family=4', 'secret query values');
  t.equal(redactUrl('not a url @ all'), '(unparseable URL, redacted)', 'unparseable with userinfo-like text: whole');
  t.equal(redactUrl('not a url'), 'not a url');
});

t.test('redactText finds credentials in free text and JSON lines without breaking them', async (t) => {
  t.equal(redactText('cannot reach redis://u:hunter2@h:1 (ECONNREFUSED)'), 'cannot reach redis://u:***@h:1 (ECONNREFUSED)');
  t.equal(redactText('fetch /x?token=abc failed'), 'fetch /x?token=*** failed', "a secret value without any '@' in the text");
  const access = JSON.stringify({ 'src.identity': 'spiffe://cluster.local/ns/default/sa/sleep', 'dst.addr': '10.0.0.2:8080' });
  t.equal(redactText(access), access, 'an access-log line without credentials is unchanged');
  const line = JSON.stringify({ a: 'redis://h:6379', b: 'x@y', url: 'rediss://u:hunter2@h:1', q: 'http://h/?token=abc&x=1', n: 1 });
  const out = redactText(line);
  t.notMatch(out, /hunter2|abc/);
  t.same(JSON.parse(out), { a: 'redis://h:6379', b: 'x@y', url: 'rediss://u:***@h:1', q: 'http://h/?token=***&x=1', n: 1 },
    'neighbouring fields untouched, still valid JSON');
});

t.test('redactConfig masks URL passwords and secret fields, keeps file paths', async (t) => {
  t.same(redactConfig({
    redisUrl: 'redis://u:hunter2@h:1', joinToken: 'jt-hunter2', joinSaTokenFile: '/var/run/token', redisPasswordFile: '/p',
    emptyToken: '', note: 'see redis://a:hunter2@b', nested: { caUrl: 'https://x:hunter2@ca' }, port: 1,
  }), {
    redisUrl: 'redis://u:***@h:1', joinToken: '<redacted>', joinSaTokenFile: '/var/run/token', redisPasswordFile: '/p',
    emptyToken: '', note: 'see redis://a:***@b', nested: { caUrl: 'https://x:***@ca/' }, port: 1,
  });
});

t.test('every log line is redacted, whatever logged it', async (t) => {
  let out = '';
  const destination = new Writable({ write(chunk, _enc, cb) { out += String(chunk); cb(); } });
  const log = createLogger({ level: 'info', component: 'test', destination });
  log.info({ url: 'redis://u:hunter2@h:1' }, 'field');
  log.warn('message with rediss://u:hunter2@h:1 inside');
  log.error({ err: new Error('library error at redis://u:hunter2@h:1') }, 'error object');
  log.child({ redis: 'redis://u:hunter2@h:1' }).info('child binding');
  log.flush();
  t.equal(out.trim().split('\n').length, 4);
  t.notMatch(out, /hunter2/, 'no password in any line');
  t.match(out, /u:\*\*\*@h:1/);
  for (const l of out.trim().split('\n')) JSON.parse(l);
  t.pass('every line is still JSON');
});

t.test('a refused flag value is shown redacted', async (t) => {
  t.throws(() => parseOptions(redisOptionSpecs, ['--redis-url', 'http://u:hunter2@h:1'], {}),
    { code: 'WEFT_CONFIG_INVALID', message: /u:\*\*\*@h:1/ });
  try {
    parseOptions(redisOptionSpecs, ['--redis-url', 'http://u:hunter2@h:1'], {});
  } catch (err) {
    t.notMatch(JSON.stringify({ m: (err as Error).message, d: (err as { details?: unknown }).details }), /hunter2/);
  }
});

t.test('a real ztunnel with a password in its Redis URL: /config_dump and logs', async (t) => {
  // A missing or stale build fails the test: skipping would hide it.
  assertDistFresh();
  const tmp = tempDir('weft-redact-');
  t.teardown(() => tmp.remove());
  const password = randomBytes(16).toString('hex');
  const joinToken = `jt-${randomBytes(16).toString('hex')}`;
  const acl = join(tmp.dir, 'users.acl');
  writeFileSync(acl, `user default off\nuser weft-ztunnel on >${password} ~* -@all +@read +multi +exec +ping +client|setname +quit\n`);
  const redis = await startRedis({ aclFile: acl });
  t.teardown(() => redis.stop());
  const rootPem = join(tmp.dir, 'root.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-keyout', join(tmp.dir, 'root.key'), '-out', rootPem, '-subj', '/CN=test-root'], { stdio: 'ignore' });
  const socket = join(tmp.dir, 'admin.sock');
  const url = `redis://weft-ztunnel:${password}@127.0.0.1:${redis.port}`;
  // A loopback address of its own: 15001/15006/15008 do not collide with other tests.
  const child = spawn(process.execPath, [MAIN, 'ztunnel', '--node', 'node-1', '--address', '127.87.0.1',
    '--ca-address', '127.0.0.1:1', '--trust-anchor-file', rootPem, '--admin-port', '0', '--metrics-port', '0',
    '--readiness-port', '0', '--admin-socket', socket, '--log-level', 'debug'], {
    env: { PATH: process.env.PATH, WEFT_REDIS_URL: url, WEFT_JOIN_TOKEN: joinToken }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await waitFor('the ztunnel started', () => /ztunnel started/.test(output) || child.exitCode !== null, { timeoutMs: 20_000, intervalMs: 50 });
  t.match(output, /ztunnel started/, output);

  const dump = await new Promise<string>((resolve, reject) => {
    http.get({ socketPath: socket, path: '/config_dump' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  const config = (JSON.parse(dump) as { config: Record<string, unknown> }).config;
  t.equal(config.redisUrl, `redis://weft-ztunnel:***@127.0.0.1:${redis.port}`, 'the dump shows the URL with the password masked');
  t.equal(config.joinToken, '<redacted>', 'and hides the join token');
  t.notMatch(dump, new RegExp(password), 'no password anywhere in /config_dump');
  t.notMatch(dump, new RegExp(joinToken), 'no join token anywhere in /config_dump');

  // Redis goes away: the follower logs its failure, naming the registry.
  await redis.stop();
  await waitFor('the follower reports the outage', () => /registry/.test(output) && /127\.0\.0\.1:\d+/.test(output.split('ztunnel started')[1] ?? ''),
    { timeoutMs: 15_000, intervalMs: 50 });
  child.kill('SIGTERM');
  await exited;
  t.match(output, /"redis":"redis:\/\/weft-ztunnel:\*\*\*@127\.0\.0\.1:\d+"/, 'the start line names the registry, redacted');
  t.notMatch(output, new RegExp(password), 'no password in any log line');
  t.notMatch(output, new RegExp(joinToken), 'no join token in any log line');
});
