/**
 * STUB (skeleton): the tracer helper (h-trace) replaces this file.
 *
 * The last N sampled spans of one proxy, for `GET /debug/traces` (`weft traces`, the
 * dashboard): bounded, oldest dropped first, queried by Service, time and trace id.
 */
import type { SpanRecord, SpanSink, TraceQuery } from './types';

export class SpanRing implements SpanSink {
  constructor(readonly capacity: number) {}

  onSpan(_span: SpanRecord): void {}

  query(_q: TraceQuery): SpanRecord[] {
    return [];
  }
}
