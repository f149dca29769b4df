/**
 * The read-only admin views on a non-loopback address (--admin-view-address): on a
 * cluster `weft` reaches them through the API server's pod proxy, which connects to the
 * pod IP — the node IP under hostNetwork, where every pod on the node can reach them
 * too. So, unlike the loopback admin API, each request here passes, in this order:
 *
 *   1. GET/HEAD only (405), and a known view (404);
 *   2. a rate limit per source address and for everybody (429 + Retry-After), before
 *      anything costly, so a flood costs neither a review nor a render;
 *   3. a bearer token (401), reviewed by the API server (admin-auth.ts): authenticated,
 *      and allowed `get pods/proxy` in the ztunnel's namespace (403);
 *   4. a rate limit per authenticated user;
 *   5. the view, rendered at most once per `renderTtlMs` and served from that snapshot
 *      meanwhile: the views are built on the thread that also moves the data plane's
 *      bytes, so a busy reader must not make it render for every request.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Counter } from 'prom-client';
import { realClock, type Clock } from '../lib/clock';
import { LogLimiter } from '../lib/log-limiter';
import { AdminAuthenticator, bearerToken } from './admin-auth';
import { ADMIN_VIEW_REFUSED } from './admin-types';
import { KeyedBuckets, RateLimiter, type RateLimiterOptions } from '../lib/token-bucket';
import { json, serve, type Handler } from '../lib/http-endpoints';
import { VIEWS, type AdminSource } from './admin';

/**
 * Rate limits of the views: per caller (source address, then authenticated user) and
 * for all callers together. A `weft` command costs one request per view per node;
 * `--watch` one per second.
 */
export const DEFAULT_VIEW_LIMITS: RateLimiterOptions = {
  perCaller: { perSecond: 10, burst: 20 },
  overall: { perSecond: 50, burst: 100 },
  maxCallers: 4096,
};

export interface AdminViewOptions {
  auth: AdminAuthenticator;
  limits?: RateLimiterOptions;
  /** How long one render of a view is served. Default 100 ms. */
  renderTtlMs?: number;
  clock?: Clock;
}

/** Outcomes counted in weft_ztunnel_admin_view_requests_total{result}. */
type Result = 'ok' | 'unauthenticated' | 'forbidden' | 'rate_limited' | 'unavailable' | 'not_found' | 'bad_method';

/** One rendered body per view, reused for `ttlMs`. */
export class RenderCache {
  private readonly entries = new Map<string, { at: number; body: string }>();

  constructor(private readonly ttlMs: number, private readonly clock: Clock = realClock) {}

  get(key: string, render: () => unknown): string {
    const now = this.clock.now();
    const hit = this.entries.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.body;
    const body = JSON.stringify(render(), null, 2) + '\n';
    this.entries.set(key, { at: now, body });
    return body;
  }
}

export function adminViewServer(src: AdminSource, opts: AdminViewOptions): Server {
  const clock = opts.clock ?? realClock;
  const limits = opts.limits ?? DEFAULT_VIEW_LIMITS;
  const byAddress = new RateLimiter(limits, clock);
  // Per user only: the overall budget was already taken by the address check.
  const byUser = new KeyedBuckets(limits.perCaller, clock, limits.maxCallers);
  const cache = new RenderCache(opts.renderTtlMs ?? 100, clock);
  const logLimiter = new LogLimiter({ clock });
  const counted = existingCounter(src) ?? new Counter({
    name: 'weft_ztunnel_admin_view_requests_total',
    help: 'Requests to the admin views off loopback, by result (ok, unauthenticated, forbidden, rate_limited, unavailable, not_found, bad_method)',
    labelNames: ['result'], registers: [src.metrics],
  });
  const refuse = (req: IncomingMessage, res: ServerResponse, result: Result, status: number, message: string, headers: Record<string, string> = {}): void => {
    counted.inc({ result });
    // The key is the result, never caller data: a flood of refusals is a handful of lines.
    logLimiter.log(src.logger, 'warn', `admin-view ${result}`, { result, status, from: req.socket.remoteAddress, path: pathOf(req) }, `admin view refused: ${message}`);
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    // `reason` and `message` as in a Kubernetes Status: relayed by the pod proxy, they
    // let `weft` tell the ztunnel's refusal from the API server's own.
    json(res, status, { error: message, reason: ADMIN_VIEW_REFUSED, message });
  };
  const routes: Record<string, Handler> = {};
  for (const [path, view] of Object.entries(VIEWS)) {
    routes[path] = async (req, _url, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(req, res, 'bad_method', 405, `${path} is read-only here; use GET`);
      const from = byAddress.take(req.socket.remoteAddress ?? '?');
      if (!from.ok) {
        return refuse(req, res, 'rate_limited', 429, `too many admin view requests (${from.scope === 'caller' ? 'from this address' : 'in total'}); retry in ${from.retryAfterSeconds} s`,
          { 'retry-after': String(from.retryAfterSeconds) });
      }
      const token = bearerToken(req.headers);
      if (!token) {
        return refuse(req, res, 'unauthenticated', 401, 'a Kubernetes bearer token is required off loopback: send X-Weft-Authorization: Bearer <token> (weft does) or Authorization: Bearer <token>',
          { 'www-authenticate': 'Bearer' });
      }
      const outcome = await opts.auth.check(token);
      if (!outcome.ok) {
        const result: Result = outcome.status === 401 ? 'unauthenticated' : outcome.status === 403 ? 'forbidden' : 'unavailable';
        return refuse(req, res, result, outcome.status, outcome.message, outcome.status === 401 ? { 'www-authenticate': 'Bearer' } : {});
      }
      const mine = byUser.bucket(outcome.user);
      if (!mine.tryTake()) {
        const wait = mine.retryAfterSeconds();
        return refuse(req, res, 'rate_limited', 429, `too many admin view requests from ${outcome.user}; retry in ${wait} s`,
          { 'retry-after': String(wait) });
      }
      const body = cache.get(path, () => view(src));
      counted.inc({ result: 'ok' });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
  }
  return serve(routes, src.logger, (req, res, path) => {
    counted.inc({ result: 'not_found' });
    json(res, 404, { error: `no such view ${path}`, views: Object.keys(VIEWS) });
  });
}

/** A second view server on the same registry (tests, a restart) shares the counter. */
function existingCounter(src: AdminSource): Counter | undefined {
  return src.metrics.getSingleMetric('weft_ztunnel_admin_view_requests_total') as Counter | undefined;
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return (q === -1 ? url : url.slice(0, q)).slice(0, 64);
}
