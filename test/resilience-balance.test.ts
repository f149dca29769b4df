// TrafficPolicy `loadBalancer`: the validator (every bad value names its field) and the
// pure balancers on an injected random and clock: round robin, least request and peak
// EWMA (power of two choices), consistent hash on Ring and Maglev with the remapping
// fraction measured when one of four endpoints leaves.
import t from 'tap';
import { FieldError } from '../src/registry/checks';
import { DEFAULT_BALANCER_TYPE, hashKeySource, validateLoadBalancer, type LoadBalancerSpec } from '../src/resilience/balance-spec';
import { EndpointBalancer, EWMA_FAILURE_PENALTY_MS, ringPointsPerHost } from '../src/resilience/balance';
import { buildMaglev, buildRing, hashKey } from '../src/resilience/balance-hash';
import { cookieValue, queryParam, requestHash } from '../src/resilience/balance-key';

/** mulberry32: a seeded [0, 1) source, so every run draws the same. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const id = (s: string) => s;
const FOUR = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];

function refusal(v: unknown): string {
  try {
    validateLoadBalancer(v, 'spec.loadBalancer', 'reject');
  } catch (err) {
    if (err instanceof FieldError) return err.message;
    throw err;
  }
  return 'accepted';
}

t.test('validator: defaults filled in, each key source and algorithm accepted', async (t) => {
  t.same(validateLoadBalancer({}, 'spec.loadBalancer', 'reject'), { type: DEFAULT_BALANCER_TYPE });
  t.same(validateLoadBalancer({ type: 'LeastRequest' }, 'spec.loadBalancer', 'reject'), { type: 'LeastRequest' });
  t.same(validateLoadBalancer({ consistentHash: { header: 'X-User' } }, 'p', 'reject'),
    { type: 'ConsistentHash', consistentHash: { header: 'x-user', algorithm: 'Ring', minimumRingSize: 1024 } },
    'consistentHash alone implies the type; header names lower-cased; Istio\'s defaults');
  t.same(validateLoadBalancer({ type: 'ConsistentHash', consistentHash: { cookie: { name: 's', ttl: '1h', path: '/app' }, algorithm: 'Maglev', tableSize: 1009 } }, 'p', 'reject').consistentHash,
    { cookie: { name: 's', ttl: '1h', path: '/app' }, algorithm: 'Maglev', tableSize: 1009 });
  t.same(validateLoadBalancer({ consistentHash: { sourceIP: true, minimumRingSize: 64 } }, 'p', 'reject').consistentHash, { sourceIP: true, algorithm: 'Ring', minimumRingSize: 64 });
  t.same(validateLoadBalancer({ consistentHash: { queryParameter: 'u', algorithm: 'Maglev' } }, 'p', 'reject').consistentHash, { queryParameter: 'u', algorithm: 'Maglev', tableSize: 65537 });
  t.same(validateLoadBalancer({ type: 'RoundRobin', extra: 1 }, 'p', 'drop'), { type: 'RoundRobin' }, 'readers drop unknown fields');
});

t.test('validator: its output is valid input and validates to itself (the registry stores it and reads it back)', async (t) => {
  const inputs: unknown[] = [{}, { type: 'RoundRobin' }, { consistentHash: { header: 'X-User' } }, { consistentHash: { cookie: { name: 's', ttl: '90s' }, algorithm: 'Maglev' } },
    { consistentHash: { sourceIP: true } }, { type: 'ConsistentHash', consistentHash: { queryParameter: 'u', minimumRingSize: 8 } }];
  for (const v of inputs) {
    const once = validateLoadBalancer(v, 'p', 'reject');
    t.same(validateLoadBalancer(JSON.parse(JSON.stringify(once)), 'p', 'reject'), once, JSON.stringify(v));
  }
  t.same(hashKeySource({ cookie: { name: 's', ttl: '90s', path: '/a' }, algorithm: 'Ring' }), { kind: 'cookie', name: 's', ttlMs: 90_000, path: '/a' });
  t.same(hashKeySource({ header: 'x-user', algorithm: 'Ring' }), { kind: 'header', name: 'x-user' });
  t.same(hashKeySource({ sourceIP: true, algorithm: 'Ring' }), { kind: 'sourceIP' });
  t.same(hashKeySource({ queryParameter: 'u', algorithm: 'Ring' }), { kind: 'queryParameter', name: 'u' });
});

t.test('validator: every bad value is refused naming its field', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['RoundRobin', 'spec.loadBalancer must be an object'],
    [{ type: 'Random' }, 'spec.loadBalancer.type must be one of RoundRobin, LeastRequest, EWMA, ConsistentHash'],
    [{ typo: 1 }, 'spec.loadBalancer.typo is not a known field'],
    [{ type: 'ConsistentHash' }, 'spec.loadBalancer.consistentHash is required with type ConsistentHash'],
    [{ type: 'EWMA', consistentHash: { header: 'x' } }, 'spec.loadBalancer.consistentHash applies only with type ConsistentHash'],
    [{ consistentHash: {} }, 'spec.loadBalancer.consistentHash needs one hash key'],
    [{ consistentHash: { header: 'x', sourceIP: true } }, 'spec.loadBalancer.consistentHash takes exactly one hash key, got header and sourceIP'],
    [{ consistentHash: { header: 'x user' } }, 'spec.loadBalancer.consistentHash.header must be an HTTP token'],
    [{ consistentHash: { sourceIP: false } }, 'spec.loadBalancer.consistentHash.sourceIP must be true'],
    [{ consistentHash: { queryParameter: 'a=b' } }, 'spec.loadBalancer.consistentHash.queryParameter must be 1-256 characters'],
    [{ consistentHash: { cookie: { ttl: '1h' } } }, 'spec.loadBalancer.consistentHash.cookie.name is required'],
    [{ consistentHash: { cookie: { name: 's', ttl: '-1s' } } }, 'spec.loadBalancer.consistentHash.cookie.ttl must be a Gateway API duration'],
    [{ consistentHash: { cookie: { name: 's', ttl: '0s' } } }, 'spec.loadBalancer.consistentHash.cookie.ttl must be more than 0s'],
    [{ consistentHash: { cookie: { name: 's', path: 'app' } } }, 'spec.loadBalancer.consistentHash.cookie.path must start with "/"'],
    [{ consistentHash: { cookie: { name: 's', max: 1 } } }, 'spec.loadBalancer.consistentHash.cookie.max is not a known field'],
    [{ consistentHash: { header: 'x', algorithm: 'Jump' } }, 'spec.loadBalancer.consistentHash.algorithm must be one of Ring, Maglev'],
    [{ consistentHash: { header: 'x', minimumRingSize: 0 } }, 'spec.loadBalancer.consistentHash.minimumRingSize must be an integer 1-65536, got 0'],
    [{ consistentHash: { header: 'x', minimumRingSize: 1 << 20 } }, 'spec.loadBalancer.consistentHash.minimumRingSize must be an integer 1-65536, got 1048576'],
    [{ consistentHash: { header: 'x', minimumRingSize: 1.5 } }, 'spec.loadBalancer.consistentHash.minimumRingSize must be an integer'],
    [{ consistentHash: { header: 'x', tableSize: 1009 } }, 'spec.loadBalancer.consistentHash.tableSize applies only with algorithm Maglev'],
    [{ consistentHash: { header: 'x', algorithm: 'Maglev', minimumRingSize: 8 } }, 'spec.loadBalancer.consistentHash.minimumRingSize applies only with algorithm Ring'],
    [{ consistentHash: { header: 'x', algorithm: 'Maglev', tableSize: 1000 } }, 'spec.loadBalancer.consistentHash.tableSize must be a prime'],
    [{ consistentHash: { header: 'x', algorithm: 'Maglev', tableSize: 2_000_003 } }, 'spec.loadBalancer.consistentHash.tableSize must be an integer 3-1000003'],
  ];
  for (const [v, want] of cases) t.match(refusal(v), want, JSON.stringify(v));
});

t.test('round robin visits every endpoint once per round, in address order, whatever the input order', async (t) => {
  const b = new EndpointBalancer<string>({ type: 'RoundRobin' }, id);
  const shuffled = ['10.0.0.3', '10.0.0.1', '10.0.0.4', '10.0.0.2'];
  t.same(Array.from({ length: 8 }, () => b.pick(shuffled)), [...FOUR, ...FOUR]);
  t.equal(b.pick(FOUR, undefined, ['10.0.0.1']), '10.0.0.2', 'a retry skips the tried endpoint');
  t.equal(b.pick(['10.0.0.9']), '10.0.0.9', 'one candidate');
});

t.test('least request (P2C) sends to the less busy of two random endpoints', async (t) => {
  const b = new EndpointBalancer<string>({ type: 'LeastRequest' }, id, { random: seeded(1) });
  b.pick(FOUR);
  // 10.0.0.1 holds 5 requests in flight: it only wins a draw against nobody.
  for (let i = 0; i < 5; i++) b.started('10.0.0.1');
  const counts = new Map<string, number>();
  for (let i = 0; i < 3000; i++) {
    const e = b.pick(FOUR);
    counts.set(e, (counts.get(e) ?? 0) + 1);
  }
  t.equal(counts.get('10.0.0.1') ?? 0, 0, 'the busy endpoint is never chosen while three idle ones exist');
  for (const a of FOUR.slice(1)) t.ok((counts.get(a) ?? 0) > 800, `${a} gets its share (${counts.get(a)})`);
  for (let i = 0; i < 5; i++) b.finished('10.0.0.1', { latencyMs: 1, failed: false });
  t.equal(b.load('10.0.0.1')?.pending, 0);
  b.finished('10.0.0.1', undefined);
  t.equal(b.load('10.0.0.1')?.pending, 0, 'never below zero');
});

/** Drives a balancer with a virtual clock: each endpoint answers in its own latency. */
function simulate(spec: LoadBalancerSpec, latencyMs: (addr: string) => number, requests: number, seed: number): { share: Map<string, number>; latencies: number[] } {
  let now = 0;
  const b = new EndpointBalancer<string>(spec, id, { random: seeded(seed), clock: { now: () => now } });
  const share = new Map<string, number>();
  const latencies: number[] = [];
  // 8 concurrent clients, one request each at a time; events in time order.
  const due: Array<{ at: number; addr: string; sent: number }> = [];
  const send = () => {
    const addr = b.pick(FOUR);
    b.started(addr);
    share.set(addr, (share.get(addr) ?? 0) + 1);
    due.push({ at: now + latencyMs(addr), addr, sent: now });
  };
  for (let c = 0; c < 8; c++) send();
  for (let i = 0; i < requests; i++) {
    due.sort((x, y) => x.at - y.at);
    const ev = due.shift()!;
    now = ev.at;
    b.finished(ev.addr, { latencyMs: now - ev.sent, failed: false });
    latencies.push(now - ev.sent);
    send();
  }
  return { share, latencies };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

t.test('peak EWMA keeps traffic off a slow endpoint better than least request and round robin (virtual clock)', async (t) => {
  const slow = (a: string) => (a === '10.0.0.4' ? 100 : 5);
  const out: Record<string, { slowShare: number; p50: number; p99: number }> = {};
  for (const type of ['RoundRobin', 'LeastRequest', 'EWMA'] as const) {
    const { share, latencies } = simulate({ type }, slow, 20_000, 7);
    const total = [...share.values()].reduce((x, y) => x + y, 0);
    out[type] = { slowShare: (share.get('10.0.0.4') ?? 0) / total, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
    t.comment(`${type}: slow endpoint share ${(out[type].slowShare * 100).toFixed(2)} %, p50 ${out[type].p50} ms, p99 ${out[type].p99} ms`);
  }
  t.ok(out.EWMA!.slowShare < out.LeastRequest!.slowShare, 'EWMA sends less to the slow endpoint than least request');
  t.ok(out.LeastRequest!.slowShare < out.RoundRobin!.slowShare, 'least request less than round robin');
  t.ok(out.EWMA!.p99 <= out.LeastRequest!.p99, 'EWMA p99 no worse than least request');
});

t.test('peak EWMA: a failure counts as slow, and a slow estimate decays so the endpoint is tried again', async (t) => {
  let now = 0;
  const b = new EndpointBalancer<string>({ type: 'EWMA' }, id, { random: seeded(3), clock: { now: () => now } });
  const two = ['10.0.0.1', '10.0.0.2'];
  b.pick(two);
  b.started('10.0.0.1');
  b.finished('10.0.0.1', { latencyMs: 2, failed: true });
  t.equal(b.load('10.0.0.1')?.rttMs, EWMA_FAILURE_PENALTY_MS, 'a fast failure is not a fast endpoint');
  b.started('10.0.0.2');
  b.finished('10.0.0.2', { latencyMs: 10, failed: false });
  t.equal(b.pick(two), '10.0.0.2');
  // Peak: a slower sample takes over; a faster one blends in by the time since the last.
  b.started('10.0.0.2');
  now += 1000;
  b.finished('10.0.0.2', { latencyMs: 2, failed: false });
  t.ok(b.load('10.0.0.2')!.rttMs! < 10 && b.load('10.0.0.2')!.rttMs! > 9, `blended ${b.load('10.0.0.2')!.rttMs}`);
  // Ten time constants later the failed endpoint's estimate has decayed below a fresh sample of the other's.
  now += 100_000;
  b.started('10.0.0.2');
  b.finished('10.0.0.2', { latencyMs: 10, failed: false });
  t.equal(b.pick(two), '10.0.0.1', 'the decayed endpoint is tried again');
});

t.test('consistent hash: a key sticks; removing 1 of 4 endpoints remaps about 25 % (Ring and Maglev)', async (t) => {
  const users = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
  for (const algorithm of ['Ring', 'Maglev'] as const) {
    const spec: LoadBalancerSpec = { type: 'ConsistentHash', consistentHash: { header: 'x-user', algorithm } };
    const b = new EndpointBalancer<string>(spec, id, { random: () => { throw new Error('no random draw with a key'); } });
    const before = users.map((u) => b.pick(FOUR, hashKey(u)));
    t.same(users.map((u) => b.pick([...FOUR].reverse(), hashKey(u))), before, `${algorithm}: the same endpoint for each key, whatever the list order`);
    const counts = FOUR.map((a) => before.filter((x) => x === a).length / users.length);
    t.comment(`${algorithm}: shares ${counts.map((c) => (c * 100).toFixed(1)).join(' / ')} %`);
    for (const c of counts) t.ok(c > 0.18 && c < 0.32, `${algorithm}: balanced share ${(c * 100).toFixed(1)} %`);
    const three = FOUR.slice(0, 3);
    const after = users.map((u) => b.pick(three, hashKey(u)));
    const moved = users.filter((_, i) => after[i] !== before[i]).length / users.length;
    const movedOther = users.filter((_, i) => before[i] !== '10.0.0.4' && after[i] !== before[i]).length;
    t.comment(`${algorithm}: removing 1 of 4 endpoints remapped ${(moved * 100).toFixed(2)} % of ${users.length} keys (${movedOther} of them were not on the removed endpoint)`);
    t.ok(moved <= 0.25 + 0.05, `${algorithm}: remapped ${(moved * 100).toFixed(2)} % <= 25 % + 5 %`);
    t.ok(movedOther <= users.length * 0.01, `${algorithm}: (almost) only the removed endpoint's keys move`);
    if (algorithm === 'Ring') t.equal(movedOther, 0, 'Ring: only the removed endpoint\'s keys move');
    const back = users.map((u) => b.pick(FOUR, hashKey(u)));
    t.same(back, before, `${algorithm}: the endpoint coming back takes its keys back`);
  }
});

t.test('consistent hash: a retry goes to another endpoint, deterministically; no key: any endpoint', async (t) => {
  for (const algorithm of ['Ring', 'Maglev'] as const) {
    const spec: LoadBalancerSpec = { type: 'ConsistentHash', consistentHash: algorithm === 'Ring' ? { sourceIP: true, algorithm, minimumRingSize: 256 } : { sourceIP: true, algorithm, tableSize: 1009 } };
    const b = new EndpointBalancer<string>(spec, id, { random: () => 0.6 });
    const h = hashKey('10.1.1.1');
    const first = b.pick(FOUR, h);
    const second = b.pick(FOUR, h, [first]);
    t.not(second, first, `${algorithm}: the retry avoids the tried endpoint`);
    t.equal(b.pick(FOUR, h, [first]), second, `${algorithm}: the same second choice each time`);
    t.equal(b.pick(FOUR, h, FOUR), first, `${algorithm}: every endpoint tried: back to the key's own`);
    t.equal(b.pick(FOUR), FOUR[2], `${algorithm}: no key: the random draw`);
  }
  t.equal(buildRing([], 16).lookupSkipping(1, () => true), undefined);
  t.equal(buildMaglev(['a'], 7).lookupSkipping(1, () => true), undefined);
});

t.test('hash keys from a request: header, cookie (generated with a ttl), source IP, query parameter', async (t) => {
  const req = { headers: { 'x-user': 'alice', cookie: ['a=1; session="abc"', 'b=2'] }, query: 'x=1&u=b%20ob&u=2', source: { address: '10.1.1.9' } };
  t.same(requestHash({ kind: 'header', name: 'x-user' }, req), { hash: hashKey('alice') });
  t.equal(requestHash({ kind: 'header', name: 'x-none' }, req), undefined, 'no header: no key');
  t.same(requestHash({ kind: 'sourceIP' }, req), { hash: hashKey('10.1.1.9') });
  t.same(requestHash({ kind: 'queryParameter', name: 'u' }, req), { hash: hashKey('b ob') }, 'first value, decoded');
  t.same(requestHash({ kind: 'cookie', name: 'session' }, req), { hash: hashKey('abc') }, 'quoted cookie value');
  t.equal(requestHash({ kind: 'cookie', name: 'other' }, req), undefined, 'no cookie, no ttl: no key');
  t.same(requestHash({ kind: 'cookie', name: 'other', ttlMs: 90_000 }, req, () => 'fresh'),
    { hash: hashKey('fresh'), setCookie: 'other=fresh; Max-Age=90; Path=/; HttpOnly' }, 'a generated cookie the response sets');
  t.equal(queryParam('', 'u'), undefined);
  t.equal(queryParam('u', 'u'), '');
  t.equal(queryParam('u=%zz', 'u'), '%zz', 'a bad escape is kept as sent');
  t.equal(cookieValue('a=1;b=2', 'b'), '2');
});

t.test('ring points per endpoint stay put while the ring is within 1/2..4x minimumRingSize', async (t) => {
  t.equal(ringPointsPerHost(0, 4, 1024), 256, 'first build: minimumRingSize / endpoints');
  t.equal(ringPointsPerHost(256, 3, 1024), 256, '4 -> 3: kept (768 points)');
  t.equal(ringPointsPerHost(256, 2, 1024), 256, '4 -> 2: kept (512 points)');
  t.equal(ringPointsPerHost(256, 1, 1024), 1024, '4 -> 1: below half, set afresh');
  t.equal(ringPointsPerHost(256, 16, 1024), 256, '4 -> 16: kept (4096 points)');
  t.equal(ringPointsPerHost(256, 17, 1024), 61, '4 -> 17: past 4x, set afresh');
});

t.test('an endpoint handed in alone (a half-open probe) keeps the others\' loads and the hash table', async (t) => {
  let now = 0;
  const b = new EndpointBalancer<string>({ type: 'EWMA' }, id, { random: seeded(5), clock: { now: () => now } });
  b.pick(FOUR);
  b.started('10.0.0.1');
  b.started('10.0.0.2');
  b.finished('10.0.0.2', { latencyMs: 7, failed: false });
  t.equal(b.pick(['10.0.0.4']), '10.0.0.4', 'the probe alone');
  b.pick(FOUR.slice(0, 3));
  t.same([b.load('10.0.0.1')?.pending, b.load('10.0.0.2')?.rttMs], [1, 7], 'in-flight count and estimate survive the list changes');
  for (let i = 0; i < 40; i++) b.pick([`10.9.0.${i}`]);
  t.equal(b.load('10.0.0.1'), undefined, 'bounded: dropped once the map outgrows the list');

  const spec: LoadBalancerSpec = { type: 'ConsistentHash', consistentHash: { header: 'x', algorithm: 'Maglev', tableSize: 1009 } };
  const h = new EndpointBalancer<string>(spec, id);
  const keys = Array.from({ length: 200 }, (_, i) => hashKey(`k${i}`));
  const before = keys.map((k) => h.pick(FOUR, k));
  const internals = h as unknown as { table: unknown };
  const table = internals.table;
  t.equal(h.pick(['10.0.0.3'], keys[0]), '10.0.0.3');
  t.same(keys.map((k) => h.pick(FOUR, k)), before, 'the same mapping after the probe');
  t.equal(internals.table, table, 'and the same table: no rebuild for a one-endpoint list');
});

t.test('a Service of many endpoints keeps their loads through a probe\'s list of one', async (t) => {
  // 20 endpoints: more than 2 x 1 + 16, the bound a list of one would set.
  const many = Array.from({ length: 20 }, (_, i) => `10.0.1.${i}`);
  const b = new EndpointBalancer<string>({ type: 'LeastRequest' }, id, { random: seeded(3) });
  b.pick(many);
  b.started('10.0.1.0');
  t.equal(b.pick(['10.0.1.7']), '10.0.1.7', 'the probe alone');
  b.pick(many);
  t.equal(b.load('10.0.1.0')?.pending, 1, 'the in-flight count survives the probe');
});
