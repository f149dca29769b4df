import { BoundedMap } from './bounded-map';
import type { Logger } from './log';
import { realClock, type Clock } from './clock';
import { TokenBucket, perInterval, type RateLimit } from './token-bucket';

/**
 * Rate limits for log lines a peer can cause. A refusal logged per connection lets any
 * pod that can open connections fill the disk and burn the CPU of the proxy it attacks
 * (the self-connect loop of issue 9 wrote ~10,000 lines in 2 s). Each key gets a token
 * bucket (src/lib/token-bucket.ts): `burst` lines, refilled at `burst` per
 * `intervalMs`. Lines beyond it are counted, and the next line let through carries
 * `suppressed: N`, so nothing is lost silently.
 *
 * Keys are a fixed set chosen by the caller (a reason, a response flag, a method and
 * error code), never peer data: that is what bounds the key table, and what keeps a
 * peer from getting a fresh budget per key it makes up.
 */
export interface LogLimiterOptions {
  /** Lines let through per key per interval (also the bucket size). Default 5. */
  burst?: number;
  /** Interval over which `burst` lines are refilled. Default 10 s. */
  intervalMs?: number;
  /** Time source; injected by tests. */
  clock?: Clock;
}

/** Levels the limited log call accepts (pino method names). */
export type LimitedLevel = 'error' | 'warn' | 'info' | 'debug';

export class LogLimiter {
  private readonly limit: RateLimit;
  private readonly clock: Clock;
  /** Per key: its bucket, and the lines dropped since the last one let through. */
  // Bounded, as every keyed map here: callers key by fixed sets (reason, flag, status),
  // so the bound is never reached, but a caller keying by peer text could not grow it.
  private readonly keys = new BoundedMap<string, { bucket: TokenBucket; suppressed: number }>(1024);

  constructor(opts: LogLimiterOptions = {}) {
    this.limit = perInterval(Math.max(1, Math.floor(opts.burst ?? 5)), Math.max(1, opts.intervalMs ?? 10_000));
    this.clock = opts.clock ?? realClock;
  }

  /**
   * Asks to log one line under `key`. Returns undefined when the line must be dropped
   * (it is counted), otherwise the number of lines dropped under that key since the
   * last one let through (0 usually), which the caller reports on this line.
   */
  take(key: string): number | undefined {
    let entry = this.keys.get(key);
    if (!entry) {
      entry = { bucket: new TokenBucket(this.limit, this.clock), suppressed: 0 };
      this.keys.set(key, entry);
    }
    if (!entry.bucket.tryTake()) {
      entry.suppressed++;
      return undefined;
    }
    const suppressed = entry.suppressed;
    entry.suppressed = 0;
    return suppressed;
  }

  /**
   * Logs `msg` at `level` unless `key` is over its rate; a line let through after drops
   * carries `suppressed: N`. The message stays the same either way, so a log query for
   * it finds every line. Returns whether it was logged.
   */
  log(logger: Logger, level: LimitedLevel, key: string, obj: Record<string, unknown>, msg: string): boolean {
    const suppressed = this.take(key);
    if (suppressed === undefined) return false;
    logger[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
    return true;
  }

  /** Keys tracked now. */
  get size(): number {
    return this.keys.size;
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
