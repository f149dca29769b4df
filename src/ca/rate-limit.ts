import { WeftError } from '../lib/errors';

/**
 * Request-rate limits for the CA: token buckets per caller and one for all callers
 * together, so neither one noisy node (or one address hammering Join) nor a crowd can
 * make the CA sign, or ask the Kubernetes API server, without bound. Pure: time comes
 * from an injected clock. (`Limiter` in limiter.ts is a different thing: it bounds
 * how many tasks run at once, for node-side key generation.)
 */

export interface RateLimit {
  /** Sustained requests per second. */
  perSecond: number;
  /** Requests allowed at once after a quiet period. */
  burst: number;
}

interface Bucket { tokens: number; at: number }

/** Token buckets by key; the number of keys kept is bounded (oldest dropped first). */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: RateLimit,
    private readonly clock: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1)) throw new Error(`invalid rate limit ${JSON.stringify(limit)}`);
  }

  /** Takes one token for `key`: true if allowed. */
  take(key: string): boolean {
    const now = this.clock();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
      b.at = now;
      // Re-insert: Map order then runs from least to most recently used.
      this.buckets.delete(key);
    } else {
      b = { tokens: this.limit.burst, at: now };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }
}

/** Per-caller and overall limits of one CA method. */
export interface MethodLimits {
  perCaller: RateLimit;
  overall: RateLimit;
}

/**
 * The one rule behind the `--join-rate`/`--csr-rate` flags: a caller may send `rate`
 * per second (bursts of 10×), all callers together 50× that (bursts of 100×). With the
 * CSR default the overall limit (500/s) sits just under what one CA signs (~640/s
 * measured, docs/ca.md), so a crowd slows down instead of queueing without bound.
 */
export function limitsFor(rate: number): MethodLimits {
  return { perCaller: { perSecond: rate, burst: 10 * rate }, overall: { perSecond: 50 * rate, burst: 100 * rate } };
}

/** Defaults: Join 1/s per address (bursts of 10), CSRs 10/s per node (bursts of 100). */
export const DEFAULT_JOIN_RATE = 1;
export const DEFAULT_CSR_RATE = 10;

export class MethodRateLimiter {
  private readonly perCaller: TokenBuckets;
  private readonly overall: TokenBuckets;

  constructor(readonly method: string, readonly limits: MethodLimits, clock: () => number = Date.now) {
    this.perCaller = new TokenBuckets(limits.perCaller, clock);
    this.overall = new TokenBuckets(limits.overall, clock, 1);
  }

  /** Throws WEFT_CA_RATE_LIMITED (details.scope 'caller' or 'overall') when over a limit. */
  check(caller: string): void {
    const { perCaller, overall } = this.limits;
    if (!this.perCaller.take(caller)) {
      throw new WeftError('WEFT_CA_RATE_LIMITED',
        `${this.method} from ${caller} exceeds ${perCaller.perSecond}/s per caller (bursts of ${perCaller.burst}); back off and retry, or raise the CA's ${this.flag()} if this load is legitimate`,
        { details: { scope: 'caller' } });
    }
    if (!this.overall.take('')) {
      throw new WeftError('WEFT_CA_RATE_LIMITED',
        `the CA is receiving more than ${overall.perSecond} ${this.method} requests/s from all callers together (bursts of ${overall.burst}); back off and retry, or raise the CA's ${this.flag()}`,
        { details: { scope: 'overall' } });
    }
  }

  private flag(): string {
    return this.method === 'Join' ? '--join-rate' : '--csr-rate';
  }
}
