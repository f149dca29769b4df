/**
 * Makes spans for one proxy: parent-based ratio sampling (a caller that sampled is
 * followed, one that did not is followed too; a new trace, or a caller that deferred,
 * is sampled at `sampling`), W3C traceparent/tracestate in and out (B3 accepted on
 * input, trace-context.ts), and every finished sampled span handed to the sinks (the
 * span ring for `weft traces`, the OTLP exporter when configured).
 *
 * Cost model: an unsampled request makes no span object at all; it costs the header
 * parse (and a fresh traceparent when it came without one), as before tracing existed.
 */
import { extractContext, formatTraceparent, newSpanId, newTraceId } from './trace-context';
import type { SpanKind, SpanRecord, SpanSink } from './types';

export interface TracerOptions {
  /** `waypoint demo/waypoint` or `ztunnel node-1`. */
  proxy: string;
  /** Share of new traces sampled, [0, 1]. */
  sampling: number;
  sinks: SpanSink[];
  /** [0, 1), for the sampling decision (tests). */
  random?: () => number;
  /** Epoch milliseconds, fractional (tests); default: the high-resolution clock. */
  now?: () => number;
}

/** What a request's trace headers said, after the tracer read and fixed them. */
export interface RequestTrace {
  traceId: string;
  /** The caller's span (the incoming parent-id); absent when this hop started the trace. */
  parentId?: string;
  /** Whether this hop records spans for it (and says so to the next hop). */
  sampled: boolean;
}

/** Epoch ms with sub-millisecond resolution: spans of a fast hop must not all last 0 ms. */
const hrNow = (): number => performance.timeOrigin + performance.now();

export class Tracer {
  readonly proxy: string;
  readonly sampling: number;
  private readonly sinks: SpanSink[];
  private readonly random: () => number;
  readonly now: () => number;

  constructor(readonly options: TracerOptions) {
    this.proxy = options.proxy;
    this.sampling = options.sampling;
    this.sinks = options.sinks;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? hrNow;
  }

  /**
   * Parent-based ratio sampling: the caller's flag when it sent one, else (a new trace, or
   * B3 that deferred) the ratio. 0 and 1 draw no random number.
   */
  decide(parent: boolean | undefined): boolean {
    if (parent !== undefined) return parent;
    if (this.sampling <= 0) return false;
    if (this.sampling >= 1) return true;
    return this.random() < this.sampling;
  }

  /** A started span of a sampled trace; `end()` it exactly once. */
  start(traceId: string, parentSpanId: string | undefined, name: string, kind: SpanKind, attributes: SpanRecord['attributes'] = {}): SpanRecord {
    const span: SpanRecord = { traceId, spanId: newSpanId(), name, kind, startMs: this.now(), endMs: 0, proxy: this.proxy, attributes };
    if (parentSpanId !== undefined) span.parentSpanId = parentSpanId;
    return span;
  }

  /** Ends a span and hands it to every sink; a sink that throws is not allowed to break the data path. */
  end(span: SpanRecord, error?: string): void {
    span.endMs = this.now();
    if (error !== undefined) span.error = error;
    for (const sink of this.sinks) {
      try {
        sink.onSpan(span);
      } catch {
        // SpanSink's contract says it must not throw; a broken one loses its span, nothing else.
      }
    }
  }
}

/**
 * Reads a request's trace context and fixes its headers for the next hop: a valid
 * traceparent is kept (with its tracestate); a missing or malformed one is replaced by a
 * fresh one (continuing a B3 trace when one came), and a tracestate without a valid
 * traceparent is dropped. Without a tracer (no telemetry) nothing is sampled, but the
 * headers are fixed the same way. The caller puts its own span's id into the upstream
 * traceparent when the trace is sampled.
 */
export function traceRequest(headers: Record<string, string | string[] | undefined>, tracer: Tracer | undefined): RequestTrace {
  const { context, decision, w3c } = extractContext(headers);
  if (context && w3c) return { traceId: context.traceId, parentId: context.parentId, sampled: tracer ? tracer.decide(context.sampled) : false };
  // Malformed or absent: a tracestate belongs to its traceparent, so it goes too.
  if (headers.tracestate !== undefined) delete headers.tracestate;
  const sampled = tracer ? tracer.decide(context ? context.sampled : decision) : false;
  const traceId = context?.traceId ?? newTraceId();
  headers.traceparent = formatTraceparent(traceId, context?.parentId ?? newSpanId(), sampled);
  return context ? { traceId, parentId: context.parentId, sampled } : { traceId, sampled };
}
