/**
 * The waypoint's outlier detection: one OutlierDetector (src/resilience/outlier.ts) per
 * Service whose TrafficPolicy has an `outlierDetection` section, fed every attempt's
 * outcome (an AttemptReporter on the router's list) and consulted when the router lists
 * a Service's usable endpoints (MeshBackends' filter), so an ejected endpoint leaves
 * the candidates of the load balancer and of retries alike.
 *
 * An endpoint is a pod of the Service, known by its address (the one the balancers and
 * UpstreamTarget.host use). A detector is rebuilt (its memory dropped) only when its
 * section changes; a Service whose policy lost the section, or went away, is dropped
 * when the policy table changes, so the table is bounded by the policies' targets.
 * A Service without a policy costs one lookup per listing and nothing per attempt.
 *
 * Each ejection is one log line (`outlier ejected`, with the endpoint, reason, count
 * and duration), a count in weft_waypoint_outlier_ejections_total and, while it lasts,
 * a share of weft_waypoint_outlier_ejected_endpoints; `GET /outliers` on the admin port
 * and `weft outliers` list the endpoints each detector remembers.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import type { WorkloadView } from '../registry/enrolment';
import type { ServiceRecord } from '../registry/types';
import { OutlierDetector, type EndpointHealthView } from '../resilience/outlier';
import type { OutlierDetectionSpec } from '../resilience/outlier-spec';
import type { TrafficPolicySpec } from '../resilience/spec';
import type { AttemptReporter, ServicePolicy } from './attempt-targets';
import { PerService } from './per-service';
import type { EndpointFilter } from './router';
import type { AttemptOutcome, UpstreamTarget } from './types';

/** One Service's detector as the admin view and `weft outliers` show it. */
export interface OutlierServiceView {
  namespace: string;
  name: string;
  /** Endpoints out now, of those in the last candidate list. */
  ejected: number;
  endpoints: EndpointHealthView[];
}

const SERVICE_LABELS = ['destination_service_namespace', 'destination_service_name'] as const;

/** Its metrics: by Service (bounded by the policies' targets) and reason (a fixed set), never by endpoint. */
export class OutlierMetrics {
  readonly ejections: Counter<'destination_service_namespace' | 'destination_service_name' | 'reason'>;

  constructor(registry: Registry, detectors: () => Iterable<{ namespace: string; name: string; detector: OutlierDetector }>) {
    this.ejections = new Counter({
      name: 'weft_waypoint_outlier_ejections_total', help: 'Endpoints ejected by outlier detection, by Service and reason.',
      labelNames: [...SERVICE_LABELS, 'reason'], registers: [registry],
    });
    new Gauge({
      name: 'weft_waypoint_outlier_ejected_endpoints', help: 'Endpoints out of the candidates now (ejected, or waiting for their probe), by Service.',
      labelNames: [...SERVICE_LABELS], registers: [registry],
      collect(this: Gauge<(typeof SERVICE_LABELS)[number]>) {
        this.reset();
        for (const d of detectors()) this.set({ destination_service_namespace: d.namespace, destination_service_name: d.name }, d.detector.ejected);
      },
    });
  }
}

export class OutlierDetectors implements AttemptReporter, EndpointFilter {
  private readonly detectors: PerService<OutlierDetectionSpec, OutlierDetector>;
  private readonly metrics: OutlierMetrics | undefined;

  constructor(private readonly opts: {
    clock: Clock;
    logger: Logger;
    /** The policy in force per Service (TrafficPolicies.forService). */
    policyOf: (namespace: string, name: string) => TrafficPolicySpec | undefined;
    registry?: Registry;
  }) {
    this.detectors = new PerService({ make: (namespace, name, section) => this.make(namespace, name, section), drop: (d) => d.close() });
    this.metrics = opts.registry ? new OutlierMetrics(opts.registry, () => this.entries()) : undefined;
  }

  /** `service`'s usable endpoints without the ejected ones (the same array when none is). */
  filter(service: ServiceRecord, endpoints: readonly WorkloadView[]): readonly WorkloadView[] {
    const section = this.opts.policyOf(service.namespace, service.name)?.outlierDetection;
    if (!section) return endpoints;
    return this.detectors.get(service.namespace, service.name, section).available(endpoints, addressOf);
  }

  /**
   * AttemptReporter (attempt-targets.ts): one attempt's outcome at an endpoint of a Service
   * with a policy. Judged under the policy in force NOW, not the one the request was
   * routed under: an attempt that outlived a policy edit must not rebuild the detector with
   * the old section (dropping the new one's ejections), nor one that outlived the policy
   * bring back a detector that prune() dropped.
   */
  report(service: ServicePolicy, target: UpstreamTarget, outcome: AttemptOutcome): void {
    const section = service.spec.outlierDetection && this.opts.policyOf(service.namespace, service.name)?.outlierDetection;
    if (!section) return;
    this.detectors.get(service.namespace, service.name, section).report(target.host, outcome);
  }

  /** Drops detectors whose Service's policy no longer has the same section (call on policy changes). */
  prune(): void {
    this.detectors.prune((ns, name) => this.opts.policyOf(ns, name)?.outlierDetection);
  }

  views(): OutlierServiceView[] {
    return [...this.entries()].map((e) => ({ namespace: e.namespace, name: e.name, ejected: e.detector.ejected, endpoints: e.detector.views() }))
      .sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace, b.namespace)));
  }

  close(): void {
    this.detectors.clear();
  }

  private *entries(): Iterable<{ namespace: string; name: string; detector: OutlierDetector }> {
    for (const e of this.detectors.entries()) yield { namespace: e.namespace, name: e.name, detector: e.state };
  }

  private make(namespace: string, name: string, section: OutlierDetectionSpec): OutlierDetector {
    const log = this.opts.logger;
    const service = `${namespace}/${name}`;
    return new OutlierDetector(section, this.opts.clock, {
      onEject: (e) => {
        this.metrics?.ejections.inc({ destination_service_namespace: namespace, destination_service_name: name, reason: e.reason });
        log.warn({
          service, endpoint: e.endpoint, reason: e.reason, ejections: e.ejections, ejection_ms: e.durationMs,
          until: new Date(e.until).toISOString(), ejected: e.ejected, endpoints: e.total,
        }, 'outlier ejected');
      },
      onReturn: (endpoint, ms) => log.info({ service, endpoint, ejected_ms: ms }, 'outlier returned (its probe succeeded)'),
    });
  }
}

const addressOf = (w: WorkloadView): string => w.record.addresses[0] ?? '';

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
