/**
 * TrafficPolicy section `spec.faults`: fault injection at the waypoint, for resilience
 * tests in production without touching the apps (Envoy's HTTP fault filter, Istio's
 * VirtualService `fault`).
 *
 *   faults:
 *     delay: { fixedDelay: 200ms, percentage: 10 }        # 10 % of requests wait 200 ms, then go on
 *     abort: { httpStatus: 503, percentage: 50 }          # or grpcStatus: 14 (UNAVAILABLE)
 *     match: { headers: [{ name: x-chaos, value: "on" }] } # only requests with every header (optional)
 *
 * An empty section injects nothing. Percentages are 0-100 with fractions (0.1 = one in a thousand); delay and abort are drawn
 * independently, delay first (Envoy's order), so a request may be delayed and then aborted.
 * The runtime (fault.ts) answers the abort locally with flag `FI`, a delay sets `DI`.
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { parseDuration } from '../gateway/duration';
import { headerMatches } from '../gateway/validate-common';
import type { HeaderMatch } from '../gateway/types';
import { durationField, numberField } from './spec-fields';

/** The longest delay accepted: longer is a stuck request, not a test of one. */
export const MAX_FAULT_DELAY_MS = 60 * 60 * 1000;

/** As written, defaults filled in (durations kept as text: the spec is stored and read back through this validator). */
export interface FaultDelaySpec {
  /** How long a chosen request waits before it is forwarded (a Gateway API duration). */
  fixedDelay: string;
  /** Share of (matching) requests delayed, 0-100. */
  percentage: number;
}

export interface FaultAbortSpec {
  /** HTTP status answered (gRPC requests get the matching grpc-status); exactly one of this and grpcStatus. */
  httpStatus?: number;
  /** gRPC status code 1-16 answered to gRPC requests (others get the matching HTTP status). */
  grpcStatus?: number;
  /** Share of (matching) requests aborted, 0-100. */
  percentage: number;
}

export interface FaultSpec {
  delay?: FaultDelaySpec;
  abort?: FaultAbortSpec;
  /** Only requests carrying every one of these headers get faults; absent = every request. */
  match?: { headers: HeaderMatch[] };
}

/** A required percentage 0-100 (fractions allowed). */
export function percentage(o: Obj, key: string): number {
  if (!o.has(key)) throw new FieldError(join(o.path, key), 'is required (a percentage 0-100, fractions allowed)');
  return numberField(o, key, 0, 100, 0);
}

/** A required Gateway API duration within [minMs, maxMs], kept as written. */
export function requiredDuration(o: Obj, key: string, minMs: number, maxMs: number): string {
  if (!o.has(key)) throw new FieldError(join(o.path, key), 'is required (a duration such as 200ms or 1s)');
  return durationField(o, key, minMs, maxMs, '');
}

function statusCode(o: Obj, key: string, min: number, max: number, what: string): number {
  const v = o.o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new FieldError(join(o.path, key), `must be ${what} (an integer ${min}-${max}), got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates `spec.faults` at `path`; throws FieldError naming the field. */
export function validateFaults(v: unknown, path: string, unknown: UnknownKeys): FaultSpec {
  const o = new Obj(v, path, ['delay', 'abort', 'match'], unknown);
  const out: FaultSpec = {};
  if (o.has('delay')) {
    const d = new Obj(o.o.delay, join(path, 'delay'), ['fixedDelay', 'percentage'], unknown);
    out.delay = { fixedDelay: requiredDuration(d, 'fixedDelay', 1, MAX_FAULT_DELAY_MS), percentage: percentage(d, 'percentage') };
  }
  if (o.has('abort')) {
    const a = new Obj(o.o.abort, join(path, 'abort'), ['httpStatus', 'grpcStatus', 'percentage'], unknown);
    if (a.has('httpStatus') === a.has('grpcStatus')) {
      throw new FieldError(join(path, 'abort'), 'must set exactly one of httpStatus (e.g. 503) and grpcStatus (e.g. 14 for UNAVAILABLE)');
    }
    // 2xx-5xx like Envoy's abort: a 1xx is not a final answer.
    out.abort = a.has('httpStatus')
      ? { httpStatus: statusCode(a, 'httpStatus', 200, 599, 'an HTTP status'), percentage: percentage(a, 'percentage') }
      : { grpcStatus: statusCode(a, 'grpcStatus', 1, 16, 'a gRPC status other than OK'), percentage: percentage(a, 'percentage') };
  }
  if (o.has('match')) {
    const m = new Obj(o.o.match, join(path, 'match'), ['headers'], unknown);
    out.match = { headers: headerMatches(m, 'headers', unknown) };
  }
  return out;
}

/** The delay in ms (the spec keeps it as written). */
export function fixedDelayMs(delay: FaultDelaySpec): number {
  return parseDuration(delay.fixedDelay);
}
