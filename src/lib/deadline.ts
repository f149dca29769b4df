/**
 * A signal that aborts when `parent` does or when `ms` pass on `clock`, whichever comes
 * first, and says which. The waypoint uses one per route timeout and one per attempt
 * timeout; `dispose` clears the timer and the listener on the parent (they would
 * otherwise pile up on a long-lived parent signal, one per request or attempt).
 */
import type { Clock } from './clock';

export class Deadline {
  private readonly ac = new AbortController();
  private readonly timer: unknown;
  private readonly onParent = () => this.ac.abort();
  /** Whether the time ran out (rather than the parent aborting). */
  expired = false;

  constructor(private readonly parent: AbortSignal, ms: number, private readonly clock: Clock) {
    this.timer = clock.setTimeout(() => { this.expired = true; this.ac.abort(); }, ms);
    parent.addEventListener('abort', this.onParent, { once: true });
    if (parent.aborted) this.ac.abort();
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  dispose(): void {
    this.clock.clearTimeout(this.timer);
    this.parent.removeEventListener('abort', this.onParent);
  }
}
