/**
 * The TTL cache of asynchronous lookups (src/lib/ttl-cache.ts), on a manual clock:
 * values served for their TTL counted from the lookup's start, one shared pending
 * lookup per key, failures never kept, `fresh` lookups replacing older ones, keys
 * bounded.
 */
import t from 'tap';
import { TtlCache } from '../src/lib/ttl-cache';
import { ManualClock } from './helpers/clock';

/** A lookup whose promises the test settles by hand, counting the calls. */
function deferredLoads<V>(): { load: () => Promise<V>; calls: number; resolve(i: number, v: V): void; reject(i: number, err: Error): void } {
  const settlers: Array<{ resolve: (v: V) => void; reject: (e: Error) => void }> = [];
  const d = {
    calls: 0,
    load: () => {
      d.calls++;
      return new Promise<V>((resolve, reject) => settlers.push({ resolve, reject }));
    },
    resolve: (i: number, v: V) => settlers[i]!.resolve(v),
    reject: (i: number, err: Error) => settlers[i]!.reject(err),
  };
  return d;
}

/** Lets the cache's bookkeeping of a settled lookup run. */
const settled = () => new Promise<void>((r) => setImmediate(r));

t.test('a value is served for its TTL, then looked up again', async (t) => {
  const clock = new ManualClock(1_000_000);
  const cache = new TtlCache<string, number>({ ttlMs: 30_000, maxEntries: 10, clock });
  let calls = 0;
  const load = async () => ++calls;
  t.equal(await cache.get('a', load), 1);
  clock.advance(29_999);
  t.equal(await cache.get('a', load), 1, 'within the TTL: the cached value');
  t.equal(await cache.get('b', load), 2, 'another key: its own lookup');
  clock.advance(1);
  t.equal(await cache.get('a', load), 3, 'at the TTL: looked up again');
  t.equal(calls, 3);
  t.equal(clock.armed.length, 0, 'the cache arms no timers');
});

t.test('concurrent callers of one key share the pending lookup', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, string>({ ttlMs: 1000, maxEntries: 10, clock });
  const d = deferredLoads<string>();
  const waiting = Array.from({ length: 50 }, () => cache.get('tok', d.load));
  t.equal(d.calls, 1, '50 callers, one lookup');
  clock.advance(60_000);
  t.equal(cache.get('tok', d.load), waiting[0], 'a pending lookup does not expire');
  d.resolve(0, 'alice');
  t.same(await Promise.all(waiting), Array(50).fill('alice'));
  t.equal(d.calls, 1);
});

t.test('the TTL counts from the start of the lookup: a slow answer is kept only for what is left', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, string>({ ttlMs: 1000, maxEntries: 10, clock });
  const d = deferredLoads<string>();
  const first = cache.get('k', d.load);
  clock.advance(600);
  d.resolve(0, 'v1');
  t.equal(await first, 'v1');
  await settled();
  clock.advance(399);
  t.equal(await cache.get('k', d.load), 'v1', '999 ms after the lookup started: still served');
  clock.advance(1);
  const second = cache.get('k', d.load);
  t.equal(d.calls, 2, '1000 ms after it started: asked again, though it settled 400 ms ago');
  // An answer slower than the TTL is handed to its callers but not kept.
  clock.advance(1500);
  d.resolve(1, 'v2');
  t.equal(await second, 'v2');
  await settled();
  void cache.get('k', d.load);
  t.equal(d.calls, 3, 'a lookup that outlived its TTL is not served again');
});

t.test('the TTL may depend on the value; 0 keeps nothing', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, { ok: boolean }>({ ttlMs: (v) => (v.ok ? 30_000 : 0), maxEntries: 10, clock });
  let calls = 0;
  let answer = { ok: false };
  const load = async () => { calls++; return answer; };
  t.same(await cache.get('k', load), { ok: false });
  await settled();
  t.same(await cache.get('k', load), { ok: false });
  t.equal(calls, 2, 'a TTL of 0: every call looks up');
  answer = { ok: true };
  await cache.get('k', load);
  await settled();
  await cache.get('k', load);
  t.equal(calls, 3, 'a positive TTL: kept');
  t.equal(cache.size, 1);
});

t.test('a failed lookup is shared by those waiting on it, and not kept', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, string>({ ttlMs: 30_000, maxEntries: 10, clock });
  const d = deferredLoads<string>();
  const a = cache.get('k', d.load);
  const b = cache.get('k', d.load);
  d.reject(0, new Error('API down'));
  await t.rejects(a, /API down/);
  await t.rejects(b, /API down/);
  await settled();
  t.equal(cache.size, 0, 'forgotten');
  const c = cache.get('k', d.load);
  t.equal(d.calls, 2, 'the next caller asks again');
  d.resolve(1, 'ok');
  t.equal(await c, 'ok');
  // A lookup that throws instead of returning a promise fails the same way.
  const throwing = new TtlCache<string, string>({ ttlMs: 30_000, maxEntries: 10, clock });
  await t.rejects(throwing.get('k', () => { throw new Error('sync'); }), /sync/);
  await settled();
  t.equal(throwing.size, 0);
});

t.test('fresh skips the cache and the pending lookup; an older lookup settling later does not overwrite it', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, string>({ ttlMs: 30_000, maxEntries: 10, clock });
  const d = deferredLoads<string>();
  const old = cache.get('k', d.load);
  const fresh = cache.get('k', d.load, { fresh: true });
  t.equal(d.calls, 2, 'fresh does not wait on the pending lookup');
  t.equal(cache.get('k', d.load), fresh, 'later callers share the fresh lookup');
  d.resolve(1, 'new');
  t.equal(await fresh, 'new');
  d.resolve(0, 'old');
  t.equal(await old, 'old', 'the older lookup still answers its own callers');
  await settled();
  t.equal(await cache.get('k', d.load), 'new', 'the cache keeps the fresh answer');
  t.equal(d.calls, 2);
  // A fresh lookup that fails also drops what was cached before it.
  const failing = cache.get('k', d.load, { fresh: true });
  d.reject(2, new Error('refused'));
  await t.rejects(failing, /refused/);
  await settled();
  void cache.get('k', d.load);
  t.equal(d.calls, 4, 'the earlier answer is not served after a fresh lookup failed');
});

t.test('an older lookup settling after a fresh one was refused and dropped does not bring its answer back', async (t) => {
  // The CA's case: a CSR re-check's TokenReview is pending, a Join's fresh review
  // replaces it and is refused (not kept), then the older review says yes. That yes
  // predates the refusal and must not be served to the next CSR.
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, boolean>({ ttlMs: (ok) => (ok ? 30_000 : 0), maxEntries: 10, clock });
  const d = deferredLoads<boolean>();
  const older = cache.get('tok', d.load);
  const join = cache.get('tok', d.load, { fresh: true });
  d.resolve(1, false);
  t.equal(await join, false);
  await settled();
  d.resolve(0, true);
  t.equal(await older, true, 'the older lookup still answers its own callers');
  await settled();
  void cache.get('tok', d.load);
  t.equal(d.calls, 3, 'the next caller asks the source again');
  t.equal(cache.size, 1, 'only that new lookup is held');
});

t.test('a lookup whose key was evicted while it was pending is not put back', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<string, string>({ ttlMs: 30_000, maxEntries: 1, clock });
  const d = deferredLoads<string>();
  const a = cache.get('a', d.load);
  void cache.get('b', d.load); // evicts a's pending entry
  d.resolve(0, 'A');
  t.equal(await a, 'A');
  await settled();
  void cache.get('a', d.load);
  t.equal(d.calls, 3, 'a is looked up again: an answer nobody holds a place for is not re-inserted');
});

t.test('keys are bounded: the least recently used is forgotten', async (t) => {
  const clock = new ManualClock(0);
  const cache = new TtlCache<number, number>({ ttlMs: 30_000, maxEntries: 3, clock });
  let calls = 0;
  const load = async () => ++calls;
  for (const k of [1, 2, 3]) await cache.get(k, load);
  await settled();
  await cache.get(1, load); // 1 is now the most recently used
  await cache.get(4, load);
  await settled();
  t.equal(cache.size, 3);
  t.equal(calls, 4);
  await cache.get(1, load);
  await cache.get(3, load);
  t.equal(calls, 4, '1 and 3 kept');
  await cache.get(2, load);
  t.equal(calls, 5, '2, the least recently used, was forgotten');
  for (let k = 100; k < 10_100; k++) void cache.get(k, load);
  t.equal(cache.size, 3, 'ten thousand keys: still three held');
});
