/**
 * STUB (skeleton): the tracer helper (h-trace) replaces this file.
 *
 * Makes spans for one proxy: parent-based ratio sampling (a sampled caller is always
 * followed; a new trace is sampled at `sampling`), W3C traceparent/tracestate in and out
 * (B3 accepted on input, trace-context.ts), and every finished sampled span handed to
 * the sinks (the span ring for `weft traces`, the OTLP exporter when configured).
 */
import type { SpanSink } from './types';

export interface TracerOptions {
  /** `waypoint demo/waypoint` or `ztunnel node-1`. */
  proxy: string;
  /** Share of new traces sampled, [0, 1]. */
  sampling: number;
  sinks: SpanSink[];
  /** [0, 1), for the sampling decision (tests). */
  random?: () => number;
}

export class Tracer {
  constructor(readonly options: TracerOptions) {}
}
