/** The `p`th percentile (0–100) of ascending `sorted` samples (nearest rank); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The median of the finite values (a failed run's NaN is left out); NaN when there is none. */
export function median(xs: readonly number[]): number {
  return percentile(xs.filter(Number.isFinite).sort((a, b) => a - b), 50);
}
