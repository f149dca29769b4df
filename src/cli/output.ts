/**
 * How operator commands print: aligned tables (as kubectl and istioctl do), `-o json`,
 * `-o yaml`, and `--watch`. A command builds a Frame (rows for people, data for
 * machines, warnings); this file turns it into text. Everything but runWatch is pure.
 */
import YAML from 'yaml';
import { isWeftError } from '../lib/errors';
import { parse, type OptionSpec } from '../lib/options';
import type { CliIo } from './io';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The flags of every command that prints a frame. */
export const outputOptions = {
  output: {
    flag: 'output', default: 'table' as OutputFormat, description: 'output format: table, json or yaml (-o)',
    parse: parse.oneOf(OUTPUT_FORMATS),
  } satisfies OptionSpec<OutputFormat>,
  watch: {
    flag: 'watch', boolean: true, default: false, description: 'refresh every second until Ctrl-C (-w)', parse: parse.bool(),
  } satisfies OptionSpec<boolean>,
};

export type Cell = string | number | boolean | undefined | null;

export interface Table {
  headers: string[];
  rows: Cell[][];
}

/** One screenful of a command's answer. */
export interface Frame {
  /** What people read; `text` for non-tabular answers (explain). */
  table?: Table;
  text?: string;
  /** What `-o json|yaml` prints. */
  data: unknown;
  /** Problems that did not stop the command (a node not answering). */
  warnings: string[];
  /** Printed instead of an empty table. */
  empty?: string;
  exitCode?: number;
}

/** Missing values print as `-`, so every row has the same number of columns. */
export function cellText(c: Cell): string {
  if (c === undefined || c === null || c === '') return '-';
  return String(c);
}

/** Columns left-aligned and separated by three spaces; the last column is not padded. */
export function formatTable(t: Table): string {
  const rows = [t.headers, ...t.rows.map((r) => t.headers.map((_, i) => cellText(r[i])))];
  const widths = t.headers.map((_, i) => Math.max(...rows.map((r) => displayWidth(r[i] ?? ''))));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - displayWidth(c) + 3))).join('').trimEnd()).join('\n') + '\n';
}

function displayWidth(s: string): number {
  // Tables carry identities, addresses and names: code points are close enough to columns.
  return [...s].length;
}

export function formatStructured(data: unknown, format: 'json' | 'yaml'): string {
  if (format === 'json') return JSON.stringify(data, null, 2) + '\n';
  return YAML.stringify(data, { lineWidth: 0 });
}

/** What goes to stdout and stderr for a frame. Warnings go to stderr so stdout stays parseable. */
export function renderFrame(frame: Frame, format: OutputFormat): { stdout: string; stderr: string } {
  const stderr = frame.warnings.map((w) => `warning: ${w}\n`).join('');
  if (format !== 'table') return { stdout: formatStructured(frame.data, format), stderr };
  if (frame.text !== undefined) return { stdout: frame.text.endsWith('\n') ? frame.text : frame.text + '\n', stderr };
  if (!frame.table || frame.table.rows.length === 0) return { stdout: `${frame.empty ?? 'Nothing found.'}\n`, stderr };
  return { stdout: formatTable(frame.table), stderr };
}

// ---- value formatting shared by the tables ----

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 0 B, 512 B, 1.5 KiB, 12 MiB: one decimal below 10 units. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < BYTE_UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === 0) return `${v} B`;
  return `${v < 10 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)} ${BYTE_UNITS[u]}`;
}

/** kubectl-style age: 45s, 3m12s, 2h5m, 3d4h. */
export function formatAge(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
}

/** Age since an ISO timestamp, or `-` when absent or unparseable. */
export function ageSince(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '-' : formatAge(now - t);
}

// ---- printing and --watch ----

export const CLEAR_SCREEN = '\x1b[H\x1b[2J';

/** Prints one frame; returns its exit code. */
export function printFrame(frame: Frame, format: OutputFormat, io: CliIo): number {
  const { stdout, stderr } = renderFrame(frame, format);
  io.stdout(stdout);
  if (stderr) io.stderr(stderr);
  return frame.exitCode ?? 0;
}

/** One watch screen: a heading like `watch`'s, the frame, and its warnings inline (stderr would scroll away). */
export function watchScreen(title: string, frame: Frame, format: OutputFormat, now: Date): string {
  const { stdout, stderr } = renderFrame(frame, format);
  return `${CLEAR_SCREEN}Every 1.0s: ${title}    ${now.toISOString()}\n\n${stdout}${stderr}`;
}

export interface WatchOptions {
  title: string;
  format: OutputFormat;
  intervalMs?: number;
  io: CliIo;
}

/**
 * Redraws until the io's signal (or, without one, Ctrl-C) ends it. A frame that fails
 * (registry gone for a moment) shows the error and the watch goes on: an operator
 * watching an outage wants to see it end.
 */
export async function runWatch(produce: () => Promise<Frame>, opts: WatchOptions): Promise<number> {
  const interval = opts.intervalMs ?? 1000;
  const { signal, dispose } = interruptSignal(opts.io);
  try {
    while (!signal.aborted) {
      let screen: string;
      try {
        screen = watchScreen(opts.title, await produce(), opts.format, new Date());
      } catch (err) {
        const msg = isWeftError(err) ? `${err.message} [${err.code}]` : err instanceof Error ? err.message : String(err);
        screen = `${CLEAR_SCREEN}Every 1.0s: ${opts.title}    ${new Date().toISOString()}\n\nerror: ${msg}\n`;
      }
      if (signal.aborted) break;
      opts.io.stdout(screen);
      await sleep(interval, signal);
    }
  } finally {
    dispose();
  }
  return 0;
}

/** An AbortSignal that the io's signal or, without one, Ctrl-C/SIGTERM aborts; dispose() removes the handlers. */
export function interruptSignal(io: CliIo): { signal: AbortSignal; dispose: () => void } {
  if (io.signal) return { signal: io.signal, dispose: () => {} };
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

/** Waits `ms`, or less when `signal` aborts (resolves either way). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

/** Prints the frame once, or keeps redrawing it with --watch. */
export async function show(
  produce: () => Promise<Frame>,
  opts: { format: OutputFormat; watch: boolean; title: string; io: CliIo },
): Promise<number> {
  if (opts.watch) return runWatch(produce, opts);
  return printFrame(await produce(), opts.format, opts.io);
}
