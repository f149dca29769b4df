/**
 * The waypoint's RequestRouter: turns the registry view and the route logic of
 * src/gateway (decideRoute, the same code `weft explain` runs) into one decision per
 * request: a direct answer (404, 500, 503, a redirect) or a forward plan to one ready
 * endpoint of the chosen backend.
 *
 * Routes come from the registry. The RouteConfig is rebuilt when a route changes and
 * swapped in whole, so a request keeps the tables it was decided with; endpoints and
 * Services are read live from MeshState at decision time.
 *
 * Traffic addressed to a pod IP skips routes (Gateway API's MeshFrontend rule: routes
 * belong to the Service) and goes to that pod as addressed.
 */
import { decideRoute, RouteConfig, type RouteOutcome } from '../gateway/decide';
import type { RouteRecord } from '../gateway/attach';
import type { BackendState } from '../gateway/backend';
import { headerMap } from '../gateway/filters';
import type { HeaderModifier } from '../gateway/types';
import { parseIdentity } from '../lib/identity';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { Change, ServiceRecord } from '../registry/types';
import { ServiceLoadBalancer, type EndpointPicker } from '../mesh/load-balancer';
import { pickFromEndpoints, usableEndpoint } from '../mesh/service-endpoint';
import { realClock, type Clock } from '../lib/clock';
import { requestHash, type RequestHash } from '../resilience/balance-key';
import { BalancedTargets, upstreamOf, type AttemptReporter } from './attempt-targets';
import { ServiceBalancers, type BalancerView } from './service-balancers';
import type { ServiceBulkheads } from './bulkheads';
import { resolveRetry, type RouteRetry } from '../resilience/retry';
import { RetryBudgets, type RetryBudgetView } from '../resilience/retry-budgets';
import { DEFAULT_RETRY_LIMITS, type RetrySpec } from '../resilience/retry-spec';
import type { TrafficPolicySpec } from '../resilience/spec';
import { TrafficPolicies } from './traffic-policies';
import type {
  DirectResponse, ForwardPlan, MirrorTarget, RequestFacts, RequestRouter, RouteDecision, UpstreamTarget,
} from './types';

const ROUTE_KINDS: ReadonlySet<string> = new Set(['httproute', 'grpcroute']);

export interface MeshRouterOptions {
  state: MeshState;
  /** [0, 1): weights and mirror fractions; Math.random unless a test pins it. */
  random?: () => number;
  lb?: EndpointPicker;
  /** The TrafficPolicy lookup; one of its own on `state` unless the app shares one. */
  policies?: TrafficPolicies;
  /** Latency measurement of the TrafficPolicy balancers (EWMA) and the retry budgets' windows; the system clock unless a test pins it. */
  clock?: Pick<Clock, 'now'>;
  /** Hooks told of every attempt's outcome to a Service with a TrafficPolicy (outlier detection). */
  reporters?: AttemptReporter[];
  /** Takes ejected endpoints out of a Service's candidates (outlier detection, outlier-detectors.ts). */
  endpointFilter?: EndpointFilter;
  /** Request slots and connection limits per Service (connectionPool, bulkheads.ts). */
  bulkheads?: Pick<ServiceBulkheads, 'get'>;
}

export class MeshRouter implements RequestRouter {
  private config: RouteConfig;
  private readonly state: MeshState;
  private readonly random: () => number;
  private readonly lb: EndpointPicker;
  private readonly backends: MeshBackends;
  private readonly bulkheads: Pick<ServiceBulkheads, 'get'> | undefined;
  /** TrafficPolicy in force per Service (forService): the resilience mechanisms read their spec here. */
  readonly policies: TrafficPolicies;
  private readonly ownPolicies: boolean;
  /** The endpoint choice of Services with a TrafficPolicy (the others keep `lb`). */
  private readonly balancers: ServiceBalancers;
  /** Told of each attempt's outcome (Services with a TrafficPolicy); add hooks here. */
  readonly reporters: AttemptReporter[];
  /** One retry budget per destination Service, for route and policy retries alike. */
  private readonly budgets: RetryBudgets;
  private readonly onPolicies = () => this.balancers.prune((ns, name) => this.policies.forService(ns, name));
  private readonly onChange = (changes: Change[]) => {
    if (changes.some((c) => ROUTE_KINDS.has(c.kind))) this.reload();
  };
  private readonly onSnapshot = () => this.reload();

  constructor(opts: MeshRouterOptions) {
    this.state = opts.state;
    this.random = opts.random ?? Math.random;
    this.lb = opts.lb ?? new ServiceLoadBalancer();
    this.config = new RouteConfig(routesOf(this.state));
    this.backends = new MeshBackends(this.state, opts.endpointFilter);
    this.bulkheads = opts.bulkheads;
    this.ownPolicies = opts.policies === undefined;
    this.policies = opts.policies ?? new TrafficPolicies(this.state);
    this.balancers = new ServiceBalancers({ random: this.random, clock: opts.clock ?? realClock });
    this.reporters = opts.reporters ?? [];
    this.budgets = new RetryBudgets(opts.clock ?? realClock);
    this.policies.on('change', this.onPolicies);
    this.state.on('change', this.onChange);
    this.state.on('snapshot', this.onSnapshot);
  }

  /** A new config for new requests; requests in flight keep theirs. */
  private reload(): void {
    this.config = new RouteConfig(routesOf(this.state));
  }

  close(): void {
    this.state.off('change', this.onChange);
    this.state.off('snapshot', this.onSnapshot);
    this.policies.off('change', this.onPolicies);
    if (this.ownPolicies) this.policies.close();
  }

  /** The balancers of Services with a TrafficPolicy, with their endpoints' load (admin view). */
  balancerViews(): BalancerView[] {
    return this.balancers.views();
  }

  /** Per Service retried to: its retry budget and what it allows now (the admin view). */
  retryBudgetViews(): RetryBudgetView[] {
    return this.budgets.views();
  }

  /** The routes in force (for the admin view and tests). */
  get routes(): readonly RouteRecord[] {
    return this.config.routes;
  }

  route(req: RequestFacts): RouteDecision {
    this.backends.forget();
    const dest = req.destination;
    const service = dest.service ? this.state.get('service', `${dest.service.namespace}/${dest.service.name}`) : undefined;
    if (!service) return this.toPod(dest.address, dest.port);
    const outcome = decideRoute(this.config, this.backends, {
      target: { namespace: service.namespace, name: service.name, port: dest.port, ...(dest.portName ? { portName: dest.portName } : {}) },
      callerNamespace: callerNamespace(req.source.identity),
      method: req.method,
      authority: req.authority,
      path: req.path,
      query: req.query,
      headers: headerMap(req.headers),
    }, this.random);
    return this.plan(outcome, service, dest.port, req);
  }

  private plan(outcome: RouteOutcome, service: ServiceRecord, port: number, req: RequestFacts): RouteDecision {
    switch (outcome.kind) {
      case 'passthrough':
        return this.toService(service, port, {}, req, undefined);
      case 'no-route':
        return respond(404, `no rule of the routes attached to ${service.namespace}/${service.name}:${port} matches this request; weft explain <source> <url> says which condition each rule missed`, { responseFlag: 'NR' });
      case 'redirect':
        return { kind: 'respond', status: outcome.redirect.statusCode, headers: { location: outcome.redirect.location }, route: routeName(outcome.by), responseFlag: '-' };
      case 'error':
        return respond(outcome.status, outcome.reason, { route: routeName(outcome.by), responseFlag: outcome.status === 503 ? 'UH' : '-' });
      case 'forward': {
        const backend = this.state.get('service', `${outcome.backend.namespace}/${outcome.backend.name}`);
        if (!backend) return respond(500, `backend Service ${outcome.backend.namespace}/${outcome.backend.name} was deleted while the route still names it; fix the route's backendRefs (weft routes shows ResolvedRefs)`, { route: routeName(outcome.by), responseFlag: '-' });
        const p = outcome.policy;
        const extra: Partial<ForwardPlan> = {
          route: routeName(outcome.by),
          backend: `${outcome.backend.namespace}/${outcome.backend.name}:${outcome.backend.port}`,
          authority: outcome.request.authority,
          path: outcome.request.query === '' ? outcome.request.path : `${outcome.request.path}?${outcome.request.query}`,
        };
        if (!isEmpty(outcome.requestHeaderEdits)) extra.requestHeaders = outcome.requestHeaderEdits;
        if (!isEmpty(outcome.responseHeaderEdits)) extra.responseHeaders = outcome.responseHeaderEdits;
        if (p.backendRequestTimeoutMs !== undefined) extra.attemptTimeoutMs = p.backendRequestTimeoutMs;
        if (p.requestTimeoutMs !== undefined) extra.timeoutMs = p.requestTimeoutMs;
        // The main endpoint before the mirrors': it reuses the list the readiness check made.
        const decision = this.toService(backend, outcome.backend.port, extra, req, p.retry);
        if (decision.kind !== 'forward') return decision;
        const mirrors: MirrorTarget[] = [];
        for (const m of outcome.mirrors) {
          if (!m.backend) continue;
          const svc = this.state.get('service', `${m.backend.namespace}/${m.backend.name}`);
          const up = svc && this.endpointOf(svc, m.backend.port, this.policies.forService(svc.namespace, svc.name));
          if (up && up.kind === 'ok') mirrors.push({ upstream: up.upstream, backend: `${m.backend.namespace}/${m.backend.name}:${m.backend.port}` });
        }
        if (mirrors.length > 0) decision.mirrors = mirrors;
        return decision;
      }
    }
  }

  /**
   * Adds to `extra` the retries of a request to Service `svc`: the route rule's retry
   * (GEP-1731) combined with the `retry` of the Service's TrafficPolicy (resilience/retry.ts:
   * the rule wins for codes, attempts and backoff; the policy adds classes, methods and
   * the per-try timeout; the budget and the cross-hop cap hold for both). The policy is
   * the one of the Service the request is forwarded to (the backend), whose budget the
   * retries spend (`spec`: its policy's retry section).
   */
  private retryOf(svc: ServiceRecord, spec: RetrySpec | undefined, route: RouteRetry | undefined, extra: Partial<ForwardPlan>): void {
    if (!route && !spec) return;
    const budgetSpec = (spec ?? DEFAULT_RETRY_LIMITS).budget;
    const budget = budgetSpec.enabled ? this.budgets.forService(svc.namespace, svc.name, budgetSpec) : undefined;
    const r = resolveRetry(route, spec, budget);
    if (!r) return;
    extra.retry = r.rules;
    // The rule's own timeouts.backendRequest is the more specific per-try limit.
    if (r.perTryTimeoutMs !== undefined && extra.attemptTimeoutMs === undefined) extra.attemptTimeoutMs = r.perTryTimeoutMs;
  }

  /**
   * The plan to one endpoint of `service`'s `port` under the Service's TrafficPolicy,
   * looked up once here for the retries, the endpoint choice and the limits (a Service
   * without one costs this lookup and the endpoint filter's).
   */
  private toService(service: ServiceRecord, port: number, extra: Partial<ForwardPlan>, req: RequestFacts, routeRetry: RouteRetry | undefined): RouteDecision {
    const spec = this.policies.forService(service.namespace, service.name);
    this.retryOf(service, spec?.retry, routeRetry, extra);
    const up = this.endpointOf(service, port, spec, req);
    if (up.kind === 'error') return respond(up.status, up.reason, { responseFlag: up.status === 503 ? 'UH' : '-', ...(extra.route ? { route: extra.route } : {}) });
    const plan: ForwardPlan = { ...extra, kind: 'forward', upstream: up.upstream };
    if (up.targets) plan.targets = up.targets;
    if (up.setCookie) plan.responseHeaders = withSetCookie(plan.responseHeaders, up.setCookie);
    if (spec) this.limit(plan, service, spec);
    return plan;
  }

  /** The backend Service's connectionPool on the plan: its request slots and connection limits. */
  private limit(plan: ForwardPlan, service: ServiceRecord, spec: TrafficPolicySpec): void {
    if (!this.bulkheads) return;
    const limits = this.bulkheads.get(service.namespace, service.name, spec);
    if (limits?.bulkhead) plan.bulkhead = limits.bulkhead;
    if (limits?.pool) plan.pool = limits.pool;
  }

  /**
   * One endpoint of `service`'s `port`. A Service with a TrafficPolicy is balanced by its
   * policy (and, for a routed request, gets the per-attempt targets); one without keeps
   * the plain round robin. `spec`: the Service's policy. Mirrors (no `req`) use the
   * policy's balancer without a hash key and without targets.
   */
  private endpointOf(service: ServiceRecord, port: number, spec: TrafficPolicySpec | undefined, req?: RequestFacts):
    { kind: 'ok'; upstream: UpstreamTarget; targets?: BalancedTargets; setCookie?: string } | { kind: 'error'; status: 500 | 503; reason: string } {
    if (spec === undefined) {
      const pick = pickFromEndpoints(service, port, () => this.backends.healthy(service), this.lb);
      if (!pick.ok) return { kind: 'error', status: pick.flag === 'NO_HEALTHY_UPSTREAM' ? 503 : 500, reason: pick.reason };
      return { kind: 'ok', upstream: upstreamOf(pick.destination, pick.target.ip, pick.target.port) };
    }
    const sb = this.balancers.get(service.namespace, service.name, spec);
    const hashed: RequestHash | undefined = sb.hashKey && req ? requestHash(sb.hashKey, req) : undefined;
    const balanced: EndpointPicker = {
      pick: (_svc, candidates) => sb.balancer.pick(candidates, hashed?.hash),
      pickWaypoint: (waypoint, candidates) => this.lb.pickWaypoint(waypoint, candidates),
    };
    const pick = pickFromEndpoints(service, port, () => this.backends.healthy(service), balanced);
    if (!pick.ok) return { kind: 'error', status: pick.flag === 'NO_HEALTHY_UPSTREAM' ? 503 : 500, reason: pick.reason };
    const upstream = upstreamOf(pick.destination, pick.target.ip, pick.target.port);
    if (!req) return { kind: 'ok', upstream };
    const targets = new BalancedTargets(sb, this.backends.healthy(service), pick.target.port, hashed?.hash, this.reporters);
    return { kind: 'ok', upstream, targets, ...(hashed?.setCookie ? { setCookie: hashed.setCookie } : {}) };
  }

  private toPod(ip: string, port: number): RouteDecision {
    const w = this.state.workloadByAddress(ip);
    if (!w) return respond(503, `${ip} is neither a Service VIP nor a known workload, so the waypoint cannot tell where it goes; the registry may lag behind a deleted pod (weft workloads)`, { responseFlag: 'UH' });
    return { kind: 'forward', upstream: upstreamOf(w, ip, port) };
  }
}

/**
 * The registry as backend resolution reads it (shared with `weft explain`). It keeps
 * the last Service's usable endpoints it listed, so a request lists them once: the
 * readiness check while choosing the backend and the endpoint pick after it read the
 * same list. The router calls forget() before each decision (route() is synchronous),
 * so a list never outlives the request it was made for; a changed Service is a new
 * record, so the identity check also skips a stale list.
 */
export class MeshBackends implements BackendState {
  private listed: { service: ServiceRecord; healthy: readonly WorkloadView[] } | undefined;

  /** @param filter takes endpoints out of the candidates (outlier detection's ejections) */
  constructor(private readonly state: Pick<MeshState, 'get' | 'endpoints'>, private readonly filter?: EndpointFilter) {}

  service(ns: string, name: string): ServiceRecord | undefined {
    return this.state.get('service', `${ns}/${name}`);
  }

  hasReadyEndpoints(ns: string, name: string, port: number): boolean {
    const svc = this.service(ns, name);
    return svc !== undefined && svc.ports.some((p) => p.port === port) && this.healthy(svc).length > 0;
  }

  /** `service`'s usable endpoints (healthy, with an address, not ejected). */
  healthy(service: ServiceRecord): readonly WorkloadView[] {
    if (this.listed?.service !== service) {
      const usable = this.state.endpoints(service).filter(usableEndpoint);
      this.listed = { service, healthy: this.filter ? this.filter.filter(service, usable) : usable };
    }
    return this.listed.healthy;
  }

  forget(): void {
    this.listed = undefined;
  }
}

/** Narrows a Service's usable endpoints (the same array when it keeps them all). */
export interface EndpointFilter {
  filter(service: ServiceRecord, endpoints: readonly WorkloadView[]): readonly WorkloadView[];
}

export function meshBackends(state: Pick<MeshState, 'get' | 'endpoints'>): MeshBackends {
  return new MeshBackends(state);
}

/** Routes of the registry as the route logic takes them. */
export function routesOf(state: Pick<MeshState, 'list'>): RouteRecord[] {
  return [
    ...state.list('httproute').map((r): RouteRecord => ({ kind: 'HTTPRoute', ...r })),
    ...state.list('grpcroute').map((r): RouteRecord => ({ kind: 'GRPCRoute', ...r })),
  ];
}

/** The plan's response header edits plus a generated hash cookie (a copy: the route's edits are shared). */
function withSetCookie(edits: HeaderModifier | undefined, cookie: string): HeaderModifier {
  const header = { name: 'set-cookie', value: cookie };
  return edits ? { set: edits.set, add: [...edits.add, header], remove: edits.remove } : { set: [], add: [header], remove: [] };
}

/** The caller's namespace (consumer routes), from its verified SPIFFE identity; '' when unknown. */
function callerNamespace(identity: string | undefined): string {
  return (identity && parseIdentity(identity)?.namespace) || '';
}

function routeName(by: { route: string; ruleIndex: number; ruleName?: string }): string {
  return `${by.route}#${by.ruleName ?? by.ruleIndex}`;
}

function respond(status: number, reason: string, extra: Partial<DirectResponse>): DirectResponse {
  return { kind: 'respond', status, headers: { 'content-type': 'text/plain' }, body: `${reason}\n`, ...extra };
}

function isEmpty(m: HeaderModifier): boolean {
  return m.set.length + m.add.length + m.remove.length === 0;
}
