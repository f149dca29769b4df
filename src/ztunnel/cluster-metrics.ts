/**
 * The node's one scrape under `ztunnel --workers` (cluster-primary.ts): every worker's
 * series and the primary's, combined by prom-client's cluster aggregation (each
 * series as its definition's `aggregator` says; counters and histograms summed).
 *
 * A worker that exits takes its counters with it: summed, the node's counters would
 * then fall, which Prometheus reads as a counter reset (rate() and increase() count
 * the whole remaining total once more). So each worker's last answer is kept, and
 * when it exits its counters and histograms stay in every later sum: the node's
 * counters never fall. What it counted after its last scrape is lost, as the counts
 * of a single ztunnel that dies are.
 */
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

/** One process's series, as `Registry.getMetricsAsJSON()` gives them (and the IPC carries them). */
export type SeriesJson = MetricObjectWithValues<MetricValue<string>>[];

/** prom-client's types say a numeric enum; the JSON holds its name. */
function monotonic(m: SeriesJson[number]): boolean {
  const type = m.type as unknown as string;
  return type === 'counter' || type === 'histogram';
}

export class NodeScrape {
  /** Each running worker's last answer, by worker index. */
  private readonly last = new Map<number, SeriesJson>();
  /** The exited workers' counters and histograms, compacted into one part when several. */
  private retired: SeriesJson[] = [];
  /** The one compaction under way: two at once could each replace `retired` and drop the other's part. */
  private compacting: Promise<void> | undefined;

  /** One scrape of the node: the workers' answers (by index), the primary's own series and what exited workers counted. */
  combine(answers: ReadonlyMap<number, SeriesJson>, own: SeriesJson): Registry {
    for (const [index, answer] of answers) this.last.set(index, answer);
    return AggregatorRegistry.aggregate([...answers.values(), own, ...this.retired]);
  }

  /** Worker `index` exited: its last counters and histograms stay in the node's sums (at once, so no scrape misses them). */
  retire(index: number): void {
    const last = this.last.get(index);
    this.last.delete(index);
    if (!last) return;
    this.retired = [...this.retired, last.filter(monotonic)];
    if (this.retired.length > 1) this.compacting ??= this.compact().finally(() => { this.compacting = undefined; });
  }

  /** Resolves once no compaction is under way (tests). */
  async settled(): Promise<void> {
    while (this.compacting) await this.compacting;
  }

  /**
   * One part for all exited workers, so a worker restarted again and again does not grow
   * the primary. Until it is done, scrapes sum the parts as they are (the same totals).
   */
  private async compact(): Promise<void> {
    while (this.retired.length > 1) {
      const parts = this.retired;
      const merged = await AggregatorRegistry.aggregate(parts).getMetricsAsJSON() as SeriesJson;
      // retire() only appends, so whatever came meanwhile follows the compacted parts (and the loop merges it next).
      this.retired = [merged, ...this.retired.slice(parts.length)];
    }
  }
}
