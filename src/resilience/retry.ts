/**
 * Retry decisions at the waypoint, pure: which attempt outcomes are retried, when a
 * retry is refused (method, cross-hop cap, budget), how long to wait, and how an
 * HTTPRoute rule's retry (GEP-1731) and a TrafficPolicy's `retry` combine. forward.ts
 * runs the loop; this module only decides.
 *
 * Combining (resolveRetry): the route rule is the more specific object, so what GEP-1731
 * can say comes from it when the rule has a retry: which codes, how many retries, the
 * backoff (a fixed interval, as GEP-1731 defines it). The policy adds what GEP-1731
 * cannot say: retry-on classes, the method rule, the per-try timeout (unless the rule
 * sets timeouts.backendRequest). The budget and the cross-hop cap hold for every retry,
 * a route's included, with their defaults when no policy says otherwise.
 *
 * The cross-hop amplification cap: with 3 retries at each of three hops a failing
 * backend would see 4 × 4 × 4 = 64 calls per user request. The waypoint marks every
 * retry it sends with `x-weft-retry: <try>`, and applications propagate the header to
 * the requests they make while serving it, as they propagate `traceparent`. A
 * waypoint that receives a marked request (a) does not retry it again, except when the
 * endpoint could not be reached at all (the request never ran, so nothing below ran
 * twice), and (b) charges it to its own budget for that Service, because the retry made
 * above already costs this hop a request. So per request the tries add up across hops
 * instead of multiplying, and across requests all hops of a chain draw on one budget:
 * retries anywhere in the chain stay ≤ ratio × user requests (plus the floors).
 */
import { backoffDelay } from '../lib/backoff';
import type { RetryBudget } from './retry-budget';
import { DEFAULT_RETRY_LIMITS, retryTimes, type RetryOn, type RetrySpec } from './retry-spec';

/** The mark on a retried request; applications propagate it like traceparent. */
export const RETRY_HEADER = 'x-weft-retry';

/** Methods that may be sent twice (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** The retry rules of one forwarded request, resolved to numbers and objects. */
export interface RetryRules {
  /** Statuses retried (GEP-1731 codes, or the policy's retriableStatusCodes). */
  codes: readonly number[];
  /** Retries after the first try (N → up to N+1 tries). */
  attempts: number;
  /** Wait before a retry, ms: fixed, or the base of the exponential backoff. */
  backoffMs: number;
  /** Present: exponential backoff with full jitter up to this cap; absent: a fixed backoffMs. */
  backoffMaxMs?: number;
  /** Classes retried besides `codes`; absent: GEP-1731's rule (every attempt that got no response). */
  retryOn?: readonly RetryOn[];
  /** Only idempotent methods are retried (a connection that could not be made excepted). */
  idempotentOnly?: boolean;
  /** The destination Service's budget at this waypoint; absent: none. */
  budget?: RetryBudget;
  /** The cross-hop cap; absent or true: on. */
  crossHopCap?: boolean;
}

/** How an attempt ended: a response head, or none and why. */
export type AttemptEnd = { status: number } | { failure: 'connect' | 'reset' | 'timeout' };

/** Why a retriable outcome was not retried (also the metric's `reason` label). */
export type RetryRefusal = 'not-retriable' | 'exhausted' | 'non-idempotent' | 'cross-hop' | 'budget';

/** Whether `end` is of a kind the rules retry. */
export function retriable(r: Pick<RetryRules, 'codes' | 'retryOn'>, end: AttemptEnd): boolean {
  if ('status' in end) {
    if (r.codes.includes(end.status)) return true;
    if (!r.retryOn) return false;
    const s = end.status;
    return (s >= 500 && s <= 599 && r.retryOn.includes('5xx'))
      || ((s === 502 || s === 503 || s === 504) && r.retryOn.includes('gateway-error'))
      || (s === 409 && r.retryOn.includes('retriable-4xx'));
  }
  // GEP-1731: every connection error and backendRequest timeout is retried.
  if (!r.retryOn) return true;
  if (r.retryOn.includes('5xx') || r.retryOn.includes('gateway-error')) return true;
  return end.failure === 'connect' ? r.retryOn.includes('connect-failure') : r.retryOn.includes('reset');
}

/**
 * Whether the try after `tries` tries may be made; undefined = yes (and one retry was
 * taken from the budget), else why not. `marked`: the request arrived marked as a retry
 * made by a hop above.
 */
export function retryRefusal(r: RetryRules, tries: number, end: AttemptEnd, method: string, marked: boolean): RetryRefusal | undefined {
  if (!retriable(r, end)) return 'not-retriable';
  if (tries > r.attempts) return 'exhausted';
  // The endpoint was never reached: the request did not run, so sending it again
  // repeats nothing (any method) and multiplies nothing below.
  const neverRan = 'failure' in end && end.failure === 'connect';
  if (!neverRan) {
    if (r.idempotentOnly && !IDEMPOTENT_METHODS.has(method)) return 'non-idempotent';
    if (marked && r.crossHopCap !== false) return 'cross-hop';
  }
  if (r.budget && !r.budget.withdraw()) return 'budget';
  return undefined;
}

/** Counts a request with retry rules in the budget: an original one earns retries, a marked one costs one. */
export function countRequest(r: RetryRules, marked: boolean): void {
  if (!r.budget) return;
  if (marked && r.crossHopCap !== false) r.budget.charge();
  else r.budget.deposit();
}

/** Wait before retry number `retry` (1 = the first retry), ms. */
export function retryDelayMs(r: RetryRules, retry: number, random: () => number): number {
  if (r.backoffMaxMs === undefined) return r.backoffMs;
  return backoffDelay(retry, { initialMs: r.backoffMs, maxMs: r.backoffMaxMs, jitter: 'full' }, random);
}

/** A route rule's GEP-1731 retry, compiled (src/gateway/policy.ts). */
export interface RouteRetry {
  codes: Iterable<number>;
  attempts: number;
  backoffMs: number;
}

/** Each policy section's durations in ms, parsed once (a validated spec is never changed: a new policy is a new object). */
const TIMES = new WeakMap<RetrySpec, ReturnType<typeof retryTimes>>();

function timesOf(policy: RetrySpec): ReturnType<typeof retryTimes> {
  let t = TIMES.get(policy);
  if (t === undefined) TIMES.set(policy, (t = retryTimes(policy)));
  return t;
}

/**
 * The rules for one request from the route rule's retry and the Service's policy
 * section (either may be absent; both absent: no retries). `budget` is the destination
 * Service's budget, made from `policy?.budget` or the default (retry-budgets.ts).
 * Returns also the per-try timeout the policy asks for (the caller applies it unless
 * the rule has its own backendRequest timeout).
 */
export function resolveRetry(route: RouteRetry | undefined, policy: RetrySpec | undefined, budget: RetryBudget | undefined):
  { rules: RetryRules; perTryTimeoutMs?: number } | undefined {
  if (!route && !policy) return undefined;
  const limits = policy ?? DEFAULT_RETRY_LIMITS;
  const times = policy ? timesOf(policy) : undefined;
  const rules: RetryRules = route
    ? { codes: [...route.codes], attempts: route.attempts, backoffMs: route.backoffMs }
    : { codes: policy!.retriableStatusCodes, attempts: policy!.attempts, backoffMs: times!.baseIntervalMs, backoffMaxMs: times!.maxIntervalMs };
  if (policy) {
    rules.retryOn = policy.retryOn;
    rules.idempotentOnly = !policy.retryNonIdempotent;
    if (route) rules.codes = [...new Set([...rules.codes, ...policy.retriableStatusCodes])];
  }
  if (budget && limits.budget.enabled) rules.budget = budget;
  rules.crossHopCap = limits.crossHopCap;
  const out: { rules: RetryRules; perTryTimeoutMs?: number } = { rules };
  if (times?.perTryTimeoutMs !== undefined) out.perTryTimeoutMs = times.perTryTimeoutMs;
  return out;
}
