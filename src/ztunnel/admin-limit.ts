/**
 * Rate limits of the admin views off loopback: token buckets per caller and one for
 * all callers together. They are checked before anything costly (a TokenReview, a
 * render), so a flood from a pod costs the ztunnel a map lookup per request and the
 * API server nothing. Pure: the clock is injected.
 */

export interface BucketLimits {
  /** Tokens added per second. */
  ratePerSecond: number;
  /** Bucket size: how many requests may come at once after a quiet spell. */
  burst: number;
}

export interface RateLimitOptions {
  perCaller: BucketLimits;
  overall: BucketLimits;
  /** Callers tracked at once; beyond it the stalest are forgotten (a forgotten caller starts full). */
  maxCallers?: number;
  now?: () => number;
}

export type RateDecision = { ok: true } | { ok: false; scope: 'caller' | 'overall'; retryAfterSeconds: number };

/** Defaults: a `weft` command costs one request per view per node; `--watch` one per second. */
export const DEFAULT_VIEW_LIMITS: Omit<RateLimitOptions, 'now'> = {
  perCaller: { ratePerSecond: 10, burst: 20 },
  overall: { ratePerSecond: 50, burst: 100 },
  maxCallers: 4096,
};

class Bucket {
  tokens: number;
  at: number;

  constructor(readonly limits: BucketLimits, now: number) {
    this.tokens = limits.burst;
    this.at = now;
  }

  refill(now: number): void {
    const elapsed = Math.max(0, now - this.at) / 1000;
    this.tokens = Math.min(this.limits.burst, this.tokens + elapsed * this.limits.ratePerSecond);
    this.at = now;
  }

  /** Whole seconds until one token is there (at least 1: Retry-After has second granularity). */
  wait(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.limits.ratePerSecond));
  }
}

export class RateLimiter {
  private readonly overall: Bucket;
  private readonly callers = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly maxCallers: number;

  constructor(private readonly opts: RateLimitOptions) {
    this.now = opts.now ?? Date.now;
    this.maxCallers = opts.maxCallers ?? 4096;
    this.overall = new Bucket(opts.overall, this.now());
  }

  /** Takes one token from `caller`'s bucket and the overall one, or says how long to wait. */
  take(caller: string): RateDecision {
    const now = this.now();
    let mine = this.callers.get(caller);
    if (mine) {
      this.callers.delete(caller); // re-insert: Map order is then least recently seen first
    } else {
      mine = new Bucket(this.opts.perCaller, now);
      if (this.callers.size >= this.maxCallers) this.callers.delete(this.callers.keys().next().value!);
    }
    this.callers.set(caller, mine);
    mine.refill(now);
    this.overall.refill(now);
    // The caller's own bucket first: one noisy caller must not drain everyone's budget.
    if (mine.tokens < 1) return { ok: false, scope: 'caller', retryAfterSeconds: mine.wait() };
    if (this.overall.tokens < 1) return { ok: false, scope: 'overall', retryAfterSeconds: this.overall.wait() };
    mine.tokens -= 1;
    this.overall.tokens -= 1;
    return { ok: true };
  }

  get trackedCallers(): number {
    return this.callers.size;
  }
}
