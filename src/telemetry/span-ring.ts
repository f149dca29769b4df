/**
 * The last N sampled spans of one proxy, for `GET /debug/traces` (`weft traces`, the
 * dashboard): bounded, oldest dropped first, queried by Service, time and trace id.
 * A fixed array written round: adding a span is one store, whatever the load; memory
 * is `capacity` spans at most (0 keeps none).
 */
import type { SpanRecord, SpanSink, TraceQuery } from './types';

/** The attribute naming a span's destination Service as `namespace/name` (waypoint and ztunnel spans). */
export const DESTINATION_SERVICE_ATTRIBUTE = 'weft.destination_service';

export class SpanRing implements SpanSink {
  private readonly slots: (SpanRecord | undefined)[];
  /** Where the next span goes; also how many were ever added, modulo capacity. */
  private next = 0;
  /** Spans added in all (the ones past `capacity` were dropped). */
  added = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<SpanRecord | undefined>(Math.max(0, capacity));
  }

  onSpan(span: SpanRecord): void {
    if (this.capacity <= 0) return;
    this.slots[this.next] = span;
    this.next = (this.next + 1) % this.capacity;
    this.added++;
  }

  /** Spans held now, oldest first. */
  private all(): SpanRecord[] {
    const held = Math.min(this.added, this.capacity);
    const out: SpanRecord[] = new Array(held);
    const first = this.added > this.capacity ? this.next : 0;
    for (let i = 0; i < held; i++) out[i] = this.slots[(first + i) % this.capacity]!;
    return out;
  }

  /**
   * The spans matching `q`, oldest first (in the order they ended). `service` keeps every
   * span of the traces that touched the Service (a span of this proxy named it), so a
   * trace is shown whole; `limit` keeps the newest.
   */
  query(q: TraceQuery): SpanRecord[] {
    let spans = this.all();
    if (q.traceId !== undefined) spans = spans.filter((s) => s.traceId === q.traceId);
    if (q.sinceMs !== undefined) {
      const since = q.sinceMs;
      spans = spans.filter((s) => s.endMs >= since);
    }
    if (q.service !== undefined) {
      const traces = new Set<string>();
      for (const s of spans) if (s.attributes[DESTINATION_SERVICE_ATTRIBUTE] === q.service) traces.add(s.traceId);
      spans = spans.filter((s) => traces.has(s.traceId));
    }
    if (q.limit !== undefined && spans.length > q.limit) spans = spans.slice(spans.length - q.limit);
    return spans;
  }
}
