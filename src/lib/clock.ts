/**
 * Time as decision logic sees it, injectable so that logic can be tested without
 * waiting (certificate refresh, log rate limits, periodic refreshes). Timers are
 * unref'd: a background timer alone must never keep a process alive.
 */
export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  /** Runs `fn` once after `ms`; returns a handle for clearTimeout. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a timer armed by this clock's setTimeout. */
  clearTimeout(handle: unknown): void;
}

/** The system clock. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
