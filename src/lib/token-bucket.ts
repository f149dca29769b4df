import { BoundedMap } from './bounded-map';
import { realClock, type Clock } from './clock';

/**
 * Token buckets, the one rate limiter of Weft: the CA's request limits, the admin
 * views' limits, the HBONE accept guards and the refusal-log limits are all built from
 * these pieces. A bucket holds up to `burst` tokens and gains `perSecond` per second;
 * each event takes one. Pure: time comes from an injected Clock, no timers.
 */

export interface RateLimit {
  /** Tokens added per second (the sustained rate). */
  perSecond: number;
  /** Bucket size: events allowed at once after a quiet spell. */
  burst: number;
}

/** The limit of "`burst` events per `intervalMs`", refilled evenly over the interval. */
export function perInterval(burst: number, intervalMs: number): RateLimit {
  return { perSecond: (burst * 1000) / intervalMs, burst };
}

function checkLimit(limit: RateLimit): void {
  if (!(limit.perSecond > 0) || !(limit.burst >= 1)) {
    throw new Error(`invalid rate limit ${JSON.stringify(limit)}: perSecond must be > 0 and burst >= 1`);
  }
}

export class TokenBucket {
  private tokens: number;
  /** clock.now() when `tokens` was last brought up to date. */
  private at: number;

  constructor(readonly limit: RateLimit, private readonly clock: Clock = realClock) {
    checkLimit(limit);
    this.tokens = limit.burst;
    this.at = clock.now();
  }

  /** Whether a token is there now; takes nothing (see RateLimiter: both or neither). */
  ready(): boolean {
    this.refill();
    return this.tokens >= 1;
  }

  /** Takes one token if there is one: true if the event is allowed. */
  tryTake(): boolean {
    if (!this.ready()) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether the bucket is full: then it is no different from a new one. */
  full(): boolean {
    this.refill();
    return this.tokens >= this.limit.burst;
  }

  /** Whole seconds until a token is there, at least 1 (Retry-After has second granularity). */
  retryAfterSeconds(): number {
    this.refill();
    return Math.max(1, Math.ceil((1 - this.tokens) / this.limit.perSecond));
  }

  private refill(): void {
    const now = this.clock.now();
    // Multiply before dividing: whole rates over whole milliseconds stay exact.
    this.tokens = Math.min(this.limit.burst, this.tokens + (Math.max(0, now - this.at) * this.limit.perSecond) / 1000);
    this.at = now;
  }
}

/**
 * One bucket per key (a caller), all with the same limit. The keys kept are bounded:
 * beyond `maxKeys` the least recently used is forgotten and starts full if it comes
 * back, which costs at most one extra burst to a key idle long enough to be evicted.
 */
export class KeyedBuckets {
  private readonly buckets: BoundedMap<string, TokenBucket>;
  /** Shared by new keys while every kept bucket is in use (bucketOrOverflow). */
  private overflowBucket: TokenBucket | undefined;

  constructor(readonly limit: RateLimit, private readonly clock: Clock = realClock, maxKeys = 10_000) {
    checkLimit(limit);
    this.buckets = new BoundedMap(maxKeys);
  }

  /** The bucket of `key`, made (full) if it is not tracked. */
  bucket(key: string): TokenBucket {
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(this.limit, this.clock);
      this.buckets.set(key, b);
    }
    return b;
  }

  /**
   * The bucket of `key` without forgetting any state at the bound (fail closed): when
   * `maxKeys` are kept, a new key takes the least recently used one's place only if
   * that bucket is full again (forgetting it loses nothing); otherwise every new key
   * shares one overflow bucket until one is. bucket() instead forgets the least
   * recently used key whatever its state, so a flood of new keys would refill a
   * drained one's bucket: right where an outer limit stands behind (RateLimiter's
   * overall bucket), not where these buckets are the only limit.
   */
  bucketOrOverflow(key: string): TokenBucket {
    const b = this.buckets.get(key);
    if (b) return b;
    if (this.buckets.size >= this.buckets.max) {
      const oldest = this.buckets.entries().next().value;
      if (oldest && !oldest[1].full()) return (this.overflowBucket ??= new TokenBucket(this.limit, this.clock));
    }
    return this.bucket(key);
  }

  /** Takes one token of `key`: true if allowed. */
  tryTake(key: string): boolean {
    return this.bucket(key).tryTake();
  }

  /** Keys tracked now (at most maxKeys). */
  get size(): number {
    return this.buckets.size;
  }
}

export interface RateLimiterOptions {
  perCaller: RateLimit;
  overall: RateLimit;
  /** Callers tracked at once (default 10,000); see KeyedBuckets. */
  maxCallers?: number;
}

export type RateDecision = { ok: true } | { ok: false; scope: 'caller' | 'overall'; retryAfterSeconds: number };

/**
 * A bucket per caller and one for all callers together: neither one noisy caller nor a
 * crowd gets through without bound. A request takes a token from both or from neither,
 * so a refused request costs nothing: a caller refused because everybody is over the
 * overall limit keeps its own budget for when the crowd is gone.
 */
export class RateLimiter {
  private readonly callers: KeyedBuckets;
  private readonly overall: TokenBucket;

  constructor(readonly limits: RateLimiterOptions, clock: Clock = realClock) {
    this.callers = new KeyedBuckets(limits.perCaller, clock, limits.maxCallers ?? 10_000);
    this.overall = new TokenBucket(limits.overall, clock);
  }

  /** Takes one token from `caller`'s bucket and the overall one, or says which is empty and how long to wait. */
  take(caller: string): RateDecision {
    const mine = this.callers.bucket(caller);
    // The caller's own bucket first: it names the noisy caller, not the crowd.
    if (!mine.ready()) return { ok: false, scope: 'caller', retryAfterSeconds: mine.retryAfterSeconds() };
    if (!this.overall.ready()) return { ok: false, scope: 'overall', retryAfterSeconds: this.overall.retryAfterSeconds() };
    mine.tryTake();
    this.overall.tryTake();
    return { ok: true };
  }

  /** Callers tracked now (bounded by maxCallers). */
  get trackedCallers(): number {
    return this.callers.size;
  }
}
