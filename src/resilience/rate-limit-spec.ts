/**
 * TrafficPolicy section `spec.rateLimit`: local rate limits at the waypoint (token
 * buckets, as Envoy's local rate limit filter), refused with 429 + `retry-after` and
 * flag `RL` (gRPC: RESOURCE_EXHAUSTED).
 *
 *   rateLimit:
 *     requestsPerSecond: 100   # the sustained rate (fractions allowed: 0.5 = one every 2 s)
 *     burst: 20                # requests allowed at once after a quiet spell (default: one second's worth)
 *     key: Service             # Service (one bucket) | SourceIdentity | Header (one bucket per value)
 *     header: x-tenant         # with key: Header
 *     maxKeys: 10000           # buckets kept per Service; at the bound new keys share one overflow bucket (fail closed)
 *
 * Each waypoint replica limits on its own (local, not global): N replicas admit up to N
 * times the rate.
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { gw } from '../gateway/validate-common';

export const RATE_LIMIT_KEYS = ['Service', 'SourceIdentity', 'Header'] as const;
export type RateLimitKey = (typeof RATE_LIMIT_KEYS)[number];

export const DEFAULT_RATE_LIMIT_MAX_KEYS = 10_000;
const MAX_RATE = 1_000_000;

export interface RateLimitSpec {
  requestsPerSecond: number;
  /** Bucket size, at least 1. */
  burst: number;
  key: RateLimitKey;
  /** Lower-case header name (key: Header). */
  header?: string;
  /** Buckets kept per Service (key SourceIdentity or Header only; filled in for those). */
  maxKeys?: number;
}

function positive(o: Obj, key: string, max: number, integer: boolean): number {
  const v = o.o[key];
  const p = join(o.path, key);
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max || (integer && !Number.isInteger(v))) {
    throw new FieldError(p, `must be ${integer ? 'an integer' : 'a number'} above 0 and at most ${max}, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  return v;
}

/** Validates `spec.rateLimit` at `path`; throws FieldError naming the field. */
export function validateRateLimit(v: unknown, path: string, unknown: UnknownKeys): RateLimitSpec {
  const o = new Obj(v, path, ['requestsPerSecond', 'burst', 'key', 'header', 'maxKeys'], unknown);
  const requestsPerSecond = positive(o, 'requestsPerSecond', MAX_RATE, false);
  // Default burst: one second's worth (at least 1), so a steady client at the rate never waits.
  const burst = o.has('burst') ? positive(o, 'burst', MAX_RATE, true) : Math.max(1, Math.ceil(requestsPerSecond));
  const key = o.optOneOf('key', RATE_LIMIT_KEYS) ?? 'Service';
  const out: RateLimitSpec = { requestsPerSecond, burst, key };
  if (key === 'Header') {
    if (!o.has('header')) throw new FieldError(join(path, 'header'), 'is required with key: Header (the header whose value picks the bucket)');
    out.header = o.string('header', gw.headerName).toLowerCase();
  } else if (o.has('header')) {
    throw new FieldError(join(path, 'header'), `applies only with key: Header, not key: ${key}`);
  }
  if (key === 'Service') {
    if (o.has('maxKeys')) throw new FieldError(join(path, 'maxKeys'), 'applies only with key: SourceIdentity or Header (key: Service has one bucket)');
  } else {
    out.maxKeys = o.has('maxKeys') ? positive(o, 'maxKeys', 1_000_000, true) : DEFAULT_RATE_LIMIT_MAX_KEYS;
  }
  return out;
}
