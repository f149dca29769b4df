/**
 * A process's /proc/<pid>/smaps_rollup in bytes: Rss, Anonymous, … (Linux ≥ 4.14).
 * Only node:fs: module-cost.ts charges every import to the modules it measures.
 */
import { readFileSync } from 'node:fs';

/** `fields` in bytes; NaN for each where smaps_rollup or the field is missing. */
export function smapsRollup<K extends string>(pid: number | 'self', fields: readonly K[]): Record<K, number> {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch { /* gone, or an old kernel: NaN below */ }
  const out = {} as Record<K, number>;
  for (const k of fields) out[k] = Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return out;
}
