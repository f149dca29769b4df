import { realClock, type Clock } from '../lib/clock';

// The clock moved to src/lib (the data path uses it too); re-exported so CA callers keep their imports.
export { realClock, type Clock };

/** setTimeout fires at once (with a warning) beyond 2^31-1 ms, about 24.8 days; 90-day certs exceed it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `fn` after `ms`, however long, and returns a cancel function. */
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

// The backoff moved to src/lib (the registry follower uses it too); re-exported for CA callers.
export { backoffDelay } from '../lib/backoff';
