/**
 * The retry budget: retries cannot multiply load during an outage. Over the last
 * `window`, retries ≤ ratio × original requests + minRetriesPerSecond × window, the
 * rule of Linkerd's (and Finagle's, tower's TpsBudget): each original request deposits
 * `ratio`, each retry withdraws 1, and a fixed reserve lets a quiet Service retry at
 * all. With ratio 0.2 a Service whose backend fails every request sees at most 1.2×
 * its load plus the floor, instead of (attempts + 1)×.
 *
 * The window is ten slots that expire one by one, so old traffic stops counting in
 * steps of a tenth of it, with no per-request allocation. Pure: time is an injected clock.
 *
 * One budget per destination Service per waypoint (retry-budgets.ts keeps them), shared
 * by every retry to it: the TrafficPolicy's and an HTTPRoute rule's alike.
 */
import { parseDuration } from '../gateway/duration';
import type { Clock } from '../lib/clock';
import type { RetryBudgetSpec } from './retry-spec';

const SLOTS = 10;
/** A retry in integer units, so deposits of a ratio add up exactly (5 × 0.2 is 1, not 0.9999...). */
const UNIT = 1000;

export class RetryBudget {
  private readonly slots = new Float64Array(SLOTS);
  private readonly slotMs: number;
  /** Index of the slot now being written, and when it started. */
  private current = 0;
  private currentStart: number;
  private readonly reserve: number;
  private readonly earn: number;

  constructor(readonly spec: Readonly<RetryBudgetSpec>, private readonly clock: Pick<Clock, 'now'>) {
    const windowMs = parseDuration(spec.window);
    this.slotMs = Math.max(1, windowMs / SLOTS);
    this.currentStart = clock.now();
    this.reserve = Math.round(spec.minRetriesPerSecond * (windowMs / 1000) * UNIT);
    this.earn = Math.round(spec.ratio * UNIT);
  }

  /** An original request (not a retry) was sent: it earns `ratio` retries. */
  deposit(): void {
    this.expire();
    this.slots[this.current]! += this.earn;
  }

  /** Takes one retry if the budget has it; false: the retry must not be made. */
  withdraw(): boolean {
    if (!this.spec.enabled) return true;
    if (this.units() < UNIT) return false;
    this.slots[this.current]! -= UNIT;
    return true;
  }

  /**
   * Counts a retry made elsewhere that passes through here (a hop above retried: the
   * cross-hop cap), whether or not the budget has room: it has already happened, and
   * it must keep this hop from adding retries of its own on top.
   */
  charge(): void {
    this.expire();
    this.slots[this.current]! -= UNIT;
  }

  /** Retries the budget allows now (may be negative after charges). */
  available(): number {
    return this.units() / UNIT;
  }

  private units(): number {
    this.expire();
    let sum = this.reserve;
    for (let i = 0; i < SLOTS; i++) sum += this.slots[i]!;
    return sum;
  }

  /** Moves the current slot forward to now, clearing the slots that fell out of the window. */
  private expire(): void {
    const now = this.clock.now();
    const steps = Math.floor((now - this.currentStart) / this.slotMs);
    if (steps <= 0) return;
    for (let i = 1; i <= Math.min(steps, SLOTS); i++) this.slots[(this.current + i) % SLOTS] = 0;
    this.current = (this.current + steps) % SLOTS;
    this.currentStart += steps * this.slotMs;
  }
}
