/**
 * A Service's bulkhead at the waypoint (TrafficPolicy `connectionPool`, pool-spec.ts):
 * at most `maxConcurrentRequests` of its requests in flight upstream, at most
 * `maxPendingRequests` more waiting (in arrival order) for a slot; any request beyond
 * is refused at once (503, response flag `UO`), so its excess never queues without
 * bound. Each Service has its own, so one saturated Service holds only its own slots
 * and its neighbours behind the same waypoint are not slowed.
 *
 * A request holds its slot from admission until its response has been sent (or it
 * failed): what it occupies upstream. Pure apart from the promises of wait().
 */
import type { ConnectionPoolSpec } from './pool-spec';

interface Waiter {
  grant(ok: boolean): void;
}

export class Bulkhead {
  private active = 0;
  private readonly queue: Waiter[] = [];
  /** Requests refused for overflow since the start (for views; the metric counts by flag). */
  overflowed = 0;
  private readonly maxActive: number;
  private readonly maxPending: number;

  constructor(readonly spec: Readonly<ConnectionPoolSpec>) {
    this.maxActive = spec.maxConcurrentRequests ?? Number.POSITIVE_INFINITY;
    this.maxPending = spec.maxPendingRequests ?? Number.POSITIVE_INFINITY;
  }

  /** Takes a slot if one is free now (no allocation); false: call wait(). */
  enter(): boolean {
    if (this.active < this.maxActive && this.queue.length === 0) {
      this.active++;
      return true;
    }
    return false;
  }

  /**
   * Queues for a slot: undefined when the queue is full (the overflow: refuse at once),
   * else a promise of true (the slot is taken, leave() it later) or false (`signal`
   * aborted first: nothing to leave).
   */
  wait(signal: AbortSignal): Promise<boolean> | undefined {
    if (this.queue.length >= this.maxPending || signal.aborted) {
      if (!signal.aborted) this.overflowed++;
      return signal.aborted ? Promise.resolve(false) : undefined;
    }
    return new Promise((resolve) => {
      const w: Waiter = {
        grant: (ok) => {
          signal.removeEventListener('abort', onAbort);
          resolve(ok);
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        w.grant(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
    });
  }

  /** Frees a slot: handed straight to the oldest waiter, if any. */
  leave(): void {
    const next = this.queue.shift();
    if (next) next.grant(true);
    else this.active--;
  }

  /** In flight and waiting now. */
  get load(): { active: number; pending: number } {
    return { active: this.active, pending: this.queue.length };
  }
}
