/**
 * The lab's Redis flags, from one place (src/lab/redis.ts): one server, or with
 * `lab up --redis-sentinel` the Sentinels, for the components inside the lab, the
 * clients in the root namespace and the CLI's context; preflight checks every port.
 */
import t from 'tap';
import { askRedis, labContextRedis, labRedisArgs, labRedisPorts, labRedisTarget, planRedisHa } from '../src/lab/redis';
import { freePort, redisFixture } from './helpers/redis';
import { labRootPorts } from '../src/lab/preflight';
import { parseOptions } from '../src/lib/options';
import { redisOptionSpecs, redisTarget } from '../src/lib/common-options';
import { parseContext } from '../src/cli/context';

t.test('one server: the URL alone', async (t) => {
  const plan = { redisPort: 16379 };
  t.same(labRedisArgs(plan), ['--redis-url', 'redis://198.18.0.1:16379']);
  t.equal(labRedisTarget(plan), 'redis://127.0.0.1:16379');
  t.same(labContextRedis(plan), {});
  t.same(labRedisPorts(plan), [16379]);
});

t.test('with Sentinels: every component finds the primary through them', async (t) => {
  const plan = { redisPort: 16379, redisHa: planRedisHa(16379) };
  const args = labRedisArgs(plan);
  t.same(args, ['--redis-url', 'redis://198.18.0.1:16379', '--redis-sentinels', '198.18.0.1:16382,198.18.0.1:16383,198.18.0.1:16384', '--redis-master-name', 'weft-registry']);
  const fromFlags = redisTarget(parseOptions(redisOptionSpecs, args, {}).values);
  t.same(labRedisTarget(plan), fromFlags, 'the lab\'s own clients use the same connection the flags give');
  t.same(labRedisPorts(plan), [16379, 16380, 16381, 16382, 16383, 16384], 'the replicas and Sentinels follow the primary');
  t.same(labRootPorts(plan).map((p) => p.port).slice(0, 6), [16379, 16380, 16381, 16382, 16383, 16384], 'preflight checks them all');
  const ctx = parseContext(JSON.stringify({ kind: 'lab', redisUrl: 'redis://127.0.0.1:16379', nodes: [], ...labContextRedis(plan) }), '/ctx.json');
  t.same(ctx.redis?.sentinel, fromFlags.sentinel, 'the CLI reads them from the context');
  t.throws(() => parseContext(JSON.stringify({ kind: 'lab', redisUrl: 'redis://h:1', nodes: [], redisSentinels: 'x', redisMasterName: 'm' }), '/ctx.json'),
    { code: 'WEFT_CONFIG_INVALID', message: /context file \/ctx\.json fields redisSentinels\/redisMasterName: .*entry 1/ }, 'a broken context names its fields');
});

const fx = redisFixture(t);

t.test('askRedis: one question on a connection of its own; undefined when nothing answers or the question fails', async (t) => {
  t.equal(await askRedis('127.0.0.1', fx.redis.port, (c) => c.ping()), 'PONG', 'a real redis-server answers');
  t.equal(await askRedis('127.0.0.1', await freePort(), (c) => c.ping()), undefined, 'nothing listens: undefined, no retry loop');
  t.equal(await askRedis('127.0.0.1', fx.redis.port, (c) => c.call('NO-SUCH-COMMAND')), undefined, 'an error reply: undefined');
});
