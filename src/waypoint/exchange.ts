/**
 * One request through the waypoint, the same for HTTP/1.1 and h2c: headers cleaned, the
 * router asked once, then either its direct response sent or its plan executed, and one
 * access-log line plus one observer call with the same facts at the end. The protocol
 * front ends (http1.ts, http2.ts) supply a Downstream: how to read the request and how
 * to write a response in their version.
 */
import type { Readable } from 'node:stream';
import type { Clock } from '../lib/clock';
import { Deadline } from '../lib/deadline';
import type { Logger } from '../lib/log';
import type { Admission, Admitted } from './admission';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import type { ExchangeLoad } from './load-gauges';
import { sampleLatency } from './admission';
import { ReplayableBody } from './body';
import type { RequestAuthorizer } from './authorizer';
import type { L7Config } from './config';
import { forward, type Mirrors } from './forward';
import { addForwarded, applyHeaderEdits, first, stripHopByHop } from './headers';
import { traceRequest } from '../telemetry/tracer';
import { RequestSpans, type WorkloadLookup } from './tracing';
import { keepAccessLine, tapRequest } from './request-telemetry';
import type { UpstreamClient, UpstreamResponse } from './upstream';
import type {
  DirectResponse, HeaderMap, RequestFacts, RequestObserver, RequestRecord, RequestRouter, RequestSlots, ResponseFlag, RouteDecision, StreamContext, UpstreamDialer,
} from './types';

/** A request as a protocol front end received it, and how to answer it. */
export interface Downstream {
  protocol: 'http1' | 'h2c';
  ctx: StreamContext;
  method: string;
  authority: string;
  /** Request target as sent: path and query. */
  target: string;
  /** Request headers as received (lower-case names). */
  headers: HeaderMap;
  /** Whether a body follows the head. */
  hasBody: boolean;
  body: Readable;
  /** Aborted when the client went away. */
  gone: AbortSignal;
  /** Sends a response the waypoint makes itself. */
  sendLocal(status: number, headers: Record<string, string>, body: string): void;
  /** Streams an upstream response; resolves false when it was cut before its end. */
  sendUpstream(res: UpstreamResponse, headers: HeaderMap): Promise<boolean>;
  /** Response body bytes written so far. */
  responseBytes(): number;
  /** The status the front end answered itself after the request's head was handed over (a body that failed to parse). */
  refused?(): number | undefined;
}

export interface ExchangeDeps {
  router: RequestRouter;
  /** L7 authorization, asked before the router (authorizer.ts); absent: every request is let on. */
  authorizer?: RequestAuthorizer;
  clients: { http1: UpstreamClient; h2c: UpstreamClient };
  /** For connections of their own (WebSocket). */
  dialer: UpstreamDialer;
  mirrors: Mirrors;
  config: Readonly<L7Config>;
  clock: Clock;
  logger: Logger;
  observer?: RequestObserver;
  /** [0, 1): the retry backoff's jitter (Math.random when absent). */
  random?: () => number;
  /** TrafficPolicy faults, rate limits and load shedding; absent: every plan is forwarded as is. */
  admission?: Admission;
  /** Spans, the live tap and access-log volume (src/telemetry); absent: no spans, no tap. */
  telemetry?: ProxyTelemetry;
  /** Workload names for the spans' source and destination (the registry view); absent: addresses only. */
  workloads?: WorkloadLookup;
  /** Requests in flight, for the saturation gauge (load-gauges.ts); absent: not counted. */
  load?: ExchangeLoad;
}

/** Path and query of a request target (origin-form, or absolute-form from a proxy-style client). */
export function splitTarget(target: string): { path: string; query: string } {
  let t = target;
  if (!t.startsWith('/') && t !== '*') {
    try {
      const u = new URL(t);
      t = u.pathname + u.search;
    } catch {
      t = `/${t}`;
    }
  }
  const q = t.indexOf('?');
  return q < 0 ? { path: t, query: '' } : { path: t.slice(0, q), query: t.slice(q + 1) };
}

/**
 * The target sent upstream: as received in origin form; an absolute-form one (a
 * proxy-style client) as the path and query the route matched, so the upstream is not
 * told of a host other than the authority routed on (RFC 9112 §3.2.2).
 */
function upstreamTarget(target: string, facts: Pick<RequestFacts, 'path' | 'query'>): string {
  if (target.startsWith('/') || target === '*') return target;
  return facts.query ? `${facts.path}?${facts.query}` : facts.path;
}

/**
 * A route's header edits never reframe a message: its own Content-Length (or none) is
 * kept and Transfer-Encoding is the wire code's. An edited length would make the next
 * hop read the body's bytes as another message (smuggling on a shared connection).
 */
function ownFraming(edited: HeaderMap, own: HeaderMap): HeaderMap {
  delete edited['transfer-encoding'];
  const length = own['content-length'];
  if (length === undefined) delete edited['content-length'];
  else edited['content-length'] = length;
  return edited;
}

/** What the router and the upstream see of a request's headers (before the plan's edits). */
export function requestHeaders(down: Pick<Downstream, 'headers' | 'protocol'>): HeaderMap {
  const h = stripHopByHop(down.headers, { keepTeTrailers: true });
  delete h.host;
  // The front end answered any `Expect: 100-continue` already; the upstream must not wait for it.
  delete h.expect;
  return h;
}

/** Facts for the router: the stripped headers, the path and query split. */
export function requestFacts(down: Downstream, headers: HeaderMap): RequestFacts {
  const { path, query } = splitTarget(down.target);
  return { method: down.method, authority: down.authority, path, query, headers, protocol: down.protocol, source: down.ctx.source, destination: down.ctx.destination };
}

/** Asks the router; a throw is a 500 (the route logic failed, not the request). */
export function decide(router: RequestRouter, facts: RequestFacts, logger: Logger): RouteDecision {
  try {
    return router.route(facts);
  } catch (err) {
    logger.error({ err: (err as Error).message, authority: facts.authority, path: facts.path }, 'route logic failed; answering 500');
    return { kind: 'respond', status: 500, body: 'internal error in the waypoint route logic\n', responseFlag: '-' };
  }
}

/**
 * Authorization, then the router: a denied request (authorizer.ts) never reaches the
 * route logic or an upstream. Every entry point (exchange, WebSocket) decides here.
 */
export function authorizeThenDecide(deps: Pick<ExchangeDeps, 'authorizer' | 'router' | 'logger'>, facts: RequestFacts, grpc: boolean): RouteDecision {
  return deps.authorizer?.check(facts, grpc) ?? decide(deps.router, facts, deps.logger);
}

export function directFlag(d: DirectResponse): ResponseFlag {
  return d.responseFlag ?? (d.status === 404 ? 'NR' : '-');
}

export async function handleExchange(deps: ExchangeDeps, down: Downstream): Promise<void> {
  const start = deps.clock.now();
  const headers = requestHeaders(down);
  const tracer = deps.telemetry?.tracer;
  const trace = traceRequest(headers, tracer);
  // Span objects only for a sampled trace: an unsampled request pays the header check above.
  const spans = trace.sampled && tracer ? new RequestSpans(tracer, trace, down.method, down.ctx.destination.service) : undefined;
  const facts = requestFacts(down, headers);
  const grpc = isGrpcMessage(down.headers);
  const decision = authorizeThenDecide(deps, facts, grpc);
  const record: RequestRecord = {
    protocol: down.protocol, grpc, method: down.method, authority: down.authority, path: facts.path, status: 0, durationMs: 0,
    route: decision.route, attempts: 0, sourceAddress: down.ctx.source.address, sourceIdentity: down.ctx.source.identity, destinationService: down.ctx.destination.service,
    traceId: trace.traceId, responseFlag: '-', requestBytes: 0, responseBytes: 0,
  };
  if (spans) {
    record.sampled = true;
    record.spanId = spans.server.spanId;
  }
  let body: ReplayableBody | null = null;
  let slots: RequestSlots | undefined;
  let admitted: Admitted | undefined;
  let latencyMs: number | undefined;
  if (deps.load) deps.load.inFlight++;
  try {
    if (decision.kind === 'respond') {
      down.body.resume();
      record.status = decision.status;
      record.responseFlag = directFlag(decision);
      record.grpcStatus = decision.headers?.['grpc-status'];
      down.sendLocal(decision.status, decision.headers ?? {}, decision.body ?? '');
      return;
    }
    let plan = decision;
    // One lookup for a Service without a TrafficPolicy; see admission.ts.
    const gate = deps.admission?.gate(down.ctx.destination.service);
    if (gate) {
      const a = await deps.admission!.admit(gate, facts, record.grpc, down.gone);
      if (a.kind !== 'admit') {
        down.body.resume();
        if (a.kind === 'gone') {
          record.responseFlag = 'DC';
          return;
        }
        record.status = a.status;
        record.responseFlag = a.flag;
        if (a.grpcStatus !== undefined) record.grpcStatus = a.grpcStatus;
        down.sendLocal(a.status, a.headers, a.body);
        return;
      }
      admitted = a;
      if (a.delayed) record.responseFlag = 'DI';
    }
    record.backend = plan.backend;
    record.destinationIdentity = plan.upstream.identity;
    record.upstreamTarget = plan.upstream;
    if (plan.bulkhead) {
      const queuedAt = deps.clock.now();
      const slot = await takeSlot(plan.bulkhead, down.gone, plan.timeoutMs, deps.clock);
      if (slot !== 'slot') {
        down.body.resume();
        record.responseFlag = slot === 'gone' ? 'DC' : slot === 'timeout' ? 'UT' : 'UO';
        if (slot === 'overflow') {
          record.status = 503;
          down.sendLocal(503, { 'content-type': 'text/plain' }, `overflow: ${plan.backend ?? 'the Service'} has every request slot of its TrafficPolicy connectionPool taken and its pending queue full\n`);
        } else if (slot === 'timeout') {
          record.status = 504;
          down.sendLocal(504, { 'content-type': 'text/plain' }, 'upstream request timeout\n');
        }
        return;
      }
      slots = plan.bulkhead;
      // The route's timeout covers the whole request, the wait for a slot included (as
      // Envoy's covers the wait for a pooled connection): what is left goes to forward().
      const waited = deps.clock.now() - queuedAt;
      if (plan.timeoutMs && waited > 0) plan = { ...plan, timeoutMs: Math.max(1, plan.timeoutMs - waited) };
    }
    const up = ownFraming(applyHeaderEdits({ ...headers }, plan.requestHeaders), headers);
    addForwarded(up, down.ctx.source);
    // Mirrors are children of the server span; each attempt puts its own span's id in.
    if (spans) up.traceparent = spans.traceparent();
    // Copies are kept only when they can be used (a retry, a mirror); otherwise the
    // first byte overflows a zero cap and nothing is held.
    const cap = plan.retry || plan.mirrors?.length ? deps.config.retryBufferBytes : 0;
    // An HTTP/1.1 request goes to an HTTP/1.1 upstream connection, which reads an uncopied body directly (body.ts).
    body = down.hasBody ? new ReplayableBody(down.body, cap, down.protocol === 'http1') : null;
    if (!down.hasBody) down.body.resume();
    const client = deps.clients[down.protocol];
    const fwd = { method: down.method, path: plan.path ?? upstreamTarget(down.target, facts), authority: plan.authority ?? down.authority, headers: up, body, client };
    if (plan.mirrors?.length) deps.mirrors.fire(fwd, plan);
    const sentAt = admitted ? deps.clock.now() : 0;
    const result = await forward({ ...fwd, downstreamGone: down.gone, ...(spans ? { spans } : {}) }, plan, deps.clock, deps.random);
    if (admitted) latencyMs = sampleLatency(result.kind === 'local' ? result.status : result.res.status, result.kind === 'local', deps.clock.now() - sentAt);
    record.attempts = result.attempts;
    if (result.retryRefused) record.retryRefused = result.retryRefused;
    record.upstream = result.upstream;
    // An injected delay stays visible unless the forward itself has more to say.
    if (result.flag !== '-' || record.responseFlag !== 'DI') record.responseFlag = result.flag;
    if (result.kind === 'local') {
      record.status = result.status;
      if (result.status > 0 && !down.gone.aborted) {
        down.sendLocal(result.status, {}, result.status === 504 ? 'upstream request timeout\n' : 'no healthy upstream\n');
      }
      return;
    }
    const res = result.res;
    record.status = res.status;
    record.grpcStatus = first(res.headers['grpc-status']);
    const out = ownFraming(applyHeaderEdits(stripHopByHop(res.headers), plan.responseHeaders), res.headers);
    const complete = await down.sendUpstream(res, out);
    if (!complete) record.responseFlag = down.gone.aborted ? 'DC' : 'UC';
    record.grpcStatus ??= first(res.trailers()?.['grpc-status']);
  } catch (err) {
    deps.logger.error({ err: (err as Error).message }, 'request handling failed');
  } finally {
    if (deps.load) deps.load.inFlight--;
    slots?.leave();
    admitted?.done(latencyMs);
    const refused = down.refused?.();
    if (refused) {
      record.status = refused;
      record.responseFlag = 'DPE';
    }
    record.durationMs = deps.clock.now() - start;
    record.requestBytes = body?.bytes ?? 0;
    record.responseBytes = down.responseBytes();
    spans?.end(record, deps.workloads);
    report(deps, record);
  }
}

/**
 * A slot of the backend Service's bulkhead: free now, after a wait in its queue, or
 * none: the queue is full (`overflow`, answered 503 `UO` at once), the client left
 * while waiting (`gone`), or the route's request timeout passed in the queue (`timeout`,
 * answered 504 `UT`).
 */
async function takeSlot(slots: RequestSlots, gone: AbortSignal, timeoutMs: number | undefined, clock: Clock): Promise<'slot' | 'overflow' | 'gone' | 'timeout'> {
  if (slots.enter()) return 'slot';
  // A timer only for a request that has to queue (and has a route timeout to keep).
  const deadline = timeoutMs ? new Deadline(gone, timeoutMs, clock) : undefined;
  try {
    const waiting = slots.wait(deadline ? deadline.signal : gone);
    if (!waiting) return 'overflow';
    if (await waiting) return 'slot';
    return deadline?.expired ? 'timeout' : 'gone';
  } finally {
    deadline?.dispose();
  }
}

/** A gRPC request or response: content-type application/grpc (or +proto, +json, ...). */
export function isGrpcMessage(h: HeaderMap): boolean {
  return (first(h['content-type']) ?? '').startsWith('application/grpc');
}

/** The access-log line and the observer call of one finished request. */
export function report(deps: Pick<ExchangeDeps, 'logger' | 'observer' | 'telemetry' | 'workloads'>, record: RequestRecord): void {
  const telemetry = deps.telemetry;
  // The line's object is built only when it is written (a waypoint at `warn` skips it,
  // and access-log sampling and per-namespace levels may: request-telemetry.ts).
  if (deps.logger.isLevelEnabled('info') && (!telemetry || keepAccessLine(telemetry, record, deps.workloads))) deps.logger.info({
    protocol: record.grpc ? 'grpc' : record.protocol, method: record.method, authority: record.authority, path: record.path, status: record.status,
    duration_ms: record.durationMs, route: record.route, backend: record.backend, attempts: record.attempts, upstream: record.upstream,
    source_identity: record.sourceIdentity, destination_identity: record.destinationIdentity, trace_id: record.traceId,
    response_flags: record.responseFlag, bytes_received: record.requestBytes, bytes_sent: record.responseBytes, grpc_status: record.grpcStatus,
  }, 'access');
  if (telemetry?.tap.active) tapRequest(telemetry, record, deps.workloads);
  try {
    deps.observer?.onRequest(record);
  } catch (err) {
    deps.logger.warn({ err: (err as Error).message }, 'request observer threw');
  }
}
