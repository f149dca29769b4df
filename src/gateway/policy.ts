/**
 * Per-rule timeouts (GEP-1742) and retries (GEP-1731), compiled once from the validated
 * rule into milliseconds, plus the two decisions the waypoint takes per attempt. Pure:
 * the waypoint passes elapsed time from its clock; tests pass numbers.
 *
 * - `timeouts.request`: the whole transaction as the client sees it, retries and
 *   backoffs included; `timeouts.backendRequest`: one attempt. Either exceeded → 504.
 *   `0s` disables a timeout; absent means none (Weft sets no default of its own).
 * - `retry.attempts` counts retries after the first try, so N allows N+1 tries. When a
 *   rule has `retry` without `attempts`, Weft retries once (DEFAULT_RETRY_ATTEMPTS) and
 *   waits DEFAULT_RETRY_BACKOFF_MS between tries unless `backoff` says otherwise.
 *   A listed status code, a connection error (the upstream could not be reached or
 *   reset before answering) and a backendRequest timeout are retried; a rule without
 *   `retry` is never retried.
 */
import { parseDuration } from './duration';
import type { HTTPRouteRule } from './types';

/** Retries after the first try when `retry.attempts` is absent. */
export const DEFAULT_RETRY_ATTEMPTS = 1;
/** Wait between tries when `retry.backoff` is absent (Envoy's base interval). */
export const DEFAULT_RETRY_BACKOFF_MS = 25;

export interface RetryPolicy {
  /** Status codes that are retried. */
  codes: ReadonlySet<number>;
  /** Retries after the first try. */
  attempts: number;
  /** Minimum wait before each retry, ms. */
  backoffMs: number;
}

export interface RulePolicy {
  /** Whole-request deadline in ms; undefined = none. */
  requestTimeoutMs?: number;
  /** Per-attempt deadline in ms; undefined = none. */
  backendRequestTimeoutMs?: number;
  /** Undefined: no retries. */
  retry?: RetryPolicy;
}

/** `0s` (or any zero duration) disables: undefined. */
function timeoutMs(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const ms = parseDuration(s);
  return ms > 0 ? ms : undefined;
}

export function compileRulePolicy(rule: Pick<HTTPRouteRule, 'timeouts' | 'retry'>): RulePolicy {
  const out: RulePolicy = {};
  const request = timeoutMs(rule.timeouts?.request);
  const backend = timeoutMs(rule.timeouts?.backendRequest);
  if (request !== undefined) out.requestTimeoutMs = request;
  if (backend !== undefined) out.backendRequestTimeoutMs = backend;
  if (rule.retry !== undefined) {
    out.retry = {
      codes: new Set(rule.retry.codes),
      attempts: rule.retry.attempts ?? DEFAULT_RETRY_ATTEMPTS,
      backoffMs: rule.retry.backoff !== undefined ? parseDuration(rule.retry.backoff) : DEFAULT_RETRY_BACKOFF_MS,
    };
  }
  return out;
}

/**
 * How long the next attempt may take, given the time already spent on the request:
 * the per-attempt limit, cut to what the request deadline leaves. undefined = no limit;
 * 0 = the request deadline has passed (answer 504 without trying).
 */
export function attemptTimeoutMs(policy: RulePolicy, elapsedMs: number): number | undefined {
  const left = policy.requestTimeoutMs === undefined ? undefined : Math.max(0, policy.requestTimeoutMs - elapsedMs);
  if (left === undefined) return policy.backendRequestTimeoutMs;
  return policy.backendRequestTimeoutMs === undefined ? left : Math.min(left, policy.backendRequestTimeoutMs);
}

/** What one attempt ended with. */
export type AttemptOutcome =
  | { kind: 'response'; status: number }
  /** The upstream could not be reached, or dropped the connection before a response. */
  | { kind: 'connect-error' }
  /** The per-attempt timeout fired. */
  | { kind: 'timeout' };

export type RetryDecision =
  /** Wait `delayMs`, then try again. */
  | { action: 'retry'; delayMs: number }
  /** Stop and answer with what this attempt produced (failureStatus for a non-response). */
  | { action: 'respond' }
  /** A retry was due but the request deadline would pass first: answer 504 now. */
  | { action: 'timeout' };

/**
 * Whether to try again after attempt number `tries` (1 = the first try) ended with
 * `outcome`, `elapsedMs` into the request. Retried: a listed status code, a connection
 * error, and a per-attempt (backendRequest) timeout: GEP-1731 retries "after timing out
 * or receiving a response code configured to be retriable", and the conformance case
 * "succeeds after 2 retries on backend timeout" has no codes at all. When the retry
 * cannot start before the request deadline the answer is the request timeout (504), as
 * the conformance case "fails with 504 when retry delays exceed the request timeout" wants.
 */
export function retryDecision(policy: RulePolicy, tries: number, outcome: AttemptOutcome, elapsedMs: number): RetryDecision {
  const r = policy.retry;
  if (r === undefined || tries > r.attempts) return { action: 'respond' };
  const retriable = outcome.kind !== 'response' || r.codes.has(outcome.status);
  if (!retriable) return { action: 'respond' };
  if (policy.requestTimeoutMs !== undefined && elapsedMs + r.backoffMs >= policy.requestTimeoutMs) return { action: 'timeout' };
  return { action: 'retry', delayMs: r.backoffMs };
}

/** The status the client gets when an attempt ended without a response: 503 unreachable, 504 timed out. */
export function failureStatus(outcome: Exclude<AttemptOutcome, { kind: 'response' }>): 503 | 504 {
  return outcome.kind === 'timeout' ? 504 : 503;
}
