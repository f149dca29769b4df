/**
 * The waypoint's bulkheads: one Bulkhead (src/resilience/pool.ts) per Service whose
 * TrafficPolicy has a `connectionPool` section with a request limit, handed to each
 * forward plan to that Service (ForwardPlan.bulkhead), so each Service's excess waits
 * in, and overflows from, its own queue only. Rebuilt only when the section changes (a
 * new object takes new requests; requests holding slots of the old one leave them
 * there); dropped when the policy loses the section or goes. A Service without a
 * policy costs the one policy lookup the router makes anyway.
 *
 * The section's per-connection limits (maxConnections, maxRequestsPerConnection) go to
 * the upstream clients through ForwardPlan.pool instead (upstream-http1.ts, upstream-h2.ts).
 */
import { Gauge, type Registry } from 'prom-client';
import { Bulkhead } from '../resilience/pool';
import type { ConnectionPoolSpec } from '../resilience/pool-spec';
import type { TrafficPolicySpec } from '../resilience/spec';
import { PerService } from './per-service';
import type { UpstreamPoolLimits } from './types';

/** One Service's bulkhead as the admin view shows it. */
export interface BulkheadView {
  namespace: string;
  name: string;
  limits: ConnectionPoolSpec;
  active: number;
  pending: number;
  overflowed: number;
}

/** What a plan to the Service carries. */
interface Limits {
  bulkhead: Bulkhead | undefined;
  pool: UpstreamPoolLimits | undefined;
}

const LABELS = ['destination_service_namespace', 'destination_service_name'] as const;

export class ServiceBulkheads {
  private readonly limits = new PerService<ConnectionPoolSpec, Limits>({ make: (_ns, _name, section) => limitsOf(section) });

  constructor(private readonly policyOf: (namespace: string, name: string) => TrafficPolicySpec | undefined, registry?: Registry) {
    if (!registry) return;
    const entries = () => this.limits.entries();
    new Gauge({
      name: 'weft_waypoint_pool_requests', help: 'Requests holding (state="active") or waiting for (state="pending") a slot of a Service\'s connectionPool.',
      labelNames: [...LABELS, 'state'], registers: [registry],
      collect(this: Gauge<(typeof LABELS)[number] | 'state'>) {
        this.reset();
        for (const e of entries()) {
          if (!e.state.bulkhead) continue;
          const { active, pending } = e.state.bulkhead.load;
          this.set({ destination_service_namespace: e.namespace, destination_service_name: e.name, state: 'active' }, active);
          this.set({ destination_service_namespace: e.namespace, destination_service_name: e.name, state: 'pending' }, pending);
        }
      },
    });
  }

  /** What a plan to `namespace/name` carries under `spec` (undefined: no connectionPool). */
  get(namespace: string, name: string, spec: TrafficPolicySpec): { bulkhead?: Bulkhead; pool?: UpstreamPoolLimits } | undefined {
    const section = spec.connectionPool;
    return section && this.limits.get(namespace, name, section);
  }

  /** Drops the entries whose Service's policy no longer has the same section (call on policy changes). */
  prune(): void {
    this.limits.prune((ns, name) => this.policyOf(ns, name)?.connectionPool);
  }

  views(): BulkheadView[] {
    return [...this.limits.entries()].map(({ namespace, name, section, state: { bulkhead } }) => ({
      namespace, name, limits: section,
      active: bulkhead?.load.active ?? 0, pending: bulkhead?.load.pending ?? 0, overflowed: bulkhead?.overflowed ?? 0,
    }));
  }
}

function limitsOf(section: ConnectionPoolSpec): Limits {
  const limited = section.maxConcurrentRequests !== undefined || section.maxPendingRequests !== undefined;
  const perConnection = section.maxConnections !== undefined || section.maxRequestsPerConnection !== undefined;
  return {
    bulkhead: limited ? new Bulkhead(section) : undefined,
    pool: perConnection ? { maxConnections: section.maxConnections, maxRequestsPerConnection: section.maxRequestsPerConnection } : undefined,
  };
}
