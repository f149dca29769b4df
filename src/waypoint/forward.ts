/**
 * Executes a ForwardPlan: attempts upstream with the per-attempt and overall timeouts,
 * retrying what the plan's retry rules say (src/resilience/retry.ts decides: outcome
 * classes, the method rule, the cross-hop cap, the budget, the backoff) while the
 * request body can still be replayed. Every retry goes out marked with `x-weft-retry`
 * (the cross-hop cap). Timeouts cover the wait for the response head: a streamed
 * response (downloads, gRPC server streaming) is not cut once it started.
 *
 * Outcomes map to Istio's: no connection → 503 `UF`, a timeout → 504 `UT`, retries used
 * up → the last attempt's answer with `URX`.
 */
import { Readable } from 'node:stream';
import type { Clock } from '../lib/clock';
import { Deadline } from '../lib/deadline';
import type { Logger } from '../lib/log';
import type { ReplayableBody } from './body';
import { countRequest, IDEMPOTENT_METHODS, retriable, RETRY_HEADER, retryDelayMs, retryRefusal, type AttemptEnd, type RetryRefusal } from '../resilience/retry';
import { AttemptError, hostPort, type UpstreamClient, type UpstreamResponse } from './upstream';
import type { AttemptTracing } from './tracing';
import type { ForwardPlan, HeaderMap, ResponseFlag, UpstreamTarget } from './types';

/** A mirror request is given up after this long: its slot must come back. */
const MIRROR_DEADLINE_MS = 30_000;

export interface ForwardRequest {
  method: string;
  path: string;
  authority: string;
  headers: HeaderMap;
  body: ReplayableBody | null;
  client: UpstreamClient;
  /** Aborted when the downstream went away. */
  downstreamGone: AbortSignal;
  /** A span per attempt (sampled requests only). */
  spans?: AttemptTracing;
}

/** A retry limit that stopped a retriable outcome from being retried. */
type Limit = Exclude<RetryRefusal, 'not-retriable' | 'exhausted'>;

/** `retryRefused`: a retriable outcome was answered as is, and why (a limit, not the attempts used up). */
export type ForwardResult =
  | { kind: 'response'; res: UpstreamResponse; attempts: number; upstream: string; flag: ResponseFlag; retryRefused?: Limit }
  | { kind: 'local'; status: number; attempts: number; upstream: string; flag: ResponseFlag; detail: string; retryRefused?: Limit };

/** Runs `plan` for one request; never rejects. `random` jitters the backoff. */
export async function forward(req: ForwardRequest, plan: ForwardPlan, clock: Clock, random: () => number = Math.random): Promise<ForwardResult> {
  let target = plan.upstream;
  let upstream = hostPort(target);
  const tried: UpstreamTarget[] = [];
  // Controllers only where a timer can fire: without a route timeout the request ends
  // exactly when the downstream goes, so its signal is used as is (an AbortController
  // and its listeners per request were ~4 % of the waypoint's CPU).
  const overall = plan.timeoutMs ? new Deadline(req.downstreamGone, plan.timeoutMs, clock) : undefined;
  const overallSignal = overall ? overall.signal : req.downstreamGone;
  const retry = plan.retry;
  // Marked: a hop above already retried this request (or the one it is serving).
  const marked = retry !== undefined && req.headers[RETRY_HEADER] !== undefined;
  if (retry) countRequest(retry, marked);
  let attempts = 0;
  let staleRetried = false;
  const replayable = () => !req.body || req.body.replayable;
  // Whether the next try may be made: undefined = yes (one retry taken from the budget).
  const refusal = (end: AttemptEnd): RetryRefusal | 'no' | undefined => (!retry || !replayable() ? 'no' : retryRefusal(retry, attempts, end, req.method, marked));
  const limited = (r: RetryRefusal | 'no' | undefined): { retryRefused?: Limit } => (r === 'budget' || r === 'cross-hop' || r === 'non-idempotent' ? { retryRefused: r } : {});
  const local = (status: number, flag: ResponseFlag, detail: string, extra: { retryRefused?: Limit } = {}): ForwardResult => ({ kind: 'local', status, attempts, upstream, flag, detail, ...extra });
  try {
    for (;;) {
      if (overallSignal.aborted) return overall?.expired ? local(504, 'UT', 'request timeout') : local(0, 'DC', 'downstream gone');
      attempts++;
      if (attempts > 1 && plan.targets) {
        // A retry may go to another endpoint (the policy's choice, knowing which were tried).
        const next = plan.targets.next(tried);
        if (next === undefined) return local(503, 'URX', 'no endpoint left to retry on');
        target = next;
        upstream = hostPort(target);
      }
      tried.push(target);
      plan.targets?.started?.(target);
      const attempt = plan.attemptTimeoutMs ? new Deadline(overallSignal, plan.attemptTimeoutMs, clock) : undefined;
      const sent = plan.targets ? clock.now() : 0;
      let res: UpstreamResponse | undefined;
      let failure: AttemptError | undefined;
      const span = req.spans?.attempt(attempts, upstream);
      try {
        // A retry is marked for the hops below (the cross-hop cap); the first try goes as
        // received, but for a sampled trace's traceparent (the attempt's span is the parent).
        let headers = attempts > 1 ? { ...req.headers, [RETRY_HEADER]: String(attempts) } : req.headers;
        if (span) headers = { ...headers, traceparent: span.traceparent };
        res = await req.client.request(target, {
          method: req.method, path: req.path, authority: req.authority, headers,
          body: req.body ? req.body.open() : null, signal: attempt ? attempt.signal : overallSignal, pool: plan.pool,
        });
      } catch (err) {
        failure = err instanceof AttemptError ? err : new AttemptError('reset', String((err as Error)?.message ?? err), { cause: err });
      } finally {
        attempt?.dispose();
      }
      const attemptExpired = attempt?.expired === true;
      if (span) span.end(res ? { status: res.status } : { flag: req.downstreamGone.aborted ? 'DC' : attemptExpired || overall?.expired ? 'UT' : failure!.kind === 'connect' ? 'UF' : 'UC' });
      // A kept-alive connection the upstream had just closed: the request was never
      // read, so an idempotent one is sent again once, outside the retry policy. Only
      // without a policy: one retries connection errors itself, and a free try on top
      // would exceed the attempts it promises (a backend that reads the request and
      // then resets looks the same from here; HTTPRouteRetryConnectionError counts).
      const stale = failure !== undefined && retry === undefined && failure.reusedConnection === true && !staleRetried
        && IDEMPOTENT_METHODS.has(req.method) && replayable() && !attemptExpired && !overallSignal.aborted;
      if (plan.targets && failure && (req.downstreamGone.aborted || stale)) {
        // The downstream leaving, or a connection the upstream closed while idle, says
        // nothing about the endpoint: not reported (no failure to eject it for), only ended.
        plan.targets.cancelled?.(target);
      } else if (plan.targets) {
        const latencyMs = clock.now() - sent;
        plan.targets.report(target, res ? { status: res.status, latencyMs } : { failure: attemptExpired || overall?.expired ? 'timeout' : failure!.kind === 'connect' ? 'connect' : 'reset', latencyMs });
      }
      if (res) {
        const end = { status: res.status };
        const refused = refusal(end);
        if (refused !== undefined) return { kind: 'response', res, attempts, upstream, flag: attempts > 1 && retriable(retry!, end) ? 'URX' : '-', ...limited(refused) };
        res.discard();
      } else {
        req.body?.detach();
        if (req.downstreamGone.aborted) return local(0, 'DC', 'downstream gone');
        if (overall?.expired) return local(504, 'UT', 'request timeout');
        if (stale) {
          staleRetried = true;
          attempts--;
          continue;
        }
        const status = attemptExpired ? 504 : 503;
        const flag: ResponseFlag = attemptExpired ? 'UT' : failure!.kind === 'reset' ? 'UC' : 'UF';
        // Connection errors and attempts past timeouts.backendRequest are retried whenever a
        // route's retry block exists, whatever its codes (GEP-1731; HTTPRouteRetryBackendTimeout);
        // a policy's retryOn classes say which of them.
        const refused = refusal({ failure: attemptExpired ? 'timeout' : failure!.kind === 'connect' ? 'connect' : 'reset' });
        if (refused !== undefined) return local(status, attempts > 1 ? 'URX' : flag, attemptExpired ? 'upstream request timeout' : failure!.message, limited(refused));
      }
      const delay = retryDelayMs(retry!, attempts, random);
      if (delay > 0) await sleep(clock, delay, overallSignal);
    }
  } finally {
    overall?.dispose();
  }
}

function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clock.clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Sends copies of requests to mirror backends, fire-and-forget: responses are drained
 * and dropped, failures ignored, and at most `max` copies are in flight waypoint-wide
 * (a slow mirror never holds memory or sockets without bound). A body larger than the
 * replay buffer is not mirrored.
 */
export class Mirrors {
  private inFlight = 0;
  /** Copies not sent: too many in flight, or a body too large to copy. */
  dropped = 0;

  constructor(private readonly max: number, private readonly clock: Clock, private readonly logger: Logger) {}

  fire(req: Omit<ForwardRequest, 'downstreamGone'>, plan: ForwardPlan): void {
    for (const m of plan.mirrors ?? []) {
      if (this.inFlight >= this.max) {
        this.dropped++;
        continue;
      }
      this.inFlight++;
      void this.one(req, m.upstream).finally(() => { this.inFlight--; });
    }
  }

  private async one(req: Omit<ForwardRequest, 'downstreamGone'>, target: ForwardPlan['upstream']): Promise<void> {
    let body: Buffer | undefined;
    if (req.body) {
      body = await req.body.complete();
      if (body === undefined) {
        this.dropped++;
        return;
      }
    }
    const ac = new AbortController();
    const timer = this.clock.setTimeout(() => ac.abort(), MIRROR_DEADLINE_MS);
    try {
      const headers = { ...req.headers };
      if (body) headers['content-length'] = String(body.length);
      const res = await req.client.request(target, {
        method: req.method, path: req.path, authority: req.authority, headers, body: body ? Readable.from([body]) : null, signal: ac.signal,
      });
      res.body.on('error', () => {});
      res.body.resume();
      await new Promise<void>((resolve) => {
        if (res.endStream) return resolve();
        res.body.once('end', resolve);
        res.body.once('close', resolve);
      });
    } catch (err) {
      this.logger.debug({ upstream: hostPort(target), err: (err as Error).message }, 'mirror request failed');
    } finally {
      this.clock.clearTimeout(timer);
    }
  }
}
