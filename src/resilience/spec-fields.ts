/**
 * Number and duration checks for TrafficPolicy sections (registry/checks.ts has the
 * string, enum and object ones). Each reads one key of an Obj, returns the default when
 * the key is absent, and otherwise throws FieldError naming the full path, the range
 * and the value: `spec.outlierDetection.maxEjectionPercent must be an integer 0-100, got 150`.
 */
import { DurationError, parseDuration } from '../gateway/duration';
import { int } from '../gateway/validate-common';
import { formatDuration } from '../lib/options';
import { describe as shown, FieldError, join, type Obj } from '../registry/checks';

/** An integer in [min, max], or `dflt` when absent. */
export function intField(o: Obj, key: string, min: number, max: number, dflt: number): number {
  return o.has(key) ? int(o, key, min, max) : dflt;
}

/** true or false, or `dflt` when absent. */
export function boolField(o: Obj, key: string, dflt: boolean): boolean {
  const v = o.o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new FieldError(join(o.path, key), `must be true or false, got ${shown(v)}`);
  return v;
}

/** A finite number in [min, max], or `dflt` when absent. */
export function numberField(o: Obj, key: string, min: number, max: number, dflt: number): number {
  const v = o.o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new FieldError(join(o.path, key), `must be a number from ${min} to ${max}, got ${shown(v)}`);
  }
  return v;
}

/**
 * A Gateway API duration (`10s`, `500ms`, `1m30s`) in [minMs, maxMs], kept as written
 * (the validated spec is stored and validated again when read, so it keeps the input's
 * shape), or `dflt` when absent. Durations are never negative by their grammar; a bare
 * number is refused (it hides its unit). Runtime code converts with parseDuration.
 */
export function durationField(o: Obj, key: string, minMs: number, maxMs: number, dflt: string): string {
  const v = o.o[key];
  const p = join(o.path, key);
  if (v === undefined) return dflt;
  if (typeof v !== 'string') throw new FieldError(p, `must be a duration such as 10s or 500ms, got ${shown(v)}`);
  let ms: number;
  try {
    ms = parseDuration(v);
  } catch (err) {
    if (err instanceof DurationError) throw new FieldError(p, err.message);
    throw err;
  }
  if (ms < minMs || ms > maxMs) throw new FieldError(p, `must be from ${formatDuration(minMs)} to ${formatDuration(maxMs)}, got ${JSON.stringify(v)}`);
  return v;
}
