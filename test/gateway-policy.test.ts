/**
 * Per-rule timeouts and retries (src/gateway/policy.ts), replayed against the
 * conformance cases HTTPRouteRetry, HTTPRouteRetryWithTimeouts and the timeout cases as
 * timelines of numbers (no clock, no sleeps).
 */
import t from 'tap';
import {
  attemptTimeoutMs, compileRulePolicy, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_BACKOFF_MS, failureStatus, retryDecision,
  type AttemptOutcome, type RulePolicy,
} from '../src/gateway/policy';

t.test('compile: durations in ms, 0s disables, retry defaults', async (t) => {
  t.same(compileRulePolicy({}), {});
  t.same(compileRulePolicy({ timeouts: { request: '10s', backendRequest: '500ms' } }), { requestTimeoutMs: 10_000, backendRequestTimeoutMs: 500 });
  t.same(compileRulePolicy({ timeouts: { request: '0s', backendRequest: '1s' } }), { backendRequestTimeoutMs: 1000 }, '0s = no timeout');
  const p = compileRulePolicy({ retry: { codes: [500, 503] } });
  t.equal(p.retry?.attempts, DEFAULT_RETRY_ATTEMPTS);
  t.equal(DEFAULT_RETRY_ATTEMPTS, 1, 'Weft retries once when attempts is absent');
  t.equal(p.retry?.backoffMs, DEFAULT_RETRY_BACKOFF_MS);
  t.same([...p.retry!.codes], [500, 503]);
  t.same(compileRulePolicy({ retry: { codes: [], attempts: 3, backoff: '100ms' } }).retry, { codes: new Set(), attempts: 3, backoffMs: 100 });
});

t.test('attemptTimeoutMs: the per-attempt limit cut to what the request deadline leaves', async (t) => {
  t.equal(attemptTimeoutMs({}, 5000), undefined);
  t.equal(attemptTimeoutMs({ backendRequestTimeoutMs: 200 }, 5000), 200);
  t.equal(attemptTimeoutMs({ requestTimeoutMs: 400 }, 150), 250);
  t.equal(attemptTimeoutMs({ requestTimeoutMs: 400, backendRequestTimeoutMs: 200 }, 0), 200);
  t.equal(attemptTimeoutMs({ requestTimeoutMs: 400, backendRequestTimeoutMs: 200 }, 300), 100);
  t.equal(attemptTimeoutMs({ requestTimeoutMs: 400 }, 450), 0, 'deadline passed: 504 without trying');
});

/**
 * Replays a request: attempt i (0-based) takes durations[i] ms and ends as outcomes[i]
 * (the last entry repeats); per-attempt and request timeouts cut attempts short.
 * Returns the status the client gets and how many tries were made.
 */
function replay(policy: RulePolicy, outcomes: AttemptOutcome[], durations: number[]): { status: number; tries: number } {
  let now = 0;
  for (let tries = 1; tries <= 50; tries++) {
    const limit = attemptTimeoutMs(policy, now);
    if (limit === 0) return { status: 504, tries: tries - 1 };
    const took = durations[Math.min(tries - 1, durations.length - 1)]!;
    let outcome = outcomes[Math.min(tries - 1, outcomes.length - 1)]!;
    if (limit !== undefined && took >= limit) {
      now += limit;
      if (policy.requestTimeoutMs !== undefined && now >= policy.requestTimeoutMs) return { status: 504, tries };
      outcome = { kind: 'timeout' };
    } else now += took;
    const d = retryDecision(policy, tries, outcome, now);
    if (d.action === 'timeout') return { status: 504, tries };
    if (d.action === 'respond') return { status: outcome.kind === 'response' ? outcome.status : failureStatus(outcome), tries };
    now += d.delayMs;
  }
  throw new Error('replay did not end');
}

const ok: AttemptOutcome = { kind: 'response', status: 200 };
const e500: AttemptOutcome = { kind: 'response', status: 500 };
const e502: AttemptOutcome = { kind: 'response', status: 502 };

t.test('HTTPRouteRetry: listed codes retried up to attempts, others returned as they are', async (t) => {
  const p = compileRulePolicy({ retry: { codes: [500, 502], attempts: 2, backoff: '10ms' } });
  t.same(replay(p, [e500, e502, ok], [5]), { status: 200, tries: 3 }, 'two retries then success');
  t.same(replay(p, [e500, e500, e500, ok], [5]), { status: 500, tries: 3 }, 'out of retries: the last response');
  t.same(replay(p, [{ kind: 'response', status: 503 }, ok], [5]), { status: 503, tries: 1 }, 'an unlisted code is not retried');
  t.same(replay(compileRulePolicy({}), [e500, ok], [5]), { status: 500, tries: 1 }, 'no retry block: no retry');
});

t.test('HTTPRouteRetryConnectionError: connection errors are retried without any code listed', async (t) => {
  const p = compileRulePolicy({ retry: { codes: [], attempts: 3 } });
  t.same(replay(p, [{ kind: 'connect-error' }, { kind: 'connect-error' }, ok], [1]), { status: 200, tries: 3 });
  t.same(replay(p, [{ kind: 'connect-error' }], [1]), { status: 503, tries: 4 }, 'attempts 3 = 4 tries, then 503');
});

t.test('HTTPRouteRetryWithTimeouts: backendRequest timeouts retried, the request deadline ends it with 504', async (t) => {
  // rule 1: attempts 2, backendRequest 200ms; retries answer after 300ms (beyond the attempt limit).
  const r1 = compileRulePolicy({ retry: { codes: [], attempts: 2 }, timeouts: { backendRequest: '200ms' } });
  t.same(replay(r1, [e500, e500, ok], [10, 300, 10]).status, 500, 'a 500 with no codes listed is not retried');
  t.same(replay(r1, [ok, ok, ok], [300, 300, 10]), { status: 200, tries: 3 }, 'succeeds after 2 retries on backend timeout');
  t.same(replay(r1, [ok], [300]), { status: 504, tries: 3 }, 'fails when the timeouts outlast the attempts');
  // rule 2: codes [500], attempts 5, backendRequest 200ms, request 400ms.
  const r2 = compileRulePolicy({ retry: { codes: [500], attempts: 5 }, timeouts: { backendRequest: '200ms', request: '400ms' } });
  t.same(replay(r2, [e500, ok], [10]).status, 200, 'succeeds when retries complete within the request timeout');
  t.same(replay(r2, [e500, e500, e500, e500, ok], [10, 100]).status, 504, 'fails with 504 when retry delays exceed the request timeout');
});

t.test('HTTPRouteTimeoutRequest / BackendRequest: a slow answer is a 504', async (t) => {
  t.same(replay(compileRulePolicy({ timeouts: { request: '500ms' } }), [ok], [1000]), { status: 504, tries: 1 });
  t.same(replay(compileRulePolicy({ timeouts: { backendRequest: '500ms' } }), [ok], [1000]), { status: 504, tries: 1 });
  t.same(replay(compileRulePolicy({ timeouts: { request: '0s' } }), [ok], [100_000]), { status: 200, tries: 1 }, '0s: no deadline');
});
