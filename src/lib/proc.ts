/**
 * A process as /proc prints it: its memory in `Name:   N kB` lines of /proc/<pid>/status
 * (VmRSS, VmHWM) and /proc/<pid>/smaps_rollup (Rss, Anonymous, …; Linux ≥ 4.14), the
 * fields of /proc/<pid>/stat, and its command line. The fault suite, the lab, the tests and the benches read
 * them through these.
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

/**
 * /proc/<pid>/stat from field 3 (state) on, so field N is at index N − 3; undefined when
 * the process is gone. The command name (field 2) may hold spaces and parentheses: the
 * fields are split after its last ')'.
 */
export function procStatFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * /proc/<pid>/cmdline as one line (arguments joined by spaces), cut to `max` characters
 * with `...`; undefined when the process is gone or had none (a kernel thread). `proc`
 * is another procfs root, for tests.
 */
export function procCommandLine(pid: number, max: number, proc = '/proc'): string | undefined {
  let argv: string;
  try {
    argv = readFileSync(`${proc}/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return undefined;
  }
  if (!argv) return undefined;
  return argv.length > max ? `${argv.slice(0, max)}...` : argv;
}
