/**
 * The contracts of the waypoint's L7 data path: what the HBONE server hands over with
 * each accepted CONNECT stream (StreamContext), what the route logic answers per
 * request (RequestRouter → DirectResponse | ForwardPlan), how upstream connections are
 * opened (UpstreamDialer), and what is reported per request (RequestObserver).
 *
 * The route logic (src/gateway) decides; this module only executes decisions. The
 * router is consulted exactly once per request, so a request in flight finishes on the
 * plan it got even when the config changes under it.
 */
import type { Duplex } from 'node:stream';
import type { HeaderModifier } from '../gateway/types';
import type { RetryRefusal, RetryRules } from '../resilience/retry';
import type { HttpResponseFlag } from './metrics';

/** The application protocol a stream carries, decided per port or by sniffing. */
export type L7Protocol = 'http1' | 'h2c' | 'tcp';

/** A peer as the waypoint knows it. */
export interface Peer {
  /** IP address (no brackets for IPv6). */
  address: string;
  port: number;
  /** SPIFFE URI, e.g. spiffe://cluster.local/ns/demo/sa/client; absent for plaintext peers. */
  identity?: string;
}

/** The Service (and port) a stream was addressed to. */
export interface DestinationService {
  namespace: string;
  name: string;
  /** e.g. echo.demo.svc.cluster.local; used for logs and metrics only. */
  hostname?: string;
}

/** What the HBONE server knows about one accepted CONNECT stream. */
export interface StreamContext {
  /** The original client (from the `forwarded` header of a mesh peer, else the TLS peer). */
  source: Peer;
  /** The `:authority` of the CONNECT: the original VIP (or pod IP) and port. */
  destination: {
    address: string;
    port: number;
    /** The Service behind the VIP; absent when addressed to a pod IP. */
    service?: DestinationService;
    /** The Service port's `appProtocol`, if set. */
    appProtocol?: string;
    /** The Service port's `name`, if set. */
    portName?: string;
  };
}

/** A header list as Node's IncomingHttpHeaders: lower-case names. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** What the router sees of one request (after hop-by-hop headers were removed). */
export interface RequestFacts {
  method: string;
  /** Host header (HTTP/1.1) or `:authority` (HTTP/2), as sent. */
  authority: string;
  /** Path without the query, as sent (not decoded). */
  path: string;
  /** The raw query string without `?` ('' when none). */
  query: string;
  headers: HeaderMap;
  protocol: 'http1' | 'h2c';
  source: Peer;
  destination: StreamContext['destination'];
}

/** A response the waypoint makes itself: 404 (no route), 500 (invalid backend), 503, redirects. */
export interface DirectResponse {
  kind: 'respond';
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** For the access log: `ns/name` of the route (and rule) that decided, if any. */
  route?: string;
  /** Response flag for logs and metrics; default `NR` for a 404, `-` otherwise (use `UH` for a 503 without ready endpoints). */
  responseFlag?: ResponseFlag;
}

/** Where to send an attempt. */
export interface UpstreamTarget {
  /** IP (or host name for endpoints outside the mesh) and port to dial. */
  host: string;
  port: number;
  /** How to dial: HBONE to a mesh endpoint (with the waypoint's identity) or plain TCP. */
  transport: 'hbone' | 'tcp';
  /** The SPIFFE identity the endpoint must present (HBONE), also logged as the destination identity. */
  identity?: string;
}

/**
 * The retries of one request, resolved from the route rule's retry (GEP-1731) and the
 * Service's TrafficPolicy (src/resilience/retry.ts says how the two combine).
 */
export type RetryPolicy = RetryRules;

/** A request mirror: a copy is sent there, its response discarded. */
export interface MirrorTarget {
  upstream: UpstreamTarget;
  /** `ns/name` of the mirror backend, for logs. */
  backend?: string;
}

/** Forward the request; everything here is already computed by the route logic. */
export interface ForwardPlan {
  kind: 'forward';
  upstream: UpstreamTarget;
  /** `ns/name` (plus `#rule`) of the route that matched; for the access log. */
  route?: string;
  /** `ns/name:port` of the chosen backendRef; for the access log. */
  backend?: string;
  /** Rewritten authority (URLRewrite hostname); default: the request's. */
  authority?: string;
  /** Rewritten path with query (URLRewrite path); default: the request's. */
  path?: string;
  /** Request header edits (RequestHeaderModifier, rule then backendRef level). */
  requestHeaders?: HeaderModifier;
  /** Response header edits (ResponseHeaderModifier). */
  responseHeaders?: HeaderModifier;
  /** Per-attempt timeout (backendRequest), ms; 0 or absent = none. */
  attemptTimeoutMs?: number;
  /** Whole transaction incl. retries (request), ms; 0 or absent = none. */
  timeoutMs?: number;
  retry?: RetryPolicy;
  mirrors?: MirrorTarget[];
  /**
   * Per-attempt endpoint choice and outcome reports (TrafficPolicy: load balancing,
   * outlier detection, pools). Absent: every attempt goes to `upstream`.
   */
  targets?: AttemptTargets;
  /**
   * The backend Service's request slots (TrafficPolicy connectionPool): one is held from
   * before the first attempt until the response is sent; none free and the queue full is
   * a 503 `UO` at once. Absent: no limit.
   */
  bulkhead?: RequestSlots;
  /** The backend Service's per-connection limits for the upstream clients (connectionPool). */
  pool?: UpstreamPoolLimits;
}

/** A Service's request slots and their queue (src/resilience/pool.ts Bulkhead). */
export interface RequestSlots {
  /** Takes a free slot now; false: wait() for one. */
  enter(): boolean;
  /** undefined: the queue is full (overflow); else resolves true with a slot, false if `signal` aborted first. */
  wait(signal: AbortSignal): Promise<boolean> | undefined;
  /** Frees a slot taken by enter() or a wait() that resolved true. */
  leave(): void;
}

/** Limits of the upstream connections to each endpoint of a Service. */
export interface UpstreamPoolLimits {
  /** HTTP/1.1 connections held per endpoint; requests past it wait for one to come free. */
  maxConnections?: number | undefined;
  /** Requests a connection (HTTP/1.1) or session (HTTP/2) carries before it is replaced. */
  maxRequestsPerConnection?: number | undefined;
}

/** How one attempt ended, as the endpoint's health and latency trackers need it. */
export interface AttemptOutcome {
  /** The upstream's status, when a response head arrived. */
  status?: number;
  /** No response head: why. */
  failure?: 'connect' | 'reset' | 'timeout';
  /** From sending the request to the response head (or the failure). */
  latencyMs: number;
}

/**
 * The endpoints of one forwarded request, chosen attempt by attempt. The first attempt
 * goes to the plan's `upstream` (already chosen by the router); next() gives the target
 * of each retry, knowing which were tried, so a retry can go elsewhere.
 */
export interface AttemptTargets {
  /** The target for the next retry; undefined: none is usable now (the retry is not made). */
  next(tried: readonly UpstreamTarget[]): UpstreamTarget | undefined;
  /** Called once per attempt, when its outcome is known (response head, failure or timeout). */
  report(target: UpstreamTarget, outcome: AttemptOutcome): void;
  /**
   * Called when each attempt (the first too) is sent: requests in flight per endpoint
   * count from here. Every started attempt ends in exactly one report() or cancelled().
   */
  started?(target: UpstreamTarget): void;
  /** The attempt ended without an outcome that says anything of the endpoint (the downstream went away). */
  cancelled?(target: UpstreamTarget): void;
}

export type RouteDecision = DirectResponse | ForwardPlan;

/** The route logic, as the waypoint sees it. Called once per request; must not throw (a throw is answered 500). */
export interface RequestRouter {
  route(req: RequestFacts): RouteDecision;
}

/**
 * Opens a connection to an upstream: an HBONE CONNECT stream (src/hbone client) or a
 * TCP socket. The promise rejects when the endpoint cannot be reached; that is a
 * connection error (retried when the plan has a retry policy, else 503).
 */
export interface UpstreamDialer {
  dial(target: UpstreamTarget): Promise<Duplex>;
}

/**
 * Envoy's response flags, the fixed set the waypoint's metrics use (metrics.ts): labels
 * never carry error text. `DPE`: a request refused by the parser or a header limit.
 */
export type ResponseFlag = HttpResponseFlag;

/** The facts of one finished request: the access log line and the observer get the same. */
export interface RequestRecord {
  protocol: 'http1' | 'h2c';
  /** The request was gRPC (content-type application/grpc*): Istio's request_protocol `grpc`. */
  grpc: boolean;
  method: string;
  authority: string;
  path: string;
  /** Status sent downstream (0 if none was sent). */
  status: number;
  durationMs: number;
  route?: string;
  backend?: string;
  /** Tries made upstream (0 for direct responses). */
  attempts: number;
  /** A retriable answer went back as is because of a retry limit (budget, cross-hop cap, method rule). */
  retryRefused?: Exclude<RetryRefusal, 'not-retriable' | 'exhausted'>;
  /** host:port of the last attempt's upstream. */
  upstream?: string;
  /** The plan's upstream (the endpoint dialed), for metrics to find the destination workload. */
  upstreamTarget?: UpstreamTarget;
  /** The original client's address (StreamContext.source). */
  sourceAddress?: string;
  sourceIdentity?: string;
  /** The upstream's identity (the plan's target), if any. */
  destinationIdentity?: string;
  destinationService?: DestinationService;
  traceId: string;
  /** This waypoint recorded spans for the request (its trace is sampled). */
  sampled?: boolean;
  /** The waypoint's server span, when sampled. */
  spanId?: string;
  responseFlag: ResponseFlag;
  requestBytes: number;
  responseBytes: number;
  /** gRPC status, when the response carried one. */
  grpcStatus?: string;
}

/** Hook for metrics: told of every finished request. Must not throw. */
export interface RequestObserver {
  onRequest(record: RequestRecord): void;
}
