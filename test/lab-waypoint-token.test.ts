// The lab waypoint's CA credential against a real redis-server: the token file holds an
// identity token the CA's verifier maps to exactly the waypoint's identity, only the
// owner can read it, and revoking it (weft waypoint remove) makes the CA refuse it.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisIdentityTokens } from '../src/ca/identity-tokens';
import { revokeWaypointToken, writeWaypointToken } from '../src/lab/waypoint-token';
import { redisFixture } from './helpers/redis';
import { caught } from './helpers/wait';

const fx = redisFixture(t);

t.test('the token names the waypoint\'s identity only, is 0600, and is revoked on removal', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-wp-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'run', 'waypoint-demo-waypoint.token');
  await writeWaypointToken(fx.redis.url, { namespace: 'demo', serviceAccount: 'waypoint' }, file);
  t.equal(statSync(file).mode & 0o777, 0o600, 'only the owner reads it');
  const token = readFileSync(file, 'utf8').trim();
  t.match(token, /^weft-id\./);
  const verifier = new RedisIdentityTokens(fx.client);
  t.same(await verifier.verify(token, 'waypoint'), { namespace: 'demo', serviceAccount: 'waypoint', via: 'identityToken' });
  t.notOk((await fx.client.keys('weft:ca:identity:*')).some((k) => k.includes(token)), 'Redis holds its hash, not the token');

  await revokeWaypointToken(fx.redis.url, file);
  const err = await caught(() => verifier.verify(token, 'waypoint'));
  t.equal(err.code, 'WEFT_CA_IDENTITY_TOKEN_INVALID', 'the CA refuses a removed waypoint\'s token');
  await revokeWaypointToken(fx.redis.url, join(dir, 'never-written.token'));
  t.pass('revoking a token that was never written is a no-op');
});
