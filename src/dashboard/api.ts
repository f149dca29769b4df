/**
 * What the dashboard (`weft dashboard`, src/dashboard/server.ts) reads, as one small
 * interface: the mesh's golden signals, the service graph drawn as SVG, recent traces
 * and the live tap. The command wires the real sources (the proxies' metrics, span rings
 * and tap streams: src/cli/commands/dashboard.ts); tests wire fixtures. The server
 * never reaches a proxy itself, so it can be tested without a mesh.
 */
import type { MeshStats, SpanRecord, TapEvent } from '../telemetry/types';
import { realClock, type Clock } from '../lib/clock';

/** One trace: its spans from every proxy it crossed (the page draws the tree from their parent ids). */
export interface DashboardTrace {
  traceId: string;
  spans: SpanRecord[];
}

/** Receives each tap event as it happens. Must not throw and must not block. */
export type TapSubscriber = (event: TapEvent) => void;

export interface DashboardSources {
  /** The latest golden signals per edge and saturation per proxy. */
  stats(): Promise<MeshStats>;
  /** The service graph with the signals on its edges, as a standalone SVG document. */
  svg(): Promise<string>;
  /** Recent traces, newest first. */
  traces(): Promise<DashboardTrace[]>;
  /**
   * Starts delivering tap events to `subscriber`; returns the function that stops it.
   * The server subscribes while at least one browser listens, and only then, so the
   * proxies' taps stay off (their one-boolean fast path) when nobody watches.
   */
  tap(subscriber: TapSubscriber): () => void;
}

/**
 * A reading that is expensive to take (stats scrape every proxy twice, a window apart)
 * shared by every browser: the last value is served while it is younger than
 * `maxAgeMs`; an older one is still served at once while one refresh runs behind it
 * (every browser polls; none should wait a whole window, and the proxies are asked once
 * per refresh however many browsers there are). Only the very first call waits.
 */
export function latest<T>(read: () => Promise<T>, maxAgeMs: number, clock: Clock = realClock): () => Promise<T> {
  let value: { v: T; at: number } | undefined;
  let inflight: Promise<T> | undefined;
  const refresh = (): Promise<T> => {
    inflight ??= read().then(
      (v) => { value = { v, at: clock.now() }; inflight = undefined; return v; },
      (err: unknown) => { inflight = undefined; throw err; },
    );
    return inflight;
  };
  return () => {
    if (!value) return refresh();
    if (clock.now() - value.at >= maxAgeMs) refresh().catch(() => { /* the stale value stays; the next call retries */ });
    return Promise.resolve(value.v);
  };
}
