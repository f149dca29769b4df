import { WeftError } from '../lib/errors';
import { realClock, type Clock } from '../lib/clock';
import { RateLimiter, type RateLimit } from '../lib/token-bucket';

/**
 * Request-rate limits for the CA: a caller's own limit and one for all callers
 * together (src/lib/token-bucket.ts), so neither one noisy node (or one address
 * hammering Join) nor a crowd can make the CA sign, or ask the Kubernetes API server,
 * without bound. This file holds only the CA's limits and the refusal they become.
 * (`Limiter` in limiter.ts is a different thing: it bounds how many tasks run at once,
 * for node-side key generation.)
 */


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
  private readonly limiter: RateLimiter;

  constructor(readonly method: string, readonly limits: MethodLimits, clock: Clock = realClock) {
    this.limiter = new RateLimiter(limits, clock);
  }

  /**
   * Throws WEFT_CA_RATE_LIMITED (details.scope 'caller' or 'overall', details.retryAfterSeconds)
   * when over a limit; a refused call takes no token from either.
   */
  check(caller: string): void {
    const decision = this.limiter.take(caller);
    if (decision.ok) return;
    const { scope, retryAfterSeconds } = decision;
    const { perCaller, overall } = this.limits;
    const message = scope === 'caller'
      ? `${this.method} from ${caller} exceeds ${perCaller.perSecond}/s per caller (bursts of ${perCaller.burst}); retry in ${retryAfterSeconds} s, or raise the CA's ${this.flag()} if this load is legitimate`
      : `the CA is receiving more than ${overall.perSecond} ${this.method} requests/s from all callers together (bursts of ${overall.burst}); retry in ${retryAfterSeconds} s, or raise the CA's ${this.flag()}`;
    throw new WeftError('WEFT_CA_RATE_LIMITED', message, { details: { scope, retryAfterSeconds } });
  }

  private flag(): string {
    return this.method === 'Join' ? '--join-rate' : '--csr-rate';
  }
}
