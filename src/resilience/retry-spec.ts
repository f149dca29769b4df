/**
 * TrafficPolicy section `spec.retry`: which failures a waypoint retries for a Service,
 * how often, how far apart, and within which limits (docs/resilience.md, "Retries").
 *
 *   retry:
 *     attempts: 2                       # retries after the first try (GEP-1731's meaning)
 *     perTryTimeout: 2s                 # each try; absent: none (the route's backendRequest wins)
 *     retryOn: [gateway-error, connect-failure, reset]
 *     retriableStatusCodes: [409]       # retried on top of retryOn
 *     backoff: { baseInterval: 25ms, maxInterval: 250ms }   # exponential, full jitter
 *     retryNonIdempotent: false         # POST, PATCH, CONNECT only retried when true
 *     budget: { ratio: 0.2, minRetriesPerSecond: 2, window: 10s }
 *     crossHopCap: true                 # see retry-chain.ts
 *
 * Durations are Gateway API durations (GEP-2257). The defaults below are what a
 * Service gets when its policy has a `retry` section that leaves a field out; the
 * budget's and the cross-hop cap's defaults also apply to a route's GEP-1731 retry on
 * a Service without any policy (DEFAULT_RETRY_LIMITS).
 */
import { DurationError, parseDuration } from '../gateway/duration';
import { int, list, unique } from '../gateway/validate-common';
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';

/**
 * Outcome classes, Envoy's names: `5xx` any 5xx or no response at all; `gateway-error`
 * 502/503/504 or no response; `reset` no response head (reset, disconnect, per-try
 * timeout); `connect-failure` the endpoint could not be reached; `retriable-4xx` 409.
 */
export const RETRY_ON = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx'] as const;
export type RetryOn = (typeof RETRY_ON)[number];

/** Linkerd-style budget: retries in the last `windowMs` ≤ ratio × requests + minRetriesPerSecond × window. */
export interface RetryBudgetSpec {
  /** false: no budget (every retry the policy allows is made). Not recommended; for demonstrations. */
  enabled: boolean;
  /** Retries allowed per original request, 0..1000 (0.2: at most 20 % extra load). */
  ratio: number;
  /** Retries allowed per second whatever the traffic, so a quiet Service still retries. */
  minRetriesPerSecond: number;
  /** How far back requests and retries count, ms. */
  windowMs: number;
}

export interface RetrySpec {
  /** Retries after the first try, 0..10. */
  attempts: number;
  /** Per-try timeout, ms; absent: none of its own. */
  perTryTimeoutMs?: number;
  retryOn: RetryOn[];
  /** Statuses retried on top of retryOn's classes. */
  retriableStatusCodes: number[];
  backoff: { baseIntervalMs: number; maxIntervalMs: number };
  /** Retry methods that are not idempotent (RFC 9110 §9.2.2) too. */
  retryNonIdempotent: boolean;
  budget: RetryBudgetSpec;
  /** The cross-hop amplification cap (retry-chain.ts); false only to measure without it. */
  crossHopCap: boolean;
}

export const DEFAULT_RETRY_ATTEMPTS = 2;
export const DEFAULT_RETRY_ON: readonly RetryOn[] = ['gateway-error', 'connect-failure', 'reset'];
/** Envoy's base interval, and its cap of ten times the base. */
export const DEFAULT_BACKOFF = Object.freeze({ baseIntervalMs: 25, maxIntervalMs: 250 });
export const DEFAULT_RETRY_BUDGET: Readonly<RetryBudgetSpec> = Object.freeze({ enabled: true, ratio: 0.2, minRetriesPerSecond: 2, windowMs: 10_000 });
export const MAX_RETRY_ATTEMPTS = 10;

/** The limits that hold for every retry at a waypoint, a route's included: budget and cross-hop cap. */
export const DEFAULT_RETRY_LIMITS: Readonly<Pick<RetrySpec, 'budget' | 'crossHopCap'>> = Object.freeze({ budget: DEFAULT_RETRY_BUDGET, crossHopCap: true });

const KEYS = ['attempts', 'perTryTimeout', 'retryOn', 'retriableStatusCodes', 'backoff', 'retryNonIdempotent', 'budget', 'crossHopCap'];

/** Validates `spec.retry` at `path`; throws FieldError naming the field. */
export function validateRetry(v: unknown, path: string, unknown: UnknownKeys): RetrySpec {
  const o = new Obj(v, path, KEYS, unknown);
  const attempts = o.has('attempts') ? int(o, 'attempts', 0, MAX_RETRY_ATTEMPTS) : DEFAULT_RETRY_ATTEMPTS;
  const retryOn = o.has('retryOn') ? list(o, 'retryOn', RETRY_ON.length, (x, p) => {
    if (typeof x !== 'string' || !(RETRY_ON as readonly string[]).includes(x)) throw new FieldError(p, `must be one of ${RETRY_ON.join(', ')}, got ${JSON.stringify(x)}`);
    return x as RetryOn;
  }) : [...DEFAULT_RETRY_ON];
  unique(retryOn, join(path, 'retryOn'), String, 'the class');
  const retriableStatusCodes = list(o, 'retriableStatusCodes', 100, (c, p) => {
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 400 || c > 599) throw new FieldError(p, `must be an HTTP status code 400-599, got ${JSON.stringify(c)}`);
    return c;
  });
  unique(retriableStatusCodes, join(path, 'retriableStatusCodes'), String, 'the code');
  const out: RetrySpec = {
    attempts, retryOn, retriableStatusCodes,
    backoff: o.has('backoff') ? backoff(o.o.backoff, join(path, 'backoff'), unknown) : { ...DEFAULT_BACKOFF },
    retryNonIdempotent: bool(o, 'retryNonIdempotent', false),
    budget: o.has('budget') ? budget(o.o.budget, join(path, 'budget'), unknown) : { ...DEFAULT_RETRY_BUDGET },
    crossHopCap: bool(o, 'crossHopCap', true),
  };
  if (o.has('perTryTimeout')) out.perTryTimeoutMs = duration(o, 'perTryTimeout', { positive: true });
  return out;
}

function backoff(v: unknown, path: string, unknown: UnknownKeys): RetrySpec['backoff'] {
  const o = new Obj(v, path, ['baseInterval', 'maxInterval'], unknown);
  const baseIntervalMs = o.has('baseInterval') ? duration(o, 'baseInterval', { positive: true }) : DEFAULT_BACKOFF.baseIntervalMs;
  // Envoy's rule: the cap defaults to ten times the base.
  const maxIntervalMs = o.has('maxInterval') ? duration(o, 'maxInterval', { positive: true }) : baseIntervalMs * 10;
  if (maxIntervalMs < baseIntervalMs) throw new FieldError(join(path, 'maxInterval'), `must not be shorter than baseInterval (${baseIntervalMs}ms), got ${maxIntervalMs}ms`);
  return { baseIntervalMs, maxIntervalMs };
}

function budget(v: unknown, path: string, unknown: UnknownKeys): RetryBudgetSpec {
  const o = new Obj(v, path, ['enabled', 'ratio', 'minRetriesPerSecond', 'window'], unknown);
  return {
    enabled: bool(o, 'enabled', true),
    ratio: o.has('ratio') ? number(o, 'ratio', 0, 1000) : DEFAULT_RETRY_BUDGET.ratio,
    minRetriesPerSecond: o.has('minRetriesPerSecond') ? int(o, 'minRetriesPerSecond', 0, 100_000) : DEFAULT_RETRY_BUDGET.minRetriesPerSecond,
    // At least a second: the window is cut in ten slots, and a shorter one forgets retries before their effect shows.
    windowMs: o.has('window') ? duration(o, 'window', { min: 1000, max: 300_000 }) : DEFAULT_RETRY_BUDGET.windowMs,
  };
}

function bool(o: Obj, key: string, dflt: boolean): boolean {
  if (!o.has(key)) return dflt;
  const v = o.o[key];
  if (typeof v !== 'boolean') throw new FieldError(join(o.path, key), `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function number(o: Obj, key: string, min: number, max: number): number {
  const v = o.o[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new FieldError(join(o.path, key), `must be a number ${min}-${max}, got ${JSON.stringify(v)}`);
  return v;
}

function duration(o: Obj, key: string, bounds: { positive?: boolean; min?: number; max?: number }): number {
  const p = join(o.path, key);
  const raw = o.o[key];
  let ms: number;
  try {
    if (typeof raw !== 'string') throw new DurationError(JSON.stringify(raw));
    ms = parseDuration(raw);
  } catch (err) {
    if (err instanceof DurationError) throw new FieldError(p, err.message);
    throw err;
  }
  if (bounds.positive && ms === 0) throw new FieldError(p, `must be longer than 0, got ${JSON.stringify(raw)} (leave the field out for none)`);
  if (bounds.min !== undefined && ms < bounds.min) throw new FieldError(p, `must be at least ${bounds.min}ms, got ${JSON.stringify(raw)}`);
  if (bounds.max !== undefined && ms > bounds.max) throw new FieldError(p, `must be at most ${bounds.max}ms, got ${JSON.stringify(raw)}`);
  return ms;
}
