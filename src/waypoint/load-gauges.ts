/**
 * The waypoint's saturation gauges (docs/observability.md, "Golden signals and
 * saturation"): requests in flight, client connections being served, upstream
 * connections held. Istio has no names for these (Envoy's are cluster stats), so they
 * are weft_*. The data path keeps plain numbers (one increment and one decrement per
 * request); the gauges read them at scrape time. No per-Service labels: the bulkheads'
 * and load shedding's own gauges say which Service waits (weft_waypoint_pool_requests,
 * weft_waypoint_concurrency_in_flight).
 */
import { Gauge, type Registry } from 'prom-client';

/** What the exchange counts while a request is being handled (ExchangeDeps.load). */
export interface ExchangeLoad {
  inFlight: number;
}

/** The waypoint's load as the gauges read it. */
export interface WaypointLoad {
  /** Requests between routing and the end of their response (waiting for a slot included). */
  inFlight: number;
  /** HBONE CONNECT streams being served: each is one client connection through the waypoint. */
  downstream: number;
  /** Connections to endpoints held (busy or idle in the pools), by upstream protocol. */
  upstream: { http1: number; h2c: number };
}

/** Registers the gauges on `registry`, read from `load()` at each scrape (undefined before the waypoint serves). */
export function registerLoadGauges(registry: Registry, load: () => WaypointLoad | undefined): void {
  const registers = [registry];
  new Gauge({
    name: 'weft_waypoint_requests_in_flight', help: 'Requests being handled now, from routing to the end of the response (waiting for a connectionPool slot included).',
    registers, collect(this: Gauge) { this.set(load()?.inFlight ?? 0); },
  });
  new Gauge({
    name: 'weft_waypoint_downstream_connections', help: 'Client connections (HBONE CONNECT streams) being served now.',
    registers, collect(this: Gauge) { this.set(load()?.downstream ?? 0); },
  });
  new Gauge({
    name: 'weft_waypoint_upstream_connections', help: 'Connections to endpoints held now (busy or idle in the pools), by upstream protocol (http1, h2c).',
    labelNames: ['protocol'], registers,
    collect(this: Gauge<'protocol'>) {
      const up = load()?.upstream ?? { http1: 0, h2c: 0 };
      this.set({ protocol: 'http1' }, up.http1);
      this.set({ protocol: 'h2c' }, up.h2c);
    },
  });
}
