/**
 * ForwardPlan.targets for a Service with a TrafficPolicy: the endpoints of one request,
 * attempt by attempt. The router chose the first (plan.upstream) with the Service's
 * balancer; next() chooses each retry's with the same balancer, avoiding the endpoints
 * this request already tried while another is left; report() feeds the balancer
 * (latency, requests in flight) and every AttemptReporter hook (outlier detection and
 * whatever else watches endpoint health), in that order.
 *
 * A Service without a policy gets no targets object at all: forward() then sends every
 * attempt to plan.upstream and nothing per request is allocated here.
 */
import type { WorkloadView } from '../registry/enrolment';
import type { EndpointBalancer } from '../resilience/balance';
import type { HashKeySource } from '../resilience/balance-spec';
import type { TrafficPolicySpec } from '../resilience/spec';
import type { AttemptOutcome, AttemptTargets, UpstreamTarget } from './types';

/** The Service an attempt was for, and the policy in force for it (stable per policy version: keys for per-Service state). */
export interface ServicePolicy {
  readonly namespace: string;
  readonly name: string;
  readonly spec: TrafficPolicySpec;
}

/** Told of every attempt's outcome to an endpoint of a Service with a TrafficPolicy. Must not throw. */
export interface AttemptReporter {
  report(service: ServicePolicy, target: UpstreamTarget, outcome: AttemptOutcome): void;
}

/** What BalancedTargets needs of the Service's per-policy state. */
export interface BalancedService extends ServicePolicy {
  readonly balancer: EndpointBalancer<WorkloadView>;
  /** Where a request's hash key comes from (consistent hash only). */
  readonly hashKey: HashKeySource | undefined;
}

export class BalancedTargets implements AttemptTargets {
  /**
   * @param candidates the Service's usable endpoints when the request was routed
   * @param targetPort the Service port's targetPort
   * @param hash the request's consistent-hash key hash, if any
   */
  constructor(
    private readonly service: BalancedService,
    private readonly candidates: readonly WorkloadView[],
    private readonly targetPort: number,
    private readonly hash: number | undefined,
    private readonly reporters: readonly AttemptReporter[],
  ) {}

  next(tried: readonly UpstreamTarget[]): UpstreamTarget | undefined {
    if (this.candidates.length === 0) return undefined;
    const w = this.service.balancer.pick(this.candidates, this.hash, tried.map((t) => t.host));
    return upstreamOf(w, w.record.addresses[0]!, this.targetPort);
  }

  started(target: UpstreamTarget): void {
    this.service.balancer.started(target.host);
  }

  cancelled(target: UpstreamTarget): void {
    this.service.balancer.finished(target.host, undefined);
  }

  report(target: UpstreamTarget, outcome: AttemptOutcome): void {
    const failed = outcome.failure !== undefined || (outcome.status !== undefined && outcome.status >= 500);
    this.service.balancer.finished(target.host, { latencyMs: outcome.latencyMs, failed });
    for (const r of this.reporters) {
      try {
        r.report(this.service, target, outcome);
      } catch {
        // A watcher's bug must not fail the request it watches (the contract says: never throw).
      }
    }
  }
}

/** How the waypoint dials an endpoint: HBONE with its identity for mesh workloads, plain TCP otherwise. */
export function upstreamOf(w: WorkloadView, ip: string, port: number): UpstreamTarget {
  return w.enrolled ? { host: ip, port, transport: 'hbone', identity: w.identity } : { host: ip, port, transport: 'tcp' };
}
