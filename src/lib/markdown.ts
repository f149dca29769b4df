/**
 * The Markdown tables the benches and the fault suite print (docs/performance.md and
 * docs/reliability.md quote them as printed): one place that writes a `| a | b |` row
 * and the `|---|` line under a header. Rows may be printed one at a time, as a bench
 * measures them, or as a whole table. In src/lib because both src/bench and src/faults
 * print them, and neither depends on the other.
 * (Operator commands print aligned columns without pipes: src/cli/output.ts.)
 */

/** A cell as printed: numbers are formatted by the caller (digits, `–` for none). */
export type MdCell = string | number;

/**
 * Bytes as MiB (2^20 bytes) with `digits` decimals, bare (the header names the unit),
 * as the benches print memory; `–` for none (NaN: /proc had no such field, or the
 * process was gone).
 */
export function inMiB(bytes: number, digits = 1): string {
  return Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(digits) : '–';
}

/**
 * `| a | b |`: the cells joined by ` | `, as given, but a `|` inside a text cell (an
 * error message, a command line) escaped, so it stays in its cell.
 */
export function mdRow(cells: readonly MdCell[]): string {
  return `| ${cells.map((c) => (typeof c === 'string' ? c.replace(/\|/g, '\\|') : c)).join(' | ')} |`;
}

/** The header row and the `|---|---|` line under it (two lines). */
export function mdHeader(headers: readonly string[]): string {
  return `${mdRow(headers)}\n|${headers.map(() => '---').join('|')}|`;
}

/**
 * A whole table, without a final newline. `aligned` pads every column to its widest
 * cell and draws the `|---|` line as wide, for reading in a terminal (bench/lab.ts).
 */
export function mdTable(headers: readonly string[], rows: ReadonlyArray<readonly MdCell[]>, opts: { aligned?: boolean } = {}): string {
  if (!opts.aligned) return [mdHeader(headers), ...rows.map(mdRow)].join('\n');
  const all = [headers, ...rows].map((r) => r.map(String));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => mdRow(widths.map((w, i) => (r[i] ?? '').padEnd(w)));
  return [line(all[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...all.slice(1).map(line)].join('\n');
}
