import t from 'tap';
import { parseOptions, parse, parseDuration, formatDuration, optionsHelp } from '../src/lib/options';
import { commonOptions } from '../src/lib/common-options';
import { isWeftError } from '../src/lib/errors';

const specs = {
  ...commonOptions,
  ttl: { flag: 'ttl', env: 'WEFT_TTL', default: 3_600_000, description: 'ttl', parse: parse.duration({ min: 60_000, max: 86_400_000 }) },
  port: { flag: 'port', env: 'WEFT_PORT', default: 15012, description: 'port', parse: parse.port() },
  verbose: { flag: 'verbose', default: false, boolean: true, description: 'more', parse: parse.bool() },
  addr: { flag: 'addr', default: { host: '127.0.0.1', port: 1 }, description: 'addr', parse: parse.hostPort() },
};

t.test('defaults, env and flags in order of precedence', async (t) => {
  const d = parseOptions(specs, [], {});
  t.equal(d.values.redisUrl, 'redis://127.0.0.1:6379');
  t.equal(d.values.trustDomain, 'cluster.local');
  t.equal(d.values.ttl, 3_600_000);
  t.ok(Object.isFrozen(d.values));
  const e = parseOptions(specs, [], { WEFT_TTL: '2h', WEFT_TRUST_DOMAIN: 'example.org' });
  t.equal(e.values.ttl, 7_200_000);
  t.equal(e.values.trustDomain, 'example.org');
  const f = parseOptions(specs, ['--ttl', '90m', 'pos', '--verbose', '--addr=10.0.0.1:80'], { WEFT_TTL: '2h' });
  t.equal(f.values.ttl, 5_400_000);
  t.equal(f.values.verbose, true);
  t.same(f.values.addr, { host: '10.0.0.1', port: 80 });
  t.same(f.positionals, ['pos']);
});

// Every option kind gets a rejection test that names the source and the expectation.
const rejections: Array<[string[], Record<string, string>, RegExp]> = [
  [['--ttl', 'soon'], {}, /--ttl="soon": expected a duration/],
  [['--ttl', '10s'], {}, /--ttl="10s": expected at least 1m/],
  [[], { WEFT_TTL: '2d' }, /WEFT_TTL="2d": expected at most 1d/],
  [['--port', '70000'], {}, /--port="70000": expected at most 65535/],
  [['--port', 'x'], {}, /expected a whole number/],
  [[], { WEFT_REDIS_URL: 'http://x' }, /WEFT_REDIS_URL="http:\/\/x": expected a redis: or rediss: URL/],
  [[], { WEFT_TRUST_DOMAIN: 'Bad_Domain' }, /WEFT_TRUST_DOMAIN="Bad_Domain": expected a lower-case DNS name/],
  [[], { WEFT_LOG_LEVEL: 'loud' }, /WEFT_LOG_LEVEL="loud": expected one of fatal/],
  [['--verbose=maybe'], {}, /expected true or false/],
  [['--addr', 'nope'], {}, /expected host:port/],
];
for (const [argv, env, re] of rejections) {
  t.test(`rejects ${argv.join(' ') || JSON.stringify(env)}`, async (t) => {
    t.throws(() => parseOptions(specs, argv, env), re);
    try { parseOptions(specs, argv, env); } catch (err) { t.ok(isWeftError(err, 'WEFT_CONFIG_INVALID')); }
  });
}

t.test('usage errors', async (t) => {
  t.throws(() => parseOptions(specs, ['--nope'], {}), /unknown flag --nope/);
  t.throws(() => parseOptions(specs, ['--ttl'], {}), /flag --ttl needs a value/);
  const required = { name: { flag: 'name', description: 'node name', parse: parse.string() } };
  t.throws(() => parseOptions(required, [], {}), /missing --name: node name/);
});

t.test('durations round-trip and help lists every flag', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('1.5s'), 1500);
  t.equal(parseDuration('24h'), 86_400_000);
  t.equal(parseDuration('24'), undefined);
  t.equal(formatDuration(86_400_000), '1d');
  t.equal(formatDuration(1500), '1500ms');
  const help = optionsHelp(specs);
  for (const s of Object.values(specs)) t.match(help, `--${s.flag}`);
  t.match(help, '[env WEFT_REDIS_URL]');
});
