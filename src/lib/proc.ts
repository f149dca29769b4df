/**
 * A process's memory as /proc prints it, in `Name:   N kB` lines: /proc/<pid>/status
 * (VmRSS, VmHWM) and /proc/<pid>/smaps_rollup (Rss, Anonymous, …; Linux ≥ 4.14). The
 * fault suite, the tests and the benches read RSS through this one parser.
 *
 * Only node:fs, not even lib/files' readFileIfAny: bench/module-cost.ts loads this
 * before it measures, so whatever this imports counts as "node itself" instead of being
 * charged to the modules it measures (lib/files and what it imports: ~0.6 MB RSS).
 */
import { readFileSync } from 'node:fs';

/** `fields` of /proc/<pid>/<file> in bytes; NaN for each where the file (the process is gone, an old kernel) or the field is missing. */
export function procBytes<K extends string>(pid: number | 'self', file: 'status' | 'smaps_rollup', fields: readonly K[]): Record<K, number> {
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch { /* gone, or an old kernel: NaN below */ }
  const out = {} as Record<K, number>;
  for (const k of fields) out[k] = Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return out;
}
