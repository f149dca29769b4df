// The HBONE server's limits as pure parts: validation of every field (each refusal
// names it), the byte budget inside a parent budget, the stall reservation, the flood
// guard's bucket (src/lib/token-bucket.ts; injected clock, no sleeps), and the ztunnel flags that set them.
import t from 'tap';
import { ByteBudget, DEFAULT_HBONE_LIMITS, DialSlots, HboneNodeLimits, hboneLimits, KeyedCounter, serverSessionOptions, StallReservation, type HboneLimits } from '../src/hbone/limits';
import { DEFAULT_HBONE_TUNING, hboneTuning } from '../src/hbone/settings';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { configurePipes, DEFAULT_IDLE_TIMEOUT_MS } from '../src/hbone/pipe';
import { perInterval, TokenBucket } from '../src/lib/token-bucket';

const MiB = 1024 * 1024;

t.test('every limit field is validated and named when wrong', async (t) => {
  t.same(hboneLimits(), DEFAULT_HBONE_LIMITS);
  t.equal(hboneLimits({ maxStreamsPerConnection: 7 }).maxStreamsPerConnection, 7);
  t.ok(Object.isFrozen(hboneLimits()));
  for (const field of Object.keys(DEFAULT_HBONE_LIMITS) as Array<keyof HboneLimits>) {
    for (const bad of [0, -1, 1.5, Number.NaN, '10', 2 ** 53]) {
      t.throws(() => hboneLimits({ [field]: bad } as Partial<HboneLimits>), { code: 'WEFT_CONFIG_INVALID', message: new RegExp(`HBONE limit ${field}=`) }, `${field}=${String(bad)}`);
    }
  }
  t.throws(() => hboneLimits({ maxStreams: 1 } as unknown as Partial<HboneLimits>), { code: 'WEFT_CONFIG_INVALID', message: /unknown HBONE limit field "maxStreams"; known: maxStreamsPerConnection/ });
  t.throws(() => hboneTuning({ maxSessionMemoryMb: 0 }), { code: 'WEFT_CONFIG_INVALID', message: /HBONE tuning maxSessionMemoryMb=0/ });
});

t.test('defaults: Istio\'s 100 streams, budgets that bound 300 stalled streams, explicit nghttp2 limits', async (t) => {
  t.equal(DEFAULT_HBONE_LIMITS.maxStreamsPerConnection, 100);
  t.equal(DEFAULT_HBONE_TUNING.maxSessionMemoryMb, 64);
  t.ok(DEFAULT_HBONE_LIMITS.nodeBufferBytes <= 128 * MiB);
  const o = serverSessionOptions(DEFAULT_HBONE_TUNING, DEFAULT_HBONE_LIMITS);
  t.match(o, {
    settings: { maxConcurrentStreams: 100, maxHeaderListSize: 16 * 1024, enablePush: false },
    maxSessionMemory: 64, maxHeaderListPairs: 32, maxSettings: 16, maxSessionInvalidFrames: 100, maxSessionRejectedStreams: 100, maxOutstandingPings: 2,
  });
});

t.test('a connection budget inside the node budget', async (t) => {
  const node = new ByteBudget(10);
  const a = new ByteBudget(6, node);
  const b = new ByteBudget(6, node);
  t.ok(a.tryTake(6));
  t.notOk(a.tryTake(1), 'connection full');
  t.ok(b.tryTake(4));
  t.notOk(b.tryTake(1), 'node full although b has room');
  t.equal(node.used, 10);
  a.give(6);
  t.ok(b.tryTake(2));
  t.same([node.used, a.used, b.used], [6, 0, 6]);
});

t.test('a stall reserves once per direction and gives back on resume and release', async (t) => {
  const budget = new ByteBudget(100);
  const r = new StallReservation(budget, { received: 60, sent: 30 });
  t.ok(r.stall('received', true));
  t.ok(r.stall('received', true), 'a second pause of the same direction takes nothing more');
  t.equal(budget.used, 60);
  t.ok(r.stall('sent', true));
  t.equal(budget.used, 90);
  t.ok(r.stall('received', false));
  t.equal(budget.used, 30);
  const other = new StallReservation(budget, { received: 80, sent: 0 });
  t.notOk(other.stall('received', true), 'no room: refused');
  r.release();
  t.equal(budget.used, 0);
  t.ok(other.stall('received', true));
});

t.test('flood guard (the session guard\'s bucket): a burst, then the refill rate', async (t) => {
  let now = 0;
  const g = new TokenBucket(perInterval(3, 1000), { now: () => now, setTimeout: () => 0, clearTimeout: () => {} });
  t.same([g.tryTake(), g.tryTake(), g.tryTake(), g.tryTake()], [true, true, true, false]);
  now += 333;
  t.notOk(g.tryTake(), 'not yet a whole token');
  now += 1;
  t.ok(g.tryTake(), 'one token per interval/burst');
  now += 10_000;
  t.same([g.tryTake(), g.tryTake(), g.tryTake(), g.tryTake()], [true, true, true, false], 'never more than the burst');
});

t.test('keyed counter: a cap per key, keys at zero forgotten', async (t) => {
  const c = new KeyedCounter(2);
  t.same([c.tryAdd('a'), c.tryAdd('a'), c.tryAdd('a'), c.tryAdd('b')], [true, true, false, true]);
  c.remove('a');
  t.ok(c.tryAdd('a'));
  c.remove('a'); c.remove('a'); c.remove('b');
  t.equal(c.size, 0);
});

t.test('dial slots: per connection, per node, per identity; a refusal names its limit and takes nothing', async (t) => {
  const d = new DialSlots({ maxPendingDialsPerConnection: 2, maxPendingDials: 3, maxPendingDialsPerIdentity: 2 });
  const [s1, s2, s3] = [{}, {}, {}];
  t.same([d.tryTake(s1, 'a'), d.tryTake(s1, 'b'), d.tryTake(s1, 'c')], [undefined, undefined, 'connection']);
  t.equal(d.tryTake(s2, 'a'), undefined);
  t.equal(d.tryTake(s3, 'c'), 'node', 'three pending on the node');
  d.release(s1, 'b');
  t.equal(d.tryTake(s2, 'a'), 'identity', 'a already has two pending');
  t.same([d.pending(), d.pending(s1), d.pending(s2), d.pending(s3)], [2, 1, 1, 0], 'refusals took nothing');
  t.equal(d.tryTake(s3, 'c'), undefined);
  for (const [s, id] of [[s1, 'a'], [s2, 'a'], [s3, 'c']] as const) d.release(s, id);
  t.equal(d.pending(), 0);
  t.match(d.refusal('node', 'x'), /3 HBONE CONNECTs .*slow .*raise --hbone-max-pending-dials if this load is legitimate/);
  t.match(d.refusal('identity', 'spiffe://td/ns/a/sa/b'), /2 CONNECTs of peer identity spiffe:\/\/td\/ns\/a\/sa\/b .*per-identity limit/);
  t.match(d.refusal('connection', 'x'), /2 CONNECTs of this HBONE connection .*per-connection limit.*retries/);
});

t.test('ztunnel flags for the limits', async (t) => {
  const base = ['--node', 'n1', '--address', '127.0.0.1', '--trust-anchor-file', '/nonexistent/root.pem'];
  const cfg = loadZtunnelConfig([...base, '--hbone-max-streams', '50', '--hbone-buffer-budget-mb', '64'], {});
  t.same([cfg.hboneMaxStreams, cfg.hboneBufferBudgetMb, cfg.hboneMaxPendingDials], [50, 64, 1024]);
  for (const [flag, value] of [['--hbone-max-streams', '0'], ['--hbone-buffer-budget-mb', '0'], ['--hbone-max-pending-dials', 'many']]) {
    t.throws(() => loadZtunnelConfig([...base, flag!, value!], {}), { code: 'WEFT_CONFIG_INVALID', message: new RegExp(flag!.slice(2)) }, `${flag} ${value}`);
  }
  t.throws(() => loadZtunnelConfig(base, { WEFT_HBONE_MAX_STREAMS: '-3' }), { code: 'WEFT_CONFIG_INVALID', message: /WEFT_HBONE_MAX_STREAMS/ });
  // The flags' defaults and bounds are the limits' own: a ztunnel without flags runs the defaults.
  const d = loadZtunnelConfig(base, {});
  t.same([d.hboneMaxStreams, d.hboneBufferBudgetMb * MiB, d.hboneMaxPendingDials, d.idleTimeout],
    [DEFAULT_HBONE_LIMITS.maxStreamsPerConnection, DEFAULT_HBONE_LIMITS.nodeBufferBytes, DEFAULT_HBONE_LIMITS.maxPendingDials, DEFAULT_IDLE_TIMEOUT_MS]);
  for (const [flag, ok, over] of [['--hbone-max-streams', '10000', '10001'], ['--hbone-buffer-budget-mb', '65536', '65537'], ['--hbone-max-pending-dials', '1000000', '1000001']] as const) {
    t.doesNotThrow(() => loadZtunnelConfig([...base, flag, ok], {}), `${flag} ${ok}`);
    t.throws(() => loadZtunnelConfig([...base, flag, over], {}), { code: 'WEFT_CONFIG_INVALID', message: new RegExp(flag.slice(2)) }, `${flag} ${over}`);
  }
});

t.test('--idle-timeout: 1 h by default, 0s disables, nonsense refused by name', async (t) => {
  const base = ['--node', 'n1', '--address', '127.0.0.1', '--trust-anchor-file', '/nonexistent/root.pem'];
  t.equal(loadZtunnelConfig(base, {}).idleTimeout, 3_600_000);
  t.equal(loadZtunnelConfig([...base, '--idle-timeout', '0s'], {}).idleTimeout, 0);
  t.equal(loadZtunnelConfig([...base, '--idle-timeout', '10m'], {}).idleTimeout, 600_000);
  for (const bad of ['5ms', '8d', 'soon']) {
    t.throws(() => loadZtunnelConfig([...base, '--idle-timeout', bad], {}), { code: 'WEFT_CONFIG_INVALID', message: /idle-timeout/ }, bad);
  }
  t.throws(() => configurePipes({ idleTimeoutMs: -1 }), RangeError);
});

t.test('a connection never parks more than its node: HboneNodeLimits caps the connection budget at the node\'s (a --workers share can be smaller)', async (t) => {
  const MiB = 1024 * 1024;
  t.equal(new HboneNodeLimits({ connectionBufferBytes: 16 * MiB, nodeBufferBytes: 8 * MiB }).limits.connectionBufferBytes, 8 * MiB);
  t.equal(new HboneNodeLimits({ connectionBufferBytes: 16 * MiB, nodeBufferBytes: 64 * MiB }).limits.connectionBufferBytes, 16 * MiB, 'below the node\'s: as given');
});
