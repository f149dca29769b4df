import type { Logger } from './log';
import { realClock, type Clock } from './clock';

/**
 * Rate limits for log lines a peer can cause. A refusal logged per connection lets any
 * pod that can open connections fill the disk and burn the CPU of the proxy it attacks
 * (the self-connect loop of issue 9 wrote ~10,000 lines in 2 s). Each key (a reason or a
 * response flag, never raw peer data) gets a token bucket: `burst` lines, refilled at
 * `burst` per `intervalMs`. Lines beyond it are counted, and the next line let through
 * says how many were dropped, so nothing is lost silently.
 */
export interface LogLimiterOptions {
  /** Lines let through per key per interval (also the bucket size). Default 5. */
  burst?: number;
  /** Interval over which `burst` lines are refilled. Default 10 s. */
  intervalMs?: number;
  /**
   * Most keys tracked. Beyond it, idle keys are forgotten first; if none is idle, new
   * keys share one overflow bucket, so many distinct keys cannot multiply the rate.
   * Default 256.
   */
  maxKeys?: number;
  /** Time source; injected by tests. */
  clock?: Clock;
}

/** The key lines share when the key table is full of busy keys. */
export const OVERFLOW_KEY = '(other)';

interface Bucket {
  tokens: number;
  /** clock.now() when `tokens` was last brought up to date. */
  at: number;
  /** Lines dropped since the last one let through. */
  suppressed: number;
}

/** Levels the limited log call accepts (pino method names). */
export type LimitedLevel = 'error' | 'warn' | 'info' | 'debug';

export class LogLimiter {
  private readonly burst: number;
  private readonly intervalMs: number;
  private readonly maxKeys: number;
  private readonly clock: Clock;
  private readonly buckets = new Map<string, Bucket>();

  constructor(opts: LogLimiterOptions = {}) {
    this.burst = Math.max(1, Math.floor(opts.burst ?? 5));
    this.intervalMs = Math.max(1, opts.intervalMs ?? 10_000);
    this.maxKeys = Math.max(1, Math.floor(opts.maxKeys ?? 256));
    this.clock = opts.clock ?? realClock;
  }

  /**
   * Asks to log one line under `key`. Returns undefined when the line must be dropped
   * (it is counted), otherwise the number of lines dropped under that key since the
   * last one let through (0 usually), which the caller reports on this line.
   */
  take(key: string): number | undefined {
    const now = this.clock.now();
    const bucket = this.bucketFor(key, now);
    this.refill(bucket, now);
    if (bucket.tokens < 1) {
      bucket.suppressed++;
      return undefined;
    }
    bucket.tokens -= 1;
    const suppressed = bucket.suppressed;
    bucket.suppressed = 0;
    return suppressed;
  }

  /**
   * Logs `msg` at `level` unless `key` is over its rate; a line let through after drops
   * carries `suppressed: N` and says "suppressed N similar lines". Returns whether it
   * was logged.
   */
  log(logger: Logger, level: LimitedLevel, key: string, obj: Record<string, unknown>, msg: string): boolean {
    const suppressed = this.take(key);
    if (suppressed === undefined) return false;
    if (suppressed > 0) logger[level]({ ...obj, suppressed }, `${msg} (suppressed ${suppressed} similar lines)`);
    else logger[level](obj, msg);
    return true;
  }

  /** Keys tracked now (bounded by maxKeys + the overflow key). */
  get size(): number {
    return this.buckets.size;
  }

  private bucketFor(key: string, now: number): Bucket {
    const found = this.buckets.get(key);
    if (found) return found;
    if (this.buckets.size >= this.maxKeys) this.evictIdle(now);
    // Still full of busy keys: a new key must not get a fresh bucket, or cycling keys
    // would defeat the limit.
    const name = this.buckets.size >= this.maxKeys ? OVERFLOW_KEY : key;
    let bucket = this.buckets.get(name);
    if (!bucket) {
      bucket = { tokens: this.burst, at: now, suppressed: 0 };
      this.buckets.set(name, bucket);
    }
    return bucket;
  }

  /** Forgets keys whose bucket is full again and that owe no suppressed count. */
  private evictIdle(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (key === OVERFLOW_KEY) continue;
      this.refill(bucket, now);
      if (bucket.tokens >= this.burst && bucket.suppressed === 0) this.buckets.delete(key);
    }
  }

  private refill(bucket: Bucket, now: number): void {
    const elapsed = Math.max(0, now - bucket.at);
    bucket.tokens = Math.min(this.burst, bucket.tokens + (elapsed * this.burst) / this.intervalMs);
    bucket.at = now;
  }
}

/** Longest untrusted string logged as is. */
export const LOG_STRING_MAX = 256;

/**
 * Cuts an untrusted string (an :authority, a header, a SNI) for a log line: at most
 * `max` characters, then "…(N more bytes)" with the UTF-8 size of what was cut, so a
 * 64 KiB header costs a log line of ~300 bytes yet the reader knows it was huge.
 * Non-strings are stringified first; undefined stays undefined.
 */
export function truncateForLog(value: unknown, max: number = LOG_STRING_MAX): string | undefined {
  if (value === undefined) return undefined;
  const s = typeof value === 'string' ? value : String(value);
  if (s.length <= max) return s;
  let cut = max;
  // Never split a surrogate pair: the half left behind would be invalid UTF-16.
  const code = s.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
  const rest = Buffer.byteLength(s.slice(cut), 'utf8');
  return `${s.slice(0, cut)}…(${rest} more bytes)`;
}
