/**
 * Every proxied connection goes through the same three steps, whichever listener
 * accepted it: begin (tracked), established (counted as opened), end (untracked,
 * counted as closed or failed, one access-log line). Keeping them here means the
 * three listeners cannot drift in what they report.
 */
import type { Logger } from '../lib/log';
import { LOG_STRING_MAX, LogLimiter, truncateForLog } from '../lib/log-limiter';
import { formatHostPort } from '../lib/address';
import { workloadName, type ConnectionInit, type ConnectionRegistry, type TrackedConnection } from './connections';
import type { AuthzDecision } from './authorization';
import type { ResponseFlag, ZtunnelMetrics } from './metrics';
import { Pipe, type PipeOptions, type PipeOutcome, type PipeSide } from '../hbone/pipe';
import type { PolicyWatcher } from './policy-watch';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import type { SpanRecord } from '../telemetry/types';
import { DESTINATION_SERVICE_ATTRIBUTE } from '../telemetry/span-ring';
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from '../telemetry/trace-context';
import type { Tracer } from '../telemetry/tracer';
import { keepConnectionLine, tapConnection } from './connection-telemetry';

export interface LifecycleDeps {
  connections: ConnectionRegistry;
  metrics?: ZtunnelMetrics;
  /** Spans, the live tap and access-log volume (src/telemetry); absent: no spans, no tap. */
  telemetry?: ProxyTelemetry;
  /** Receives one `connection complete` line per connection (refused ones rate-limited). */
  logger: Logger;
  /**
   * Limits the access-log lines of connections that never got established: any pod
   * can cause those as fast as it can connect. Default: a limiter of its own.
   */
  logLimiter?: LogLimiter;
}

/** Longest `reason` in an access-log line: it may quote peer-sent text (an :authority). */
const REASON_MAX = 2 * LOG_STRING_MAX;

export interface EndResult {
  /** '-' for a clean end; otherwise the class of failure. */
  flag: ResponseFlag;
  /** Human explanation (the WeftError message, the deciding policy, ...); never a metric label. */
  reason?: string;
}

export class ConnectionLifecycle {
  readonly connections: ConnectionRegistry;
  private readonly metrics: ZtunnelMetrics | undefined;
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly tracer: Tracer | undefined;
  private readonly telemetry: ProxyTelemetry | undefined;
  /** Live connections begun by this lifecycle's listener (the registry is shared by all). */
  private readonly mine = new Set<TrackedConnection>();

  constructor(deps: LifecycleDeps) {
    this.connections = deps.connections;
    this.metrics = deps.metrics;
    this.log = deps.logger;
    this.limiter = deps.logLimiter ?? new LogLimiter();
    this.tracer = deps.telemetry?.tracer;
    this.telemetry = deps.telemetry;
    this.metrics?.observe(deps.connections);
  }

  /**
   * Tracks a new connection and gives it its trace: `traceparent` is the CONNECT's
   * (inbound HBONE): its trace id is kept and its decision followed, sampled or not, and
   * its span is the parent. A captured TCP connection, or a CONNECT without a valid
   * traceparent, starts a new trace, sampled at the ratio. Unsampled, a connection costs
   * a trace id from the random pool and no span object.
   */
  begin(init: ConnectionInit, traceparent?: string | string[]): TrackedConnection {
    const c = this.connections.add(init);
    this.mine.add(c);
    const parent = traceparent === undefined ? undefined : parseTraceparent(traceparent);
    c.traceId = parent?.traceId ?? newTraceId();
    // Named at the end, when the protocol and destination are known.
    if (this.tracer?.decide(parent?.sampled)) {
      c.span = this.tracer.start(c.traceId, parent?.parentId, init.direction, init.direction === 'outbound' ? 'client' : 'server');
    }
    return c;
  }

  /**
   * The traceparent an outbound tunnel's CONNECT carries, sampled or not, so the peer's
   * inbound line names the same trace: the connection's span when sampled, else a fresh
   * span id with the sampled flag off (the peer then records no span either).
   */
  traceparent(c: TrackedConnection): string {
    return c.span ? formatTraceparent(c.traceId, c.span.spanId, true) : formatTraceparent(c.traceId, newSpanId(), false);
  }

  /** Closes every live connection this lifecycle began (listener shutdown). */
  terminateAll(why: string): void {
    for (const c of [...this.mine]) c.terminate?.(why);
  }

  /** Connections begun here and not yet ended. */
  get live(): number {
    return this.mine.size;
  }

  /**
   * Joins an authorized connection to its upstream and keeps it under the policy
   * watcher until it ends: a registry change that now denies it closes it, and it ends
   * as DENY with the deciding policy in the access log. Both inbound listeners use it.
   */
  pipeUnderPolicy(c: TrackedConnection, downstream: PipeSide, upstream: PipeSide, opts: {
    highWaterMark: number; policies: PolicyWatcher; recheck: () => AuthzDecision | undefined;
    /** Memory budget hook for backpressure pauses (PipeOptions.stall). */
    stall?: PipeOptions['stall'];
    /** Called once when the pipe ended, before the access-log line. */
    onDone?: () => void;
  }): void {
    let revokedBy: AuthzDecision | undefined;
    const pipe = new Pipe(downstream, upstream, {
      highWaterMark: opts.highWaterMark,
      counters: c.counters,
      ...(opts.stall ? { stall: opts.stall } : {}),
      onDone: (outcome) => {
        unregister();
        opts.onDone?.();
        this.end(c, revokedBy ? { flag: 'DENY', reason: `closed: ${revokedBy.reason}` } : endResult(outcome));
      },
    });
    const unregister = opts.policies.add({
      recheck: opts.recheck,
      revoke: (d) => {
        revokedBy = d;
        this.log.warn({ connection: c.id, direction: c.direction, protocol: c.protocol, policy: d.policy, reason: d.reason },
          'closing live connection: authorization now denies it');
        pipe.abort();
      },
    });
    c.terminate = (why) => pipe.abort(why);
  }

  established(c: TrackedConnection): void {
    if (c.established) return;
    c.established = true;
    this.metrics?.connectionOpened(c);
  }

  /** Idempotent: the first call wins (a reset after a deny must not log twice). */
  end(c: TrackedConnection, result: EndResult): void {
    if (ended.has(c)) return;
    ended.add(c);
    this.mine.delete(c);
    this.connections.remove(c);
    if (c.established) this.metrics?.connectionClosed(c, result.flag);
    else this.metrics?.connectionFailed(c, result.flag);
    const line: Record<string, unknown> = {
      'src.addr': formatHostPort(c.src.ip, c.src.port),
      'dst.addr': formatHostPort(c.dst.ip, c.dst.port),
      direction: c.direction,
      protocol: c.protocol,
      bytes_sent: c.counters.sent,
      bytes_recv: c.counters.received,
      duration_ms: Date.now() - c.startedAt,
    };
    if (c.src.workload) {
      line['src.workload'] = c.src.workload.record.name;
      line['src.namespace'] = c.src.workload.record.namespace;
    }
    if (c.src.identity) line['src.identity'] = c.src.identity;
    if (c.dst.hboneAddr) line['dst.hbone_addr'] = c.dst.hboneAddr;
    if (c.dst.service) line['dst.service'] = c.dst.service;
    if (c.dst.waypoint) line['dst.waypoint'] = c.dst.waypoint;
    if (c.dst.workload) {
      line['dst.workload'] = c.dst.workload.record.name;
      line['dst.namespace'] = c.dst.workload.record.namespace;
    }
    if (c.dst.identity) line['dst.identity'] = c.dst.identity;
    if (c.tunnelId !== undefined) line.tunnel = c.tunnelId;
    if (result.flag !== '-') line.error = result.flag;
    if (result.reason) line.reason = truncateForLog(result.reason, REASON_MAX);
    line.trace_id = c.traceId;
    if (c.span) this.endSpan(c, c.span, result.flag);
    const telemetry = this.telemetry;
    if (telemetry?.tap.active) tapConnection(telemetry, c, result.flag);
    // Access-log sampling and per-namespace levels (connection-telemetry.ts); metrics counted it above.
    if (telemetry && !keepConnectionLine(telemetry, c, result.flag, c.span !== undefined)) return;
    if (c.established) {
      this.log.info(line, 'connection complete');
      return;
    }
    // Refused or failed before any byte moved: every one is counted in the metrics, but
    // only a few lines per flag are written (a loop or a scan would write thousands).
    // A loop is a misconfiguration or an attack, and a Service whose waypoint cannot take
    // traffic is an outage the operator must fix: both are warnings.
    // The key is a direction and a flag, both from fixed sets.
    const level = result.flag === 'LOOP' || result.flag === 'NO_WAYPOINT' ? 'warn' : 'info';
    this.limiter.log(this.log, level, `${c.direction}:${result.flag}`, line, 'connection complete');
  }

  /** The connection's facts onto its span (the access log's, minus the free-text reason), then the sinks. */
  private endSpan(c: TrackedConnection, span: SpanRecord, flag: ResponseFlag): void {
    const dst = c.dst.serviceHost ?? formatHostPort(c.dst.ip, c.dst.port);
    span.name = `${c.protocol === 'HBONE' ? 'tunnel' : 'connection'} ${c.direction} ${dst}`;
    const a = span.attributes;
    a['network.transport'] = 'tcp';
    a['weft.protocol'] = c.protocol;
    a['weft.direction'] = c.direction;
    a['source.address'] = c.src.ip;
    a['source.port'] = c.src.port;
    a['destination.address'] = c.dst.ip;
    a['destination.port'] = c.dst.port;
    const srcName = workloadName(c.src.workload);
    if (srcName) a['weft.source_workload'] = srcName;
    if (c.src.identity) a['weft.source_principal'] = c.src.identity;
    const dstName = workloadName(c.dst.workload);
    if (dstName) a['weft.destination_workload'] = dstName;
    if (c.dst.identity) a['weft.destination_principal'] = c.dst.identity;
    if (c.dst.service) a[DESTINATION_SERVICE_ATTRIBUTE] = c.dst.service;
    if (c.dst.waypoint) a['weft.waypoint'] = c.dst.waypoint;
    a['weft.bytes_sent'] = c.counters.sent;
    a['weft.bytes_received'] = c.counters.received;
    a['weft.response_flags'] = flag;
    this.tracer!.end(span, flag === '-' ? undefined : flag);
  }
}

const ended = new WeakSet<TrackedConnection>();

/** How a finished pipe is reported. */
export function endResult(outcome: PipeOutcome): EndResult {
  switch (outcome.error) {
    case undefined: return { flag: '-' };
    case 'ABORTED': return { flag: 'ABORTED', reason: outcome.detail ? `closed by the proxy: ${outcome.detail}` : 'closed by the proxy' };
    default: return outcome.detail ? { flag: outcome.error, reason: outcome.detail } : { flag: outcome.error };
  }
}
