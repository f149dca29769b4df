import type { Registry } from 'prom-client';

/** Sum of a counter's values whose labels include `match` (all given labels equal). */
export async function metricSum(registry: Registry, name: string, match: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  let sum = 0;
  for (const v of data.values) {
    const labels = v.labels as Record<string, string | number>;
    if (Object.entries(match).every(([k, want]) => String(labels[k]) === want)) sum += v.value;
  }
  return sum;
}
