/**
 * One EndpointBalancer per Service with a TrafficPolicy, kept across requests (its
 * latency and in-flight counts, its hash table) and rebuilt only when the policy's
 * `loadBalancer` section changes: an edit of another section (a new spec object from
 * MeshState) keeps the balancer and its measurements. Entries of Services whose policy
 * went away are dropped when the policy table changes, so the table is bounded by the
 * policies' targets.
 */
import type { Clock } from '../lib/clock';
import type { WorkloadView } from '../registry/enrolment';
import { EndpointBalancer } from '../resilience/balance';
import { DEFAULT_LOAD_BALANCER, hashKeySource, type HashKeySource, type LoadBalancerSpec } from '../resilience/balance-spec';
import type { TrafficPolicySpec } from '../resilience/spec';
import type { BalancedService } from './attempt-targets';
import { PerService } from './per-service';

/** One Service's balancer as the admin view shows it. */
export interface BalancerView {
  namespace: string;
  name: string;
  type: string;
  /** Attempts in flight from this waypoint and the peak-EWMA latency estimate (EWMA only), per endpoint. */
  endpoints: Array<{ address: string; pending: number; ewmaMs?: number }>;
}

class ServiceBalance implements BalancedService {
  /** Where a request's hash key comes from (consistent hash only), worked out once. */
  readonly hashKey: HashKeySource | undefined;

  constructor(readonly namespace: string, readonly name: string, public spec: TrafficPolicySpec, readonly balancer: EndpointBalancer<WorkloadView>) {
    const ch = spec.loadBalancer?.consistentHash;
    this.hashKey = ch && hashKeySource(ch);
  }
}

/** The address a balancer knows an endpoint by (what report() gets back as UpstreamTarget.host). */
const addressOf = (w: WorkloadView): string => w.record.addresses[0] ?? '';

export class ServiceBalancers {
  /** Keyed by the whole policy (BalancedService.spec), the same while its loadBalancer is. */
  private readonly balancers: PerService<TrafficPolicySpec, ServiceBalance>;

  constructor(opts: { random: () => number; clock: Pick<Clock, 'now'> }) {
    this.balancers = new PerService({
      make: (namespace, name, spec) => new ServiceBalance(namespace, name, spec, new EndpointBalancer(spec.loadBalancer ?? DEFAULT_LOAD_BALANCER, addressOf, opts)),
      same: (a, b) => sameBalancing(a.loadBalancer, b.loadBalancer),
    });
  }

  /** The balancer state of Service `namespace/name` under `spec` (the policy in force). */
  get(namespace: string, name: string, spec: TrafficPolicySpec): BalancedService {
    const sb = this.balancers.get(namespace, name, spec);
    sb.spec = spec;
    return sb;
  }

  /** Drops the state of Services whose policy is no longer `policyOf`'s answer (policy removed or replaced). */
  prune(policyOf: (namespace: string, name: string) => TrafficPolicySpec | undefined): void {
    this.balancers.prune(policyOf);
  }

  /** Per Service with a policy: its balancer and what it knows of each endpoint (the waypoint admin's /balancers). */
  views(): BalancerView[] {
    const out: BalancerView[] = [];
    for (const { namespace, name, state: sb } of this.balancers.entries()) {
      out.push({ namespace, name, type: sb.balancer.type, endpoints: sb.balancer.endpointLoads().map((l) => ({ address: l.address, pending: l.pending, ...(l.rttMs !== undefined ? { ewmaMs: Math.round(l.rttMs * 100) / 100 } : {}) })) });
    }
    return out.sort((a, b) => (a.namespace === b.namespace ? (a.name < b.name ? -1 : 1) : a.namespace < b.namespace ? -1 : 1));
  }

  /** Services with balancer state (tests, admin views). */
  get size(): number {
    return this.balancers.size;
  }
}

function sameBalancing(a: LoadBalancerSpec | undefined, b: LoadBalancerSpec | undefined): boolean {
  return a === b || JSON.stringify(a ?? DEFAULT_LOAD_BALANCER) === JSON.stringify(b ?? DEFAULT_LOAD_BALANCER);
}
