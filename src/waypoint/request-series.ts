/**
 * The waypoint's request metrics (metrics.ts) kept per label set in plain numbers and
 * read by prom-client's registry when it is scraped. prom-client's own Counter and
 * Histogram hash and validate the whole label set on every call: one counter and three
 * histograms per request were ~7 % of the waypoint's CPU in the L7 benchmark. Here a
 * request costs one key, one Map lookup and a few additions; the work of writing the
 * series is the scrape's.
 *
 * Each family is an object the registry reads as it reads its own metrics (`name`,
 * `help`, `type`, `aggregator`, `get()` returning the same values prom-client's Counter
 * and Histogram return), so the exposition text is prom-client's, byte for byte.
 */
import type { Counter, Histogram, Registry } from 'prom-client';

/** A value as prom-client's metrics give them to the registry. */
export interface SeriesValue<N extends string = string> {
  labels: Partial<Record<N, string | number>>;
  value: number;
  metricName?: string;
  sharedLabels?: Record<string, string>;
}

/** A family as prom-client's metrics give it to the registry. */
export interface SeriesData<N extends string = string> {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: SeriesValue<N>[];
  aggregator: 'sum';
}

/** One label set's counts: requests, and per histogram the bucket counts (not cumulative, +Inf last) and the sum. */
interface Entry<L> {
  labels: L;
  count: number;
  buckets: Float64Array[];
  sums: number[];
}

export interface HistogramSpec {
  name: string;
  help: string;
  /** Upper bounds, ascending. */
  buckets: readonly number[];
}

/** A counter family and histogram families that share one label set per request. */
export class RequestSeries<L extends Record<string, string>> {
  private readonly entries = new Map<string, Entry<L>>();
  private readonly bounds: (readonly number[])[];
  /** The counter family, read by the registry. */
  readonly counter: SeriesCounter<L>;
  /** The histogram families, in the order of `histograms`. */
  readonly histograms: SeriesHistogram<L>[];

  constructor(registry: Registry, counter: { name: string; help: string }, histograms: readonly HistogramSpec[]) {
    this.bounds = histograms.map((h) => h.buckets);
    this.counter = new SeriesCounter(this, counter.name, counter.help);
    this.histograms = histograms.map((h, i) => new SeriesHistogram(this, h.name, h.help, i, h.buckets));
    // The registry reads any object shaped as its metrics (name, help, type, aggregator, get).
    for (const m of [this.counter, ...this.histograms]) registry.registerMetric(m as unknown as Counter | Histogram);
  }

  /**
   * Counts one request under `labels` (`key`: seriesKey(labels), lib/metric-series.ts, identifying the
   * set) with one value per histogram. Returns true when the label set is new.
   */
  add(key: string, labels: L, values: readonly number[]): boolean {
    let e = this.entries.get(key);
    const fresh = e === undefined;
    if (!e) {
      e = { labels, count: 0, buckets: this.bounds.map((b) => new Float64Array(b.length + 1)), sums: this.bounds.map(() => 0) };
      this.entries.set(key, e);
    }
    e.count++;
    for (let h = 0; h < values.length; h++) {
      const v = values[h]!;
      // prom-client's Histogram refuses a value that is not a finite number (it throws);
      // here it is left out of that histogram, so one bad duration cannot turn the
      // series' _sum into NaN for good.
      if (!Number.isFinite(v)) continue;
      const b = this.bounds[h]!;
      let i = 0;
      while (i < b.length && v > b[i]!) i++;
      e.buckets[h]![i]!++;
      e.sums[h]! += v;
    }
    return fresh;
  }

  /** Drops the series of a label set (its workload left the registry). */
  remove(key: string): void {
    this.entries.delete(key);
  }

  /** @internal */ all(): IterableIterator<Entry<L>> {
    return this.entries.values();
  }

  reset(): void {
    this.entries.clear();
  }
}

class SeriesCounter<L extends Record<string, string>> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  constructor(private readonly series: RequestSeries<L>, readonly name: string, readonly help: string) {}

  async get(): Promise<SeriesData<Extract<keyof L, string>>> {
    const values: SeriesValue<Extract<keyof L, string>>[] = [];
    for (const e of this.series.all()) values.push({ labels: e.labels, value: e.count });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }

  reset(): void {
    this.series.reset();
  }
}

class SeriesHistogram<L extends Record<string, string>> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(private readonly series: RequestSeries<L>, readonly name: string, readonly help: string, private readonly index: number, private readonly bounds: readonly number[]) {}

  /**
   * As prom-client's Histogram gives them to the registry: per label set the cumulative
   * buckets, then the sum and the count, the label set as `sharedLabels` (written after `le`).
   */
  async getForPromString(): Promise<SeriesData> {
    const values: SeriesValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const e of this.series.all()) {
      const counts = e.buckets[this.index]!;
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += counts[i]!;
        values.push({ labels: { le: this.bounds[i]! }, sharedLabels: e.labels, value: acc, metricName: bucket });
      }
      // The histogram's own count, not the requests': a value left out (not finite) is in neither.
      const count = acc + counts[this.bounds.length]!;
      values.push({ labels: { le: '+Inf' }, sharedLabels: e.labels, value: count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: e.labels, value: e.sums[this.index]!, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: e.labels, value: count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }

  /** As prom-client's Histogram.get(): the label set merged into each value's labels (after `le`). */
  async get(): Promise<SeriesData> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ sharedLabels, ...rest }) => ({ ...rest, labels: { ...rest.labels, ...sharedLabels } }));
    return data;
  }

  reset(): void {
    this.series.reset();
  }
}
