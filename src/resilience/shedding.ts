/**
 * Adaptive concurrency limiting of one Service (pure: clock and random injected, no
 * timers; windows close lazily on the next request or completion).
 *
 * Gradient (Envoy's adaptive concurrency filter): minRTT, the latency with no queue, is
 * measured with concurrency pinned to minLimit for minRttRequests requests, again every
 * minRttInterval (+ up to 10 % jitter, so replicas do not pin together), and at once
 * after MIN_LIMIT_WINDOWS windows in a row ended at minLimit (as Envoy: a backend grown
 * slower for good would otherwise hold the limit at its floor until the interval). Each sample
 * window then sets
 *     gradient = clamp((minRTT × (1 + buffer)) / sampleRTT, 0.5, 2)
 *     limit    = limit × gradient + √(limit × gradient)
 * so the limit shrinks while requests queue (sampleRTT above minRTT plus the buffer) and
 * grows, by a headroom of √limit, while they do not.
 *
 * AIMD: a window whose sampleRTT is above latencyTarget multiplies the limit by
 * backoffRatio; any other window adds `increase`.
 *
 * Either way the limit never grows from a window that used less than half of it (no
 * demand says nothing about capacity), and stays within [minLimit, maxLimit].
 *
 * Priorities: a request of priority low may use 75 % of the limit, normal 90 %, high all
 * of it, so as concurrency climbs low is shed first, then normal. Without a priority
 * header every request may use the whole limit.
 */
import { realClock, type Clock } from '../lib/clock';
import { sheddingTimes, type LoadSheddingSpec, type SheddingTimes } from './shedding-spec';
import type { Headers } from './fault';

export const PRIORITIES = ['high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];
/** Share of the limit each priority may use. */
export const PRIORITY_SHARE: Readonly<Record<Priority, number>> = { high: 1, normal: 0.9, low: 0.75 };
/** Latencies kept per window: enough for a percentile, bounded whatever the rate. */
export const MAX_WINDOW_SAMPLES = 2048;
/** Windows in a row ending at minLimit that start a minRTT measurement at once (Envoy's figure). */
export const MIN_LIMIT_WINDOWS = 5;
const MIN_GRADIENT = 0.5;
const MAX_GRADIENT = 2;

/** The limiter's state, for the admin view and tests. */
export interface LimiterView {
  limit: number;
  inFlight: number;
  /** ms; undefined until first measured. */
  minRttMs?: number;
  /** Pinned to minLimit while minRTT is measured. */
  measuring: boolean;
}

export class AdaptiveLimiter {
  private limitValue: number;
  private inFlightCount = 0;
  private windowStart: number;
  private window: number[] = [];
  /** Most requests in flight at once during this window. */
  private peak = 0;
  private minRtt: number | undefined;
  /** clock.now() when the current minRTT measurement began; undefined when not measuring. */
  private measuringSince: number | undefined;
  private rttSamples: number[] = [];
  private nextMeasureAt = 0;
  /** Sample windows in a row that ended with the limit at minLimit (Gradient). */
  private windowsAtMin = 0;
  private readonly times: SheddingTimes;

  constructor(readonly spec: LoadSheddingSpec, private readonly clock: Clock = realClock, private readonly random: () => number = Math.random) {
    this.times = sheddingTimes(spec);
    this.limitValue = spec.minLimit;
    this.windowStart = clock.now();
    if (spec.algorithm === 'Gradient') this.measuringSince = this.windowStart;
  }

  /** The limit now: minLimit while minRTT is measured. */
  get limit(): number {
    return this.measuringSince !== undefined ? this.spec.minLimit : this.limitValue;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  view(): LimiterView {
    return { limit: this.limit, inFlight: this.inFlightCount, ...(this.minRtt !== undefined ? { minRttMs: this.minRtt } : {}), measuring: this.measuringSince !== undefined };
  }

  /** The priority a request's headers give it (`normal` without the header or with another value). */
  priorityOf(headers: Headers): Priority {
    const name = this.spec.priorityHeader;
    if (name === undefined) return 'normal';
    const v = headers[name];
    const s = typeof v === 'string' ? v : v?.[0];
    return s === 'high' || s === 'low' ? s : 'normal';
  }

  /** Takes a slot for one request of `priority`: false when it must be shed. Each true needs one release(). */
  tryAcquire(priority: Priority): boolean {
    this.tick();
    const limit = this.limit;
    // Without a priority header, every request may use the whole limit.
    const share = this.spec.priorityHeader === undefined ? 1 : PRIORITY_SHARE[priority];
    if (this.inFlightCount >= Math.max(1, Math.floor(limit * share))) return false;
    this.inFlightCount++;
    if (this.inFlightCount > this.peak) this.peak = this.inFlightCount;
    return true;
  }

  /**
   * Gives back the slot of a request admitted at `startedAt`. `latencyMs`: how long the
   * backend took to answer it; undefined when that says nothing of its load (the
   * request failed before an answer, e.g. a refused connection).
   */
  release(startedAt: number, latencyMs?: number): void {
    if (this.inFlightCount > 0) this.inFlightCount--;
    this.tick();
    if (latencyMs === undefined || !(latencyMs >= 0)) return;
    if (this.measuringSince !== undefined) {
      // Only requests that began under the pinned limit saw no queue of the limiter's making.
      if (startedAt >= this.measuringSince) this.rttSamples.push(latencyMs);
      if (this.rttSamples.length >= this.spec.gradient!.minRttRequests) this.endMeasurement();
      return;
    }
    if (this.window.length < MAX_WINDOW_SAMPLES) this.window.push(latencyMs);
  }

  /** Closes the sample window if its time is up, and starts a minRTT measurement when due. */
  private tick(): void {
    const now = this.clock.now();
    if (now - this.windowStart < this.times.sampleWindowMs) return;
    if (this.measuringSince === undefined) {
      if (this.window.length > 0) {
        this.update(percentile(this.window, this.spec.percentile));
        this.windowsAtMin = this.limitValue === this.spec.minLimit ? this.windowsAtMin + 1 : 0;
      }
      if (this.spec.gradient && (now >= this.nextMeasureAt || this.windowsAtMin >= MIN_LIMIT_WINDOWS)) this.beginMeasurement(now);
    }
    this.window = [];
    this.peak = this.inFlightCount;
    this.windowStart = now;
  }

  private update(sampleRtt: number): void {
    const { spec } = this;
    let next: number;
    if (spec.gradient) {
      const target = this.minRtt! * (1 + spec.gradient.buffer / 100);
      const gradient = Math.min(MAX_GRADIENT, Math.max(MIN_GRADIENT, sampleRtt > 0 ? target / sampleRtt : MAX_GRADIENT));
      const scaled = this.limitValue * gradient;
      next = scaled + Math.sqrt(scaled);
    } else {
      const aimd = spec.aimd!;
      next = sampleRtt > this.times.latencyTargetMs ? this.limitValue * aimd.backoffRatio : this.limitValue + aimd.increase;
    }
    // No demand says nothing about capacity: a window that used under half the limit does not raise it.
    if (next > this.limitValue && this.peak * 2 < this.limitValue) next = this.limitValue;
    this.limitValue = Math.min(spec.maxLimit, Math.max(spec.minLimit, Math.floor(next)));
  }

  private beginMeasurement(now: number): void {
    this.measuringSince = now;
    this.windowsAtMin = 0;
    this.rttSamples = [];
  }

  private endMeasurement(): void {
    this.minRtt = percentile(this.rttSamples, this.spec.percentile);
    this.rttSamples = [];
    this.measuringSince = undefined;
    const now = this.clock.now();
    this.nextMeasureAt = now + this.times.minRttIntervalMs * (1 + 0.1 * this.random());
    this.window = [];
    this.peak = this.inFlightCount;
    this.windowStart = now;
  }
}

/** The `p`-th percentile (0 < p <= 100, nearest rank) of `values` (sorted in place). */
export function percentile(values: number[], p: number): number {
  values.sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * values.length));
  return values[Math.min(values.length, rank) - 1]!;
}
