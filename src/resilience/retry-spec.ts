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
 * Durations are Gateway API durations (GEP-2257), kept as written: the validated spec is
 * stored and validated again when read, so it must be a fixed point of the validator
 * (retryTimes() gives the runtime the milliseconds). The defaults below are what a
 * Service gets when its policy has a `retry` section that leaves a field out; the
 * budget's and the cross-hop cap's defaults also apply to a route's GEP-1731 retry on
 * a Service without any policy (DEFAULT_RETRY_LIMITS).
 */
import { formatGatewayDuration, parseDuration } from '../gateway/duration';
import { list, unique } from '../gateway/validate-common';
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { boolField, durationField, intField, numberField } from './spec-fields';

/**
 * Outcome classes, Envoy's names: `5xx` any 5xx or no response at all; `gateway-error`
 * 502/503/504 or no response; `reset` no response head (reset, disconnect, per-try
 * timeout); `connect-failure` the endpoint could not be reached; `retriable-4xx` 409.
 */
export const RETRY_ON = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx'] as const;
export type RetryOn = (typeof RETRY_ON)[number];

/** Linkerd-style budget: retries in the last `window` ≤ ratio × requests + minRetriesPerSecond × window. */
export interface RetryBudgetSpec {
  /** false: no budget (every retry the policy allows is made). Not recommended; for demonstrations. */
  enabled: boolean;
  /** Retries allowed per original request, 0..1000 (0.2: at most 20 % extra load). */
  ratio: number;
  /** Retries allowed per second whatever the traffic, so a quiet Service still retries. */
  minRetriesPerSecond: number;
  /** How far back requests and retries count (a duration, 1s-5m). */
  window: string;
}

export interface RetrySpec {
  /** Retries after the first try, 0..10. */
  attempts: number;
  /** Per-try timeout (a duration); absent: none of its own. */
  perTryTimeout?: string;
  retryOn: RetryOn[];
  /** Statuses retried on top of retryOn's classes. */
  retriableStatusCodes: number[];
  /** Durations: the first retry waits up to baseInterval, doubling per retry up to maxInterval. */
  backoff: { baseInterval: string; maxInterval: string };
  /** Retry methods that are not idempotent (RFC 9110 §9.2.2) too. */
  retryNonIdempotent: boolean;
  budget: RetryBudgetSpec;
  /** The cross-hop amplification cap (retry-chain.ts); false only to measure without it. */
  crossHopCap: boolean;
}

export const DEFAULT_RETRY_ATTEMPTS = 2;
export const DEFAULT_RETRY_ON: readonly RetryOn[] = ['gateway-error', 'connect-failure', 'reset'];
/** Envoy's base interval, and its cap of ten times the base. */
export const DEFAULT_BACKOFF = Object.freeze({ baseInterval: '25ms', maxInterval: '250ms' });
export const DEFAULT_RETRY_BUDGET: Readonly<RetryBudgetSpec> = Object.freeze({ enabled: true, ratio: 0.2, minRetriesPerSecond: 2, window: '10s' });
export const MAX_RETRY_ATTEMPTS = 10;

/** The limits that hold for every retry at a waypoint, a route's included: budget and cross-hop cap. */
export const DEFAULT_RETRY_LIMITS: Readonly<Pick<RetrySpec, 'budget' | 'crossHopCap'>> = Object.freeze({ budget: DEFAULT_RETRY_BUDGET, crossHopCap: true });

const KEYS = ['attempts', 'perTryTimeout', 'retryOn', 'retriableStatusCodes', 'backoff', 'retryNonIdempotent', 'budget', 'crossHopCap'];

/** Validates `spec.retry` at `path`; throws FieldError naming the field. */
export function validateRetry(v: unknown, path: string, unknown: UnknownKeys): RetrySpec {
  const o = new Obj(v, path, KEYS, unknown);
  const attempts = intField(o, 'attempts', 0, MAX_RETRY_ATTEMPTS, DEFAULT_RETRY_ATTEMPTS);
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
    retryNonIdempotent: boolField(o, 'retryNonIdempotent', false),
    budget: o.has('budget') ? budget(o.o.budget, join(path, 'budget'), unknown) : { ...DEFAULT_RETRY_BUDGET },
    crossHopCap: boolField(o, 'crossHopCap', true),
  };
  if (o.has('perTryTimeout')) out.perTryTimeout = durationField(o, 'perTryTimeout', 1, HOUR_MS, '');
  return out;
}

const HOUR_MS = 3_600_000;

/** A validated section's durations in ms, as the retry loop runs them. */
export function retryTimes(spec: Pick<RetrySpec, 'perTryTimeout' | 'backoff'>): { perTryTimeoutMs?: number; baseIntervalMs: number; maxIntervalMs: number } {
  const out: { perTryTimeoutMs?: number; baseIntervalMs: number; maxIntervalMs: number } = {
    baseIntervalMs: parseDuration(spec.backoff.baseInterval), maxIntervalMs: parseDuration(spec.backoff.maxInterval),
  };
  if (spec.perTryTimeout !== undefined) out.perTryTimeoutMs = parseDuration(spec.perTryTimeout);
  return out;
}

function backoff(v: unknown, path: string, unknown: UnknownKeys): RetrySpec['backoff'] {
  const o = new Obj(v, path, ['baseInterval', 'maxInterval'], unknown);
  const baseInterval = durationField(o, 'baseInterval', 1, HOUR_MS, DEFAULT_BACKOFF.baseInterval);
  const baseMs = parseDuration(baseInterval);
  // Envoy's rule: the cap defaults to ten times the base; within maxInterval's own bound,
  // since the stored default is validated again when read.
  const maxInterval = durationField(o, 'maxInterval', 1, HOUR_MS, formatGatewayDuration(Math.min(baseMs * 10, HOUR_MS)));
  if (parseDuration(maxInterval) < baseMs) throw new FieldError(join(path, 'maxInterval'), `must not be shorter than baseInterval (${baseInterval}), got ${JSON.stringify(maxInterval)}`);
  return { baseInterval, maxInterval };
}

function budget(v: unknown, path: string, unknown: UnknownKeys): RetryBudgetSpec {
  const o = new Obj(v, path, ['enabled', 'ratio', 'minRetriesPerSecond', 'window'], unknown);
  const d = DEFAULT_RETRY_BUDGET;
  return {
    enabled: boolField(o, 'enabled', d.enabled),
    ratio: numberField(o, 'ratio', 0, 1000, d.ratio),
    minRetriesPerSecond: intField(o, 'minRetriesPerSecond', 0, 100_000, d.minRetriesPerSecond),
    // At least a second: the window is cut in ten slots, and a shorter one forgets retries before their effect shows.
    window: durationField(o, 'window', 1000, 300_000, d.window),
  };
}
