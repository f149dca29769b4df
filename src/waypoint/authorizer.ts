/**
 * The waypoint's L7 authorization step, run for every request BEFORE the router: it
 * finds the policies bound to the request's Service (targetRefs kind Service) or to
 * this waypoint (kind Gateway), evaluates them (authorize.ts) and turns a denial into
 * the local answer `403 RBAC: access denied` (gRPC: PERMISSION_DENIED), counted in
 * `weft_waypoint_authz_decisions_total` and logged with the policy's name
 * (rate-limited: a client must not be able to flood the log by being refused).
 *
 * The policies are looked up from MeshState once per registry revision. A waypoint
 * serves only Services of its own namespace (app.ts refuses others), and targetRefs
 * name objects of the policy's namespace, so only that namespace's policies can apply.
 * A request to a Service without such policies costs one revision compare and one
 * map lookup.
 */
import { Counter, type Registry } from 'prom-client';
import { realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { LogLimiter } from '../lib/log-limiter';
import type { MeshState } from '../registry/state';
import type { AuthorizationPolicyRecord } from '../registry/types';
import { authorizeRequest, deniedAnswer, type L7AuthzDecision } from './authorize';
import type { DirectResponse, RequestFacts, StreamContext } from './types';

/** What exchange.ts asks before routing: undefined lets the request on, a response refuses it. */
export interface RequestAuthorizer {
  check(facts: RequestFacts, grpc: boolean): DirectResponse | undefined;
}

export interface WaypointAuthorizerOptions {
  state: Pick<MeshState, 'revision' | 'waypointPolicies'>;
  /** This waypoint: its namespace and Gateway name. */
  waypoint: { namespace: string; name: string };
  logger: Logger;
  registry?: Registry;
  clock?: Clock;
}

const NONE: readonly AuthorizationPolicyRecord[] = [];

export class WaypointAuthorizer implements RequestAuthorizer {
  private revision = -1;
  /** Policies bound to this waypoint's Gateway: they apply to every request. */
  private gatewayBound: readonly AuthorizationPolicyRecord[] = NONE;
  /** Service name → its policies (the Gateway-bound ones included), sorted by name. */
  private byService = new Map<string, readonly AuthorizationPolicyRecord[]>();
  private readonly decisions: Counter<'destination_service_namespace' | 'destination_service_name' | 'policy' | 'decision'>;
  private readonly limiter: LogLimiter;

  constructor(private readonly opts: WaypointAuthorizerOptions) {
    this.decisions = new Counter({
      name: 'weft_waypoint_authz_decisions_total',
      help: 'L7 authorization at the waypoint: denials by the deciding policy (`none`: no ALLOW policy matched) and AUDIT matches by policy.',
      labelNames: ['destination_service_namespace', 'destination_service_name', 'policy', 'decision'],
      registers: opts.registry ? [opts.registry] : [],
    });
    this.limiter = new LogLimiter({ clock: opts.clock ?? realClock });
  }

  /** The policies that apply to a request to `service` (undefined: a pod addressed directly), in evaluation order. */
  policiesFor(service: string | undefined): readonly AuthorizationPolicyRecord[] {
    if (this.revision !== this.opts.state.revision) this.rebuild();
    return (service !== undefined ? this.byService.get(service) : undefined) ?? this.gatewayBound;
  }

  check(facts: RequestFacts, grpc: boolean): DirectResponse | undefined {
    const service = facts.destination.service;
    const policies = this.policiesFor(service?.name);
    if (policies.length === 0) return undefined;
    const d = authorizeRequest({
      source: { identity: facts.source.identity, ip: facts.source.address },
      destination: { ip: facts.destination.address, port: facts.destination.port },
      request: { method: facts.method, host: facts.authority, path: facts.path, headers: facts.headers },
    }, policies);
    this.report(d, facts);
    if (d.allowed) return undefined;
    return { kind: 'respond', ...deniedAnswer(grpc), responseFlag: '-' };
  }

  /** For a stream that is not HTTP (L4 passthrough): whether it may pass; a denial is counted and logged like a request's. */
  allowStream(ctx: StreamContext): boolean {
    const policies = this.policiesFor(ctx.destination.service?.name);
    if (policies.length === 0) return true;
    const d = authorizeRequest({
      source: { identity: ctx.source.identity, ip: ctx.source.address },
      destination: { ip: ctx.destination.address, port: ctx.destination.port },
    }, policies);
    this.report(d, { method: 'TCP', authority: `${ctx.destination.address}:${ctx.destination.port}`, path: '', source: ctx.source, destination: ctx.destination });
    return d.allowed;
  }

  private report(d: L7AuthzDecision, facts: Pick<RequestFacts, 'method' | 'authority' | 'path' | 'source' | 'destination'>): void {
    if (d.allowed && d.audited.length === 0) return;
    const svc = facts.destination.service;
    const labels = { destination_service_namespace: svc?.namespace ?? 'unknown', destination_service_name: svc?.name ?? 'unknown' };
    const log = this.opts.logger;
    const line = () => ({
      method: facts.method, authority: facts.authority, path: facts.path,
      source_identity: facts.source.identity, source_address: facts.source.address, reason: d.reason,
    });
    for (const p of d.audited) {
      this.decisions.inc({ ...labels, policy: p, decision: 'audit' });
      this.limiter.log(log, 'info', `audit ${p}`, { policy: p, ...line() }, 'L7 authorization: AUDIT policy matched');
    }
    // Allowed requests are not counted here (istio_requests_total has them): a labelled
    // counter per request would cost more than the evaluation itself.
    if (d.allowed) return;
    const policy = d.policy ?? 'none';
    this.decisions.inc({ ...labels, policy, decision: 'deny' });
    this.limiter.log(log, 'warn', `deny ${policy}`, { policy, ...line() }, 'L7 authorization denied the request (403 RBAC: access denied)');
  }

  private rebuild(): void {
    const { namespace, name } = this.opts.waypoint;
    const all = this.opts.state.waypointPolicies(namespace);
    this.revision = this.opts.state.revision;
    this.gatewayBound = all.filter((p) => p.targetRefs!.some((r) => r.kind === 'Gateway' && r.name === name));
    const byService = new Map<string, AuthorizationPolicyRecord[]>();
    for (const p of all) {
      const onGateway = this.gatewayBound.includes(p);
      for (const r of p.targetRefs!) {
        if (r.kind !== 'Service') continue;
        let list = byService.get(r.name);
        if (!list) byService.set(r.name, list = [...this.gatewayBound]);
        if (!onGateway && !list.includes(p)) list.push(p);
      }
    }
    this.byService = byService;
  }
}
