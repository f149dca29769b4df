/**
 * The contracts of Weft's observability (docs/observability.md): what a proxy records
 * (spans, tap events), what it serves on its metrics port beside /metrics, and what the
 * `weft` views (traces, tap, top, stat, graph, dashboard) compute from it. Shared by
 * the ztunnel, the waypoint, the CLI and the dashboard, so each has one shape to agree on.
 *
 * Nothing here carries secrets: paths are sent without their query (tokens live there),
 * and no header value is recorded.
 */

/** Paths served on every proxy's metrics port (15020), read-only, beside /metrics. */
export const TRACES_PATH = '/debug/traces';
export const TAP_PATH = '/debug/tap';

export type SpanKind = 'server' | 'client' | 'internal';

/**
 * One finished span, as a proxy keeps it in its ring buffer and hands it to its sinks
 * (the OTLP exporter). Times are Unix epoch milliseconds (fractional), so spans from
 * different proxies on one machine or a synced cluster line up in a waterfall.
 */
export interface SpanRecord {
  /** 32 lower-case hex digits (W3C trace-id). */
  traceId: string;
  /** 16 lower-case hex digits (W3C parent-id of the requests it makes). */
  spanId: string;
  /** The span this one is a child of (from the incoming traceparent, or this proxy's server span). */
  parentSpanId?: string;
  /** e.g. `GET echo.demo.svc.cluster.local/`, `attempt 2 198.19.2.3:8080`, `tunnel outbound`. */
  name: string;
  kind: SpanKind;
  startMs: number;
  endMs: number;
  /** The proxy that made it: `waypoint demo/waypoint` or `ztunnel node-1`; OTLP's service.name is derived from it. */
  proxy: string;
  /** OpenTelemetry semantic-convention names where one exists (http.request.method, http.response.status_code, ...). */
  attributes: Record<string, string | number | boolean>;
  /** Set when the span failed: the response flag or a short fixed reason (never peer-sent text). */
  error?: string;
}

/** Receives every finished, sampled span. Must not throw and must not block. */
export interface SpanSink {
  onSpan(span: SpanRecord): void;
}

/** Query of a proxy's span ring (`GET /debug/traces?service=&since=&trace=`). */
export interface TraceQuery {
  /** `namespace/name` of a destination Service; spans of traces that touched it. */
  service?: string;
  /** Only spans that ended at or after this epoch ms. */
  sinceMs?: number;
  /** One trace id. */
  traceId?: string;
  /** At most this many spans (newest kept). */
  limit?: number;
}

/**
 * What happened to a request or connection, for `weft tap` and the dashboard:
 * routed (answered by an upstream), retried (answered after more than one attempt),
 * denied (authorization), shed (load shedding), limited (rate limit), overflow (pool
 * full), faulted (fault injection), ejected (no endpoint left: all ejected or unready),
 * no_route (404 from the route table), failed (upstream error or timeout), cancelled
 * (the client went away).
 */
export const TAP_VERDICTS = ['routed', 'retried', 'denied', 'shed', 'limited', 'overflow', 'faulted', 'ejected', 'no_route', 'failed', 'cancelled'] as const;
export type TapVerdict = (typeof TAP_VERDICTS)[number];

export interface TapPeer {
  address?: string;
  workload?: string;
  namespace?: string;
  /** SPIFFE identity, when mTLS said who it is. */
  identity?: string;
}

/** One finished request (waypoint) or connection (ztunnel), as `GET /debug/tap` streams it (one JSON object per line). */
export interface TapEvent {
  /** ISO 8601, when it ended. */
  time: string;
  proxy: string;
  kind: 'request' | 'connection';
  verdict: TapVerdict;
  source: TapPeer;
  destination: TapPeer & {
    /** `namespace/name` of the addressed Service, if any. */
    service?: string;
  };
  /** Requests: method, authority and path (never the query). */
  method?: string;
  authority?: string;
  path?: string;
  status?: number;
  grpcStatus?: string;
  /** Envoy/Istio response flag (`-` when none). */
  responseFlag: string;
  durationMs: number;
  attempts?: number;
  /** Connections: direction and bytes. */
  direction?: 'inbound' | 'outbound';
  bytesSent?: number;
  bytesReceived?: number;
  traceId?: string;
  mtls: boolean;
}

/** What a tap subscriber asks for (`GET /debug/tap?namespace=&service=&path=&status=`). */
export interface TapFilter {
  /** Source or destination namespace. */
  namespace?: string;
  /** `namespace/name` or `name` of the destination Service. */
  service?: string;
  /** Path prefix. */
  path?: string;
  /** `5xx`, `4xx` or one status such as `503`. */
  status?: string;
}

/** A destination of an edge: a Service, or a workload reached by address. */
export interface EdgeEnd {
  namespace: string;
  /** Workload name (source) or Service name (destination); `unknown` when the proxy could not tell. */
  name: string;
}

/**
 * Golden signals of one edge (source workload → destination Service) over a window,
 * computed from two scrapes of the proxies' Istio-shaped metrics. Request fields are
 * null for edges seen only at L4 (ztunnel TCP metrics, no waypoint).
 */
export interface EdgeStats {
  source: EdgeEnd;
  destination: EdgeEnd;
  /** `http`, `grpc` or `tcp`. */
  protocol: string;
  /** Requests per second (null at L4). */
  rps: number | null;
  /** Non-5xx share in [0, 1] (null without requests). */
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  /** TCP connections opened per second (ztunnel). */
  connectionsPerSecond: number;
  /** Bytes per second, both directions (ztunnel). */
  bytesPerSecond: number;
  /** Every request/connection carried mTLS (connection_security_policy mutual_tls). */
  mtls: boolean;
  /** Which proxies reported it. */
  reporters: string[];
}

/** Saturation of one proxy (event-loop lag, memory, connections, pools, pending requests). */
export interface ProxySaturation {
  proxy: string;
  kind: 'ztunnel' | 'waypoint';
  /** Event-loop lag p99 (ms). */
  eventLoopLagP99Ms: number | null;
  residentMemoryBytes: number | null;
  /** Connections held open now (downstream + upstream). */
  connections: number | null;
  /** Requests in flight (waypoint). */
  inflightRequests: number | null;
  /** Requests waiting for a pool slot (waypoint bulkheads). */
  pendingRequests: number | null;
}

/** One reading of the whole mesh: what `weft top`, `weft graph` and the dashboard show. */
export interface MeshStats {
  /** ISO time of the second scrape. */
  at: string;
  windowSeconds: number;
  edges: EdgeStats[];
  proxies: ProxySaturation[];
  /** Proxies that did not answer, and why. */
  warnings: string[];
}
