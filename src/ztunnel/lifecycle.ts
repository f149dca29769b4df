/**
 * Every proxied connection goes through the same three steps, whichever listener
 * accepted it: begin (tracked), established (counted as opened), end (untracked,
 * counted as closed or failed, one access-log line). Keeping them here means the
 * three listeners cannot drift in what they report.
 */
import type { Logger } from '../lib/log';
import { LOG_STRING_MAX, LogLimiter, truncateForLog } from '../lib/log-limiter';
import { formatHostPort } from '../lib/address';
import type { ConnectionInit, ConnectionRegistry, TrackedConnection } from './connections';
import type { AuthzDecision } from './authorization';
import type { ResponseFlag, ZtunnelMetrics } from './metrics';
import { Pipe, type PipeOptions, type PipeOutcome, type PipeSide } from '../hbone/pipe';
import type { PolicyWatcher } from './policy-watch';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';

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
  /** Live connections begun by this lifecycle's listener (the registry is shared by all). */
  private readonly mine = new Set<TrackedConnection>();

  constructor(deps: LifecycleDeps) {
    this.connections = deps.connections;
    this.metrics = deps.metrics;
    this.log = deps.logger;
    this.limiter = deps.logLimiter ?? new LogLimiter();
    this.metrics?.observe(deps.connections);
  }

  begin(init: ConnectionInit): TrackedConnection {
    const c = this.connections.add(init);
    this.mine.add(c);
    return c;
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
