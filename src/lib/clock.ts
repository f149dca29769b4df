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

/** setTimeout fires at once (with a warning) beyond 2^31-1 ms, about 24.8 days; 90-day certs exceed it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `fn` after `ms` on `clock`, however long (re-arming in steps below setTimeout's limit); returns a cancel function. */
export function boundedDelay(ms: number, fn: () => void, clock: Clock = realClock): () => void {
  let handle: unknown;
  let cancelled = false;
  const due = clock.now() + Math.max(0, ms);
  const arm = () => {
    const left = due - clock.now();
    handle = clock.setTimeout(() => {
      if (cancelled) return;
      if (due - clock.now() > 0) arm();
      else fn();
    }, Math.min(Math.max(0, left), MAX_TIMER_MS));
  };
  arm();
  return () => {
    cancelled = true;
    clock.clearTimeout(handle);
  };
}
