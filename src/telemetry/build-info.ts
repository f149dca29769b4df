/**
 * Istio's `istio_build{component, tag}` gauge (always 1), which Istio's ztunnel and
 * proxies export and its dashboards join on: it tells a ztunnel's or a waypoint's
 * process metrics (memory, event-loop lag, CPU, which carry no component label) apart
 * from each other whatever the scrape job is called. The recording rules in
 * daemonset/prometheus-rules.yaml join on (job, instance) to add `component`.
 */
import { Gauge, type Registry } from 'prom-client';
import { VERSION } from '../lib/version';

/** The proxies that report it; Istio's ztunnel says `ztunnel` too. */
export type BuildComponent = 'ztunnel' | 'waypoint';

export function registerBuildInfo(registry: Registry, component: BuildComponent): void {
  new Gauge({
    name: 'istio_build', help: 'Weft build information (always 1): component and version (tag), as Istio\'s proxies report it.',
    labelNames: ['component', 'tag'], registers: [registry],
    // One build per node, not one per `ztunnel --workers` process.
    aggregator: 'first',
  }).set({ component, tag: VERSION }, 1);
}
