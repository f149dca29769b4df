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

interface Entry {
  namespace: string;
  name: string;
  section: ConnectionPoolSpec;
  bulkhead: Bulkhead | undefined;
  pool: UpstreamPoolLimits | undefined;
}

const LABELS = ['destination_service_namespace', 'destination_service_name'] as const;

export class ServiceBulkheads {
  private readonly byNamespace = new Map<string, Map<string, Entry>>();

  constructor(private readonly policyOf: (namespace: string, name: string) => TrafficPolicySpec | undefined, registry?: Registry) {
    if (!registry) return;
    const entries = () => this.entries();
    new Gauge({
      name: 'weft_waypoint_pool_requests', help: 'Requests holding (state="active") or waiting for (state="pending") a slot of a Service\'s connectionPool.',
      labelNames: [...LABELS, 'state'], registers: [registry],
      collect(this: Gauge<(typeof LABELS)[number] | 'state'>) {
        this.reset();
        for (const e of entries()) {
          if (!e.bulkhead) continue;
          const { active, pending } = e.bulkhead.load;
          this.set({ destination_service_namespace: e.namespace, destination_service_name: e.name, state: 'active' }, active);
          this.set({ destination_service_namespace: e.namespace, destination_service_name: e.name, state: 'pending' }, pending);
        }
      },
    });
  }

  /** What a plan to `namespace/name` carries under `spec` (undefined: no connectionPool). */
  get(namespace: string, name: string, spec: TrafficPolicySpec): { bulkhead?: Bulkhead; pool?: UpstreamPoolLimits } | undefined {
    const section = spec.connectionPool;
    if (!section) return undefined;
    let names = this.byNamespace.get(namespace);
    const had = names?.get(name);
    if (had && (had.section === section || same(had.section, section))) {
      had.section = section;
      return had;
    }
    const limited = section.maxConcurrentRequests !== undefined || section.maxPendingRequests !== undefined;
    const perConnection = section.maxConnections !== undefined || section.maxRequestsPerConnection !== undefined;
    const made: Entry = {
      namespace, name, section,
      bulkhead: limited ? new Bulkhead(section) : undefined,
      pool: perConnection ? { maxConnections: section.maxConnections, maxRequestsPerConnection: section.maxRequestsPerConnection } : undefined,
    };
    if (!names) this.byNamespace.set(namespace, (names = new Map()));
    names.set(name, made);
    return made;
  }

  /** Drops the entries whose Service's policy no longer has the same section (call on policy changes). */
  prune(): void {
    for (const [ns, names] of this.byNamespace) {
      for (const [name, e] of names) {
        const now = this.policyOf(ns, name)?.connectionPool;
        if (!now || !same(now, e.section)) names.delete(name);
      }
      if (names.size === 0) this.byNamespace.delete(ns);
    }
  }

  views(): BulkheadView[] {
    return [...this.entries()].map((e) => ({
      namespace: e.namespace, name: e.name, limits: e.section,
      active: e.bulkhead?.load.active ?? 0, pending: e.bulkhead?.load.pending ?? 0, overflowed: e.bulkhead?.overflowed ?? 0,
    }));
  }

  private *entries(): Iterable<Entry> {
    for (const names of this.byNamespace.values()) yield* names.values();
  }
}

function same(a: ConnectionPoolSpec, b: ConnectionPoolSpec): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}
