/**
 * TrafficPolicy section `spec.loadShedding`: an adaptive concurrency limit per Service
 * (in the spirit of Envoy's adaptive concurrency filter): requests beyond the limit are
 * answered 503 with flag `SH` (gRPC: UNAVAILABLE) at once instead of queueing at an
 * overloaded backend; the limit follows the latency measured.
 *
 *   loadShedding:
 *     algorithm: Gradient        # Gradient (default) | AIMD
 *     minLimit: 3                # the limit never goes below (and is pinned to it while minRTT is measured)
 *     maxLimit: 1000
 *     sampleWindow: 100ms        # the limit is recomputed once per window ...
 *     percentile: 50             # ... from this percentile of the latencies that finished in it
 *     gradient: { buffer: 25, minRttInterval: 60s, minRttRequests: 50 }
 *     aimd: { latencyTarget: 250ms, backoffRatio: 0.9, increase: 1 }   # required parts with algorithm: AIMD
 *     priorityHeader: x-priority # high | normal (default) | low: lower priority is shed first
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { gw, int } from '../gateway/validate-common';
import { durationMs, percentage } from './fault-spec';

export const SHEDDING_ALGORITHMS = ['Gradient', 'AIMD'] as const;
export type SheddingAlgorithm = (typeof SHEDDING_ALGORITHMS)[number];

export interface GradientSpec {
  /** Latency above minRTT tolerated before the limit shrinks, percent of minRTT. */
  buffer: number;
  /** How often minRTT is measured again (concurrency pinned to minLimit meanwhile), ms. */
  minRttIntervalMs: number;
  /** Requests measured for minRTT. */
  minRttRequests: number;
}

export interface AimdSpec {
  /** A window's latency above this shrinks the limit, ms. */
  latencyTargetMs: number;
  /** The limit's multiplier on a window over the target (0.5-0.99). */
  backoffRatio: number;
  /** Added to the limit after a window within the target that used at least half of it. */
  increase: number;
}

export interface LoadSheddingSpec {
  algorithm: SheddingAlgorithm;
  minLimit: number;
  maxLimit: number;
  sampleWindowMs: number;
  percentile: number;
  /** Present with algorithm Gradient (defaults filled in). */
  gradient?: GradientSpec;
  /** Present with algorithm AIMD. */
  aimd?: AimdSpec;
  /** Lower-case header naming the request's priority; absent: every request is `normal`. */
  priorityHeader?: string;
}

export const SHEDDING_DEFAULTS = Object.freeze({
  minLimit: 3, maxLimit: 1000, sampleWindowMs: 100, percentile: 50,
  gradient: Object.freeze({ buffer: 25, minRttIntervalMs: 60_000, minRttRequests: 50 }),
  aimd: Object.freeze({ backoffRatio: 0.9, increase: 1 }),
});

function ratio(o: Obj, key: string, min: number, max: number, dflt: number): number {
  if (!o.has(key)) return dflt;
  const v = o.o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new FieldError(join(o.path, key), `must be a number ${min}-${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

const optInt = (o: Obj, key: string, min: number, max: number, dflt: number) => (o.has(key) ? int(o, key, min, max) : dflt);
const optDurationMs = (o: Obj, key: string, min: number, max: number, dflt: number) => (o.has(key) ? durationMs(o, key, min, max) : dflt);

/** Validates `spec.loadShedding` at `path`; throws FieldError naming the field. */
export function validateLoadShedding(v: unknown, path: string, unknown: UnknownKeys): LoadSheddingSpec {
  const o = new Obj(v, path, ['algorithm', 'minLimit', 'maxLimit', 'sampleWindow', 'percentile', 'gradient', 'aimd', 'priorityHeader'], unknown);
  const d = SHEDDING_DEFAULTS;
  const algorithm = o.optOneOf('algorithm', SHEDDING_ALGORITHMS) ?? 'Gradient';
  const minLimit = optInt(o, 'minLimit', 1, 100_000, d.minLimit);
  const maxLimit = optInt(o, 'maxLimit', 1, 100_000, Math.max(d.maxLimit, minLimit));
  if (maxLimit < minLimit) throw new FieldError(join(path, 'maxLimit'), `must be at least minLimit (${minLimit}), got ${maxLimit}`);
  const out: LoadSheddingSpec = {
    algorithm, minLimit, maxLimit,
    sampleWindowMs: optDurationMs(o, 'sampleWindow', 10, 60_000, d.sampleWindowMs),
    percentile: o.has('percentile') ? percentage(o, 'percentile') : d.percentile,
  };
  if (out.percentile === 0) throw new FieldError(join(path, 'percentile'), 'must be above 0 (50 is the median, 90 the 90th percentile)');
  const other = algorithm === 'Gradient' ? 'aimd' : 'gradient';
  if (o.has(other)) throw new FieldError(join(path, other), `applies only with algorithm: ${other === 'aimd' ? 'AIMD' : 'Gradient'}, not ${algorithm}`);
  if (algorithm === 'Gradient') {
    const g = new Obj(o.has('gradient') ? o.o.gradient : {}, join(path, 'gradient'), ['buffer', 'minRttInterval', 'minRttRequests'], unknown);
    out.gradient = {
      buffer: g.has('buffer') ? percentage(g, 'buffer') : d.gradient.buffer,
      minRttIntervalMs: optDurationMs(g, 'minRttInterval', 1000, 24 * 3_600_000, d.gradient.minRttIntervalMs),
      minRttRequests: optInt(g, 'minRttRequests', 1, 10_000, d.gradient.minRttRequests),
    };
  } else {
    if (!o.has('aimd')) throw new FieldError(join(path, 'aimd'), 'is required with algorithm: AIMD (at least latencyTarget, e.g. { latencyTarget: 250ms })');
    const a = new Obj(o.o.aimd, join(path, 'aimd'), ['latencyTarget', 'backoffRatio', 'increase'], unknown);
    out.aimd = {
      latencyTargetMs: durationMs(a, 'latencyTarget', 1, 600_000),
      backoffRatio: ratio(a, 'backoffRatio', 0.5, 0.99, d.aimd.backoffRatio),
      increase: optInt(a, 'increase', 1, 1000, d.aimd.increase),
    };
  }
  if (o.has('priorityHeader')) out.priorityHeader = o.string('priorityHeader', gw.headerName).toLowerCase();
  return out;
}
