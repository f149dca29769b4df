/**
 * Exports sampled spans to an OpenTelemetry collector over OTLP/gRPC (@grpc/grpc-js and
 * the vendored opentelemetry-proto files, otlp-proto.ts), like the OpenTelemetry SDKs'
 * batch span processor: spans wait in a bounded queue and leave in batches (a full batch
 * at once, else what is there every interval), one export in flight at a time, each with
 * a deadline.
 *
 * The proxy's data path only ever pays onSpan: an array push, or a counter increment
 * when the queue is full. A collector that is down or slow costs dropped spans, never
 * time: the queue does not grow past its bound, a failed batch is dropped (counted) and
 * not retried, and after failures the next export waits a backoff (src/lib/backoff.ts)
 * so an unreachable collector is not hammered. What went wrong is logged one line a
 * minute at most, with the spans dropped since the last line.
 */
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { backoffDelay } from '../lib/backoff';
import { realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { LogLimiter, truncateForLog } from '../lib/log-limiter';
import { exportRequest, traceService, type ExportTraceServiceResponse } from './otlp-proto';
import { otlpTraces } from './otlp-shape';
import type { SpanRecord, SpanSink } from './types';

export interface OtlpExporterOptions {
  /** http(s)://host:port of the collector's OTLP/gRPC receiver (port 4317 when absent). */
  endpoint: string;
  /** `waypoint demo/waypoint` or `ztunnel node-1` (resource attributes come from it). */
  proxy: string;
  registry: Registry;
  logger: Logger;
  /** Spans per export. Default 512 (the SDKs' maxExportBatchSize). */
  batchSize?: number;
  /** Spans waiting at most; more are dropped. Default 2048 (the SDKs' maxQueueSize). */
  maxQueueSpans?: number;
  /** A partial batch leaves after this long. Default 1 s (short, so `weft traces` and the backend agree soon). */
  intervalMs?: number;
  /** Deadline of one export. Default 5 s. */
  timeoutMs?: number;
  /** Timers and the log rate (tests). */
  clock?: Clock;
  /** Backoff jitter (tests). */
  random?: () => number;
}

/** Why spans were dropped: the queue was full, their export failed, or the collector rejected them (partial success). */
export type OtlpDropReason = 'queue_full' | 'export_failed' | 'rejected';

/** Export delay after failures: 1 s doubling to 1 min, never beyond (a collector that comes back is used within a minute). */
const BACKOFF = { initialMs: 1000, maxMs: 60_000, jitter: 'below' as const };

/** How long close() waits for queued spans to leave. */
const CLOSE_WAIT_MS = 2000;

/** host:port for grpc-js from the validated endpoint URL (options.ts accepts http: and https: only). */
export function grpcTarget(endpoint: string): { target: string; secure: boolean } {
  const url = new URL(endpoint);
  return { target: `${url.hostname}:${url.port || '4317'}`, secure: url.protocol === 'https:' };
}

type TraceServiceClient = grpc.Client & {
  Export(request: unknown, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null, response: ExportTraceServiceResponse) => void): grpc.ClientUnaryCall;
};

/** What the exporter counts, as plain numbers: a prom-client increment costs ~0.5 µs, too much for onSpan's drop path. */
interface OtlpCounts {
  exported: number;
  dropped: Record<OtlpDropReason, number>;
  queued: number;
}

/** The counts as metrics, brought up to date when scraped. */
function otlpMetrics(registry: Registry, counts: () => OtlpCounts): Counter<'code'> {
  const registers = [registry];
  let exportedSeen = 0;
  new Counter({
    name: 'weft_otlp_spans_exported_total', help: 'Spans the OTLP collector accepted.', registers,
    collect(this: Counter) {
      const now = counts().exported;
      this.inc(now - exportedSeen);
      exportedSeen = now;
    },
  });
  const droppedSeen: Record<OtlpDropReason, number> = { queue_full: 0, export_failed: 0, rejected: 0 };
  new Counter({
    name: 'weft_otlp_spans_dropped_total', help: 'Spans not exported: queue_full (the collector is slower than the spans made), export_failed, rejected (by the collector).',
    labelNames: ['reason'], registers,
    collect(this: Counter<'reason'>) {
      const now = counts().dropped;
      for (const reason of Object.keys(droppedSeen) as OtlpDropReason[]) {
        this.inc({ reason }, now[reason] - droppedSeen[reason]);
        droppedSeen[reason] = now[reason];
      }
    },
  });
  new Gauge({
    name: 'weft_otlp_queue_spans', help: 'Spans waiting for export.', registers,
    collect(this: Gauge) {
      this.set(counts().queued);
    },
  });
  return new Counter({
    name: 'weft_otlp_export_failures_total', help: 'OTLP exports that failed, by gRPC status (UNAVAILABLE: unreachable; DEADLINE_EXCEEDED: too slow).',
    labelNames: ['code'], registers,
  });
}

export class OtlpExporter implements SpanSink {
  private readonly batchSize: number;
  private readonly maxQueue: number;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly clock: Clock;
  private readonly client: TraceServiceClient;
  private readonly failuresByCode: Counter<'code'>;
  private readonly counts: OtlpCounts = { exported: 0, dropped: { queue_full: 0, export_failed: 0, rejected: 0 }, queued: 0 };
  private readonly logLimit: LogLimiter;
  private queue: SpanRecord[] = [];
  private timer: unknown;
  private timerDue = Infinity;
  private inFlight: Promise<void> | undefined;
  /** Consecutive failed exports (0: the last one went through). */
  private failures = 0;
  /** Spans dropped since the last log line (any reason). */
  private droppedSinceLog = 0;
  private closed = false;

  constructor(readonly options: OtlpExporterOptions) {
    this.batchSize = Math.max(1, options.batchSize ?? 512);
    this.maxQueue = Math.max(this.batchSize, options.maxQueueSpans ?? 2048);
    this.intervalMs = Math.max(1, options.intervalMs ?? 1000);
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 5000);
    this.clock = options.clock ?? realClock;
    this.logLimit = new LogLimiter({ burst: 1, intervalMs: 60_000, clock: this.clock });
    this.failuresByCode = otlpMetrics(options.registry, () => ({ ...this.counts, queued: this.queue.length }));
    const { target, secure } = grpcTarget(options.endpoint);
    const Service = traceService();
    // The channel connects lazily, on the first export: a proxy with an unreachable collector starts as fast as one without.
    this.client = new Service(target, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure()) as unknown as TraceServiceClient;
  }

  /** Spans waiting for export now. */
  get queued(): number {
    return this.queue.length;
  }

  onSpan(span: SpanRecord): void {
    if (this.closed) return;
    if (this.queue.length >= this.maxQueue) {
      this.counts.dropped.queue_full++;
      this.droppedSinceLog++;
      return;
    }
    this.queue.push(span);
    if (this.inFlight !== undefined) return; // its end schedules the next export
    // A full batch leaves at once (on a timer, not on this stack); after failures, a backoff armed already stands.
    if (this.failures === 0) this.schedule(this.queue.length >= this.batchSize ? 0 : this.intervalMs);
    else if (this.timer === undefined) this.schedule(this.backoff());
  }

  /**
   * Sends what is queued, then closes the channel. The wait is bounded as a whole: an
   * export in flight (or started before the bound) may run to its own deadline, but
   * shutdown does not wait for it past CLOSE_WAIT_MS.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    const waitMs = Math.min(this.timeoutMs, CLOSE_WAIT_MS);
    const until = Date.now() + waitMs;
    const drain = (async () => {
      await this.inFlight;
      while (this.queue.length > 0 && this.failures === 0 && Date.now() < until) await this.exportBatch();
    })();
    let timer: NodeJS.Timeout | undefined;
    // Wall-clock time, as the gRPC deadlines (the injected clock drives only the batching timers).
    const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs); });
    await Promise.race([drain, bound]);
    clearTimeout(timer);
    this.client.close();
  }

  /** Arms the export timer for `ms` from now, unless it is armed to fire sooner. */
  private schedule(ms: number): void {
    const due = this.clock.now() + ms;
    if (this.timer !== undefined && this.timerDue <= due) return;
    this.clearTimer();
    this.timerDue = due;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerDue = Infinity;
      if (this.inFlight === undefined && this.queue.length > 0) void this.exportBatch();
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
  }

  private exportBatch(): Promise<void> {
    const batch = this.queue.length <= this.batchSize ? this.queue : this.queue.slice(0, this.batchSize);
    this.queue = this.queue.length <= this.batchSize ? [] : this.queue.slice(this.batchSize);
    const done = this.send(batch).then(
      (response) => this.succeeded(batch.length, response),
      (err: grpc.ServiceError) => this.failed(batch.length, err),
    ).finally(() => {
      this.inFlight = undefined;
      if (!this.closed && this.queue.length > 0) {
        this.schedule(this.failures > 0 ? this.backoff() : this.queue.length >= this.batchSize ? 0 : this.intervalMs);
      }
    });
    this.inFlight = done;
    return done;
  }

  private backoff(): number {
    return backoffDelay(this.failures, BACKOFF, this.options.random);
  }

  private send(batch: SpanRecord[]): Promise<ExportTraceServiceResponse> {
    return new Promise((resolve, reject) => {
      // grpc-js measures deadlines on the wall clock, so this one is real time, not this.clock's.
      this.client.Export(exportRequest(otlpTraces(batch)), { deadline: new Date(Date.now() + this.timeoutMs) },
        (err, response) => (err ? reject(err) : resolve(response)));
    });
  }

  private succeeded(spans: number, response: ExportTraceServiceResponse | undefined): void {
    this.failures = 0;
    const rejected = Math.min(spans, Number(response?.partialSuccess?.rejectedSpans ?? 0));
    this.counts.exported += spans - rejected;
    if (rejected > 0) {
      this.counts.dropped.rejected += rejected;
      this.droppedSinceLog += rejected;
    }
    if (this.droppedSinceLog > 0) {
      this.note('warn', { rejected, reason: truncateForLog(response?.partialSuccess?.errorMessage || undefined) },
        rejected > 0 ? 'OTLP collector rejected spans' : 'OTLP export queue full: spans dropped (the collector is slower than the spans made)');
    }
  }

  private failed(spans: number, err: grpc.ServiceError): void {
    this.failures++;
    const code = grpc.status[err.code] ?? 'UNKNOWN';
    this.failuresByCode.inc({ code });
    this.counts.dropped.export_failed += spans;
    this.droppedSinceLog += spans;
    this.note('warn', { code, error: truncateForLog(err.details || err.message), consecutiveFailures: this.failures },
      code === 'DEADLINE_EXCEEDED' ? 'OTLP export failed: the collector did not answer in time; spans dropped'
        : 'OTLP export failed: spans dropped (is the collector running and reachable?)');
  }

  /** One line a minute at most for the whole exporter, carrying the spans dropped since the last one. */
  private note(level: 'warn', obj: Record<string, unknown>, msg: string): void {
    if (this.logLimit.log(this.options.logger, level, 'otlp', { endpoint: this.options.endpoint, ...obj, dropped: this.droppedSinceLog }, msg)) {
      this.droppedSinceLog = 0;
    }
  }
}
