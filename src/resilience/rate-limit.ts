/**
 * Local rate limiting of one Service: token buckets (lib/token-bucket.ts, the one rate
 * limiter of Weft), one for the Service or one per caller key, the keys bounded.
 * Pure: time from the injected Clock.
 */
import { realClock, type Clock } from '../lib/clock';
import { KeyedBuckets, TokenBucket } from '../lib/token-bucket';
import { DEFAULT_RATE_LIMIT_MAX_KEYS, type RateLimitSpec } from './rate-limit-spec';
import type { Headers } from './fault';

/**
 * Requests without the key (no source identity: a plaintext peer; the header absent)
 * share one bucket under this key, so leaving the header out is no way around the limit.
 */
export const MISSING_KEY = '';

/** Characters of a header value used as its bucket's key. */
export const MAX_KEY_LENGTH = 256;

export type RateLimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number };
const OK: RateLimitDecision = Object.freeze({ ok: true });

export class ServiceRateLimit {
  private readonly single: TokenBucket | undefined;
  private readonly keyed: KeyedBuckets | undefined;

  constructor(readonly spec: RateLimitSpec, clock: Clock = realClock) {
    const limit = { perSecond: spec.requestsPerSecond, burst: spec.burst };
    if (spec.key === 'Service') this.single = new TokenBucket(limit, clock);
    else this.keyed = new KeyedBuckets(limit, clock, spec.maxKeys ?? DEFAULT_RATE_LIMIT_MAX_KEYS);
  }

  /** Takes a token for one request from `sourceIdentity` with `headers`; a refusal takes nothing. */
  take(sourceIdentity: string | undefined, headers: Headers): RateLimitDecision {
    // At maxKeys, new keys share one overflow bucket rather than evict a drained one (KeyedBuckets.bucketOrOverflow):
    // fail closed, so a flood of new keys (a header's values are the caller's to pick) cannot refill a limited key.
    const bucket = this.single ?? this.keyed!.bucketOrOverflow(this.keyOf(sourceIdentity, headers));
    return bucket.tryTake() ? OK : { ok: false, retryAfterSeconds: bucket.retryAfterSeconds() };
  }

  /** Buckets kept now (1 for key: Service). */
  get buckets(): number {
    return this.keyed ? this.keyed.size : 1;
  }

  private keyOf(sourceIdentity: string | undefined, headers: Headers): string {
    if (this.spec.key === 'SourceIdentity') return sourceIdentity ?? MISSING_KEY;
    const v = headers[this.spec.header!];
    // A repeated header is keyed by its first value, as a route's query match reads repeats.
    const value = (typeof v === 'string' ? v : v?.[0]) ?? MISSING_KEY;
    // Kept keys are bounded in number and in length: a long value costs no more memory than
    // MAX_KEY_LENGTH. Two values sharing that prefix share a bucket, which only hurts their senders.
    return value.length > MAX_KEY_LENGTH ? value.slice(0, MAX_KEY_LENGTH) : value;
  }
}
