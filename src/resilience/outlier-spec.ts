/**
 * TrafficPolicy section `spec.outlierDetection`: passive health checking of a Service's
 * endpoints by the waypoint (Istio's DestinationRule outlierDetection, Envoy's outlier
 * detection), run by outlier.ts.
 *
 *   outlierDetection:
 *     consecutive5xxErrors: 5        # 5xx answers (and connect failures/resets/timeouts) in a row; 0 = off
 *     consecutiveGatewayErrors: 0    # 502/503/504 (and connect failures/resets/timeouts) in a row; 0 = off
 *     interval: 10s                  # how often success rates are compared and ejection counts decay
 *     baseEjectionTime: 30s          # ejected for base x (times ejected so far)
 *     maxEjectionTime: 300s          # ... but never longer than this
 *     maxEjectionPercent: 10         # at most this share of endpoints ejected at once (one always may be)
 *     successRate:                   # optional; absent: no success-rate ejection
 *       minimumHosts: 5              # endpoints with enough requests needed to compare at all
 *       requestVolume: 100           # requests in an interval for an endpoint to be compared
 *       stdevFactor: 1.9             # ejected below mean - stdevFactor x stdev
 *
 * Defaults are Istio's (Envoy's stdevFactor 1900 is 1.9 here). The section present with
 * no field means exactly those defaults.
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { parseDuration } from '../gateway/duration';
import { durationField, intField, numberField } from './spec-fields';

export interface SuccessRateSpec {
  minimumHosts: number;
  requestVolume: number;
  stdevFactor: number;
}

/** As written, defaults filled in (durations kept as text: the spec is stored and read back through this validator). */
export interface OutlierDetectionSpec {
  /** 0: off. */
  consecutive5xxErrors: number;
  /** 0: off. */
  consecutiveGatewayErrors: number;
  interval: string;
  baseEjectionTime: string;
  maxEjectionTime: string;
  /** 0-100. */
  maxEjectionPercent: number;
  successRate?: SuccessRateSpec;
}

export const OUTLIER_DEFAULTS: Readonly<Omit<OutlierDetectionSpec, 'successRate'>> = Object.freeze({
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  interval: '10s',
  baseEjectionTime: '30s',
  maxEjectionTime: '300s',
  maxEjectionPercent: 10,
});

/** The spec's times in ms, as the detector runs them. */
export interface OutlierTimes {
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
}

/** The durations of a validated spec in ms (the cap never below the base). */
export function outlierTimes(spec: Pick<OutlierDetectionSpec, 'interval' | 'baseEjectionTime' | 'maxEjectionTime'>): OutlierTimes {
  const baseEjectionTimeMs = parseDuration(spec.baseEjectionTime);
  return { intervalMs: parseDuration(spec.interval), baseEjectionTimeMs, maxEjectionTimeMs: Math.max(baseEjectionTimeMs, parseDuration(spec.maxEjectionTime)) };
}

export const SUCCESS_RATE_DEFAULTS: Readonly<SuccessRateSpec> = Object.freeze({ minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 });

const HOUR_MS = 3_600_000;

/** Validates `spec.outlierDetection` at `path`; throws FieldError naming the field. */
export function validateOutlierDetection(v: unknown, path: string, unknown: UnknownKeys): OutlierDetectionSpec {
  const o = new Obj(v, path, ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'interval', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent', 'successRate'], unknown);
  const d = OUTLIER_DEFAULTS;
  const out: OutlierDetectionSpec = {
    consecutive5xxErrors: intField(o, 'consecutive5xxErrors', 0, 10_000, d.consecutive5xxErrors),
    consecutiveGatewayErrors: intField(o, 'consecutiveGatewayErrors', 0, 10_000, d.consecutiveGatewayErrors),
    // A timer per interval: below 100ms it would cost more than it tells.
    interval: durationField(o, 'interval', 100, HOUR_MS, d.interval),
    baseEjectionTime: durationField(o, 'baseEjectionTime', 1, HOUR_MS, d.baseEjectionTime),
    maxEjectionTime: d.maxEjectionTime,
    maxEjectionPercent: intField(o, 'maxEjectionPercent', 0, 100, d.maxEjectionPercent),
  };
  // Left out, the cap follows a base above its default, and is written so: the stored
  // spec is validated again when read, where a written cap below the base is refused.
  const defaultCap = parseDuration(out.baseEjectionTime) > parseDuration(d.maxEjectionTime) ? out.baseEjectionTime : d.maxEjectionTime;
  out.maxEjectionTime = durationField(o, 'maxEjectionTime', 1, 24 * HOUR_MS, defaultCap);
  // A cap below the base would make every ejection the cap: say so rather than surprise.
  if (o.has('maxEjectionTime') && parseDuration(out.maxEjectionTime) < parseDuration(out.baseEjectionTime)) {
    throw new FieldError(join(path, 'maxEjectionTime'), `must be at least baseEjectionTime (${out.baseEjectionTime}), got ${JSON.stringify(out.maxEjectionTime)}`);
  }
  if (o.has('successRate')) {
    const s = new Obj(o.o.successRate, join(path, 'successRate'), ['minimumHosts', 'requestVolume', 'stdevFactor'], unknown);
    const sd = SUCCESS_RATE_DEFAULTS;
    out.successRate = {
      minimumHosts: intField(s, 'minimumHosts', 1, 10_000, sd.minimumHosts),
      requestVolume: intField(s, 'requestVolume', 1, 1_000_000, sd.requestVolume),
      stdevFactor: numberField(s, 'stdevFactor', 0, 100, sd.stdevFactor),
    };
  }
  return out;
}
