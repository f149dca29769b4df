import { BoundedMap } from './bounded-map';
import { realClock, type Clock } from './clock';

/**
 * A small cache of asynchronous lookups (API server reviews of a token), for callers
 * that ask the same question far more often than its answer changes. Two things make
 * it more than a Map:
 *
 * - In-flight sharing: while a lookup for a key is pending, every caller asking for
 *   that key waits for the same promise, so a burst of N requests with one token costs
 *   one lookup, not N.
 * - Bounded staleness: a settled answer is served for its TTL counted from when its
 *   lookup STARTED, so nothing is served older than the TTL after it was asked (a
 *   revoked token or a deleted pod is noticed within one TTL, however slow the API).
 *
 * Which answers are kept, and how long, is the caller's choice (`ttlMs` per value);
 * failures (a rejected lookup) are never kept: the next caller asks again. Keys are
 * bounded (least recently used forgotten first), since they come from peers.
 * Time comes from an injected Clock; no timers.
 */
export interface TtlCacheOptions<V> {
  /**
   * How long a settled value is served, counted from the start of its lookup; a
   * function decides per value (e.g. allowed 30 s, denied 5 s). 0 or less: not kept
   * once settled (still shared while pending).
   */
  ttlMs: number | ((value: V) => number);
  /** Keys held at once; the least recently used is forgotten to make room. */
  maxEntries: number;
  /** Time source; injected by tests. */
  clock?: Clock;
}

interface Entry<V> {
  value: Promise<V>;
  /** clock.now() after which the value is stale; +Infinity while the lookup is pending. */
  until: number;
}

export class TtlCache<K, V> {
  private readonly entries: BoundedMap<K, Entry<V>>;
  private readonly clock: Clock;
  private readonly ttl: (value: V) => number;

  constructor(opts: TtlCacheOptions<V>) {
    this.entries = new BoundedMap(opts.maxEntries);
    this.clock = opts.clock ?? realClock;
    const { ttlMs } = opts;
    this.ttl = typeof ttlMs === 'function' ? ttlMs : () => ttlMs;
  }

  /**
   * The value for `key`: a pending or fresh one if there is one, else what `load()`
   * resolves to. `fresh` skips both and always runs `load()` (an answer that must come
   * from the source, e.g. a Join); its lookup then replaces the entry, so later callers
   * share it and an older pending lookup no longer overwrites it when it settles.
   */
  get(key: K, load: () => Promise<V>, opts: { fresh?: boolean } = {}): Promise<V> {
    const started = this.clock.now();
    if (!opts.fresh) {
      const hit = this.entries.get(key);
      if (hit && hit.until > started) return hit.value;
    }
    let value: Promise<V>;
    try {
      value = load();
    } catch (err) {
      value = Promise.reject(err);
    }
    const entry: Entry<V> = { value, until: Number.POSITIVE_INFINITY };
    this.entries.set(key, entry);
    // Bookkeeping only: the caller gets `value` itself, rejection included.
    value.then((v) => this.settle(key, entry, started + this.ttl(v)), () => this.settle(key, entry, started));
    return value;
  }

  /** Keys held now, pending or settled (expired ones stay until evicted or asked for). */
  get size(): number {
    return this.entries.size;
  }

  private settle(key: K, entry: Entry<V>, until: number): void {
    // Only the key's current lookup decides. One that a newer (fresh) lookup replaced,
    // or that was evicted, never comes back: the newer one may have been refused and
    // dropped since, and an older "yes" must not outlive that refusal.
    if (this.entries.peek(key) !== entry) return;
    if (until > this.clock.now()) entry.until = until;
    else this.entries.delete(key);
  }
}
