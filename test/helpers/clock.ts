import type { Clock } from '../../src/lib/clock';

interface Timer { due: number; seq: number; fn: () => void }

/**
 * A clock that moves only when told (src/lib/clock.ts's Clock): timers fire on
 * advance() or runNext(), in due order, each seeing now() at its own due time, so a
 * timer that re-arms itself fires as often as it would in real time. The one clock
 * double for the unit tests of timed decision logic.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, Timer>();
  /** Every delay ever armed, in order. */
  readonly armed: number[] = [];
  /** How far advance() and runNext() have moved the clock in all. */
  advanced = 0;

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const seq = ++this.seq;
    this.timers.set(seq, { due: this.t + Math.max(0, ms), seq, fn });
    this.armed.push(ms);
    return seq;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers armed and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way (also ones armed meanwhile). */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let next = this.earliest(); next && next.due <= end; next = this.earliest()) this.fire(next);
    this.move(end);
  }

  /** Jumps to the earliest timer and runs it; returns the jump. Throws when none is armed. */
  runNext(): number {
    const next = this.earliest();
    if (!next) throw new Error('no timer armed');
    const before = this.t;
    this.fire(next);
    return this.t - before;
  }

  private earliest(): Timer | undefined {
    let next: Timer | undefined;
    for (const x of this.timers.values()) if (!next || x.due < next.due || (x.due === next.due && x.seq < next.seq)) next = x;
    return next;
  }

  private fire(timer: Timer): void {
    this.timers.delete(timer.seq);
    this.move(timer.due);
    timer.fn();
  }

  private move(to: number): void {
    if (to <= this.t) return;
    this.advanced += to - this.t;
    this.t = to;
  }
}
