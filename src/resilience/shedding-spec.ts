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
import { parseDuration } from '../gateway/duration';
import { gw } from '../gateway/validate-common';
import { requiredDuration } from './fault-spec';
import { durationField, intField, numberField } from './spec-fields';

export const SHEDDING_ALGORITHMS = ['Gradient', 'AIMD'] as const;
export type SheddingAlgorithm = (typeof SHEDDING_ALGORITHMS)[number];

/** As written, defaults filled in (durations kept as text: the spec is stored and read back through this validator). */
export interface GradientSpec {
  /** Latency above minRTT tolerated before the limit shrinks, percent of minRTT. */
  buffer: number;
  /** How often minRTT is measured again (concurrency pinned to minLimit meanwhile). */
  minRttInterval: string;
  /** Requests measured for minRTT. */
  minRttRequests: number;
}

export interface AimdSpec {
  /** A window's latency above this shrinks the limit. */
  latencyTarget: string;
  /** The limit's multiplier on a window over the target (0.5-0.99). */
  backoffRatio: number;
  /** Added to the limit after a window within the target that used at least half of it. */
  increase: number;
}

export interface LoadSheddingSpec {
  algorithm: SheddingAlgorithm;
  minLimit: number;
  maxLimit: number;
  sampleWindow: string;
  /** Of the window's latencies, 1-100. */
  percentile: number;
  /** Present with algorithm Gradient (defaults filled in). */
  gradient?: GradientSpec;
  /** Present with algorithm AIMD. */
  aimd?: AimdSpec;
  /** Lower-case header naming the request's priority; absent: every request is `normal`. */
  priorityHeader?: string;
}

export const SHEDDING_DEFAULTS = Object.freeze({
  minLimit: 3, maxLimit: 1000, sampleWindow: '100ms', percentile: 50,
  gradient: Object.freeze({ buffer: 25, minRttInterval: '60s', minRttRequests: 50 }),
  aimd: Object.freeze({ backoffRatio: 0.9, increase: 1 }),
});

/** The spec's times in ms, as the limiter runs them. */
export interface SheddingTimes {
  sampleWindowMs: number;
  minRttIntervalMs: number;
  latencyTargetMs: number;
}

export function sheddingTimes(spec: LoadSheddingSpec): SheddingTimes {
  return {
    sampleWindowMs: parseDuration(spec.sampleWindow),
    minRttIntervalMs: spec.gradient ? parseDuration(spec.gradient.minRttInterval) : 0,
    latencyTargetMs: spec.aimd ? parseDuration(spec.aimd.latencyTarget) : 0,
  };
}

/** Validates `spec.loadShedding` at `path`; throws FieldError naming the field. */
export function validateLoadShedding(v: unknown, path: string, unknown: UnknownKeys): LoadSheddingSpec {
  const o = new Obj(v, path, ['algorithm', 'minLimit', 'maxLimit', 'sampleWindow', 'percentile', 'gradient', 'aimd', 'priorityHeader'], unknown);
  const d = SHEDDING_DEFAULTS;
  const algorithm = o.optOneOf('algorithm', SHEDDING_ALGORITHMS) ?? 'Gradient';
  const minLimit = intField(o, 'minLimit', 1, 100_000, d.minLimit);
  const maxLimit = intField(o, 'maxLimit', 1, 100_000, Math.max(d.maxLimit, minLimit));
  if (maxLimit < minLimit) throw new FieldError(join(path, 'maxLimit'), `must be at least minLimit (${minLimit}), got ${maxLimit}`);
  const out: LoadSheddingSpec = {
    algorithm, minLimit, maxLimit,
    sampleWindow: durationField(o, 'sampleWindow', 10, 60_000, d.sampleWindow),
    percentile: numberField(o, 'percentile', 0, 100, d.percentile),
  };
  if (out.percentile === 0) throw new FieldError(join(path, 'percentile'), 'must be above 0 (50 is the median, 90 the 90th percentile)');
  const other = algorithm === 'Gradient' ? 'aimd' : 'gradient';
  if (o.has(other)) throw new FieldError(join(path, other), `applies only with algorithm: ${other === 'aimd' ? 'AIMD' : 'Gradient'}, not ${algorithm}`);
  if (algorithm === 'Gradient') {
    const g = new Obj(o.has('gradient') ? o.o.gradient : {}, join(path, 'gradient'), ['buffer', 'minRttInterval', 'minRttRequests'], unknown);
    out.gradient = {
      buffer: numberField(g, 'buffer', 0, 100, d.gradient.buffer),
      minRttInterval: durationField(g, 'minRttInterval', 1000, 24 * 3_600_000, d.gradient.minRttInterval),
      minRttRequests: intField(g, 'minRttRequests', 1, 10_000, d.gradient.minRttRequests),
    };
  } else {
    if (!o.has('aimd')) throw new FieldError(join(path, 'aimd'), 'is required with algorithm: AIMD (at least latencyTarget, e.g. { latencyTarget: 250ms })');
    const a = new Obj(o.o.aimd, join(path, 'aimd'), ['latencyTarget', 'backoffRatio', 'increase'], unknown);
    out.aimd = {
      latencyTarget: requiredDuration(a, 'latencyTarget', 1, 600_000),
      backoffRatio: numberField(a, 'backoffRatio', 0.5, 0.99, d.aimd.backoffRatio),
      increase: intField(a, 'increase', 1, 1000, d.aimd.increase),
    };
  }
  if (o.has('priorityHeader')) out.priorityHeader = o.string('priorityHeader', gw.headerName).toLowerCase();
  return out;
}
