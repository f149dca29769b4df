/**
 * A parser for the Prometheus text exposition format (version 0.0.4, what prom-client
 * writes on every proxy's /metrics), for the views that compute from scrapes (`weft
 * stat`, `weft top`, `weft graph`, the dashboard). The CLI reads the proxies' own
 * metrics rather than asking a Prometheus, so the views need no other product.
 *
 * It reads samples with their labels (label values unescaped: `\\`, `\"`, `\n`), the
 * `# TYPE` and `# HELP` lines, and groups a histogram's `_bucket`/`_sum`/`_count`
 * series by their labels. A line it cannot read is an error naming the line number:
 * a scrape half understood would give wrong rates, so the caller treats the proxy as
 * not answering (a warning) rather than showing part of it.
 */

export type PromType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  /** The series name as written (`istio_request_duration_milliseconds_bucket`). */
  name: string;
  labels: Record<string, string>;
  /** NaN, +Inf and -Inf as JavaScript numbers. */
  value: number;
}

export interface PromScrape {
  samples: PromSample[];
  /** Family name → `# TYPE`. */
  types: Map<string, PromType>;
  /** Family name → `# HELP` (unescaped). */
  help: Map<string, string>;
}

/** One histogram series (one label set, without `le`). */
export interface PromHistogram {
  labels: Record<string, string>;
  /** Cumulative counts by upper bound, ascending; the last bound is +Inf. */
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

const TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** Parses a whole scrape; throws an Error naming the first line it cannot read. */
export function parsePromText(text: string): PromScrape {
  const out: PromScrape = { samples: [], types: new Map(), help: new Map() };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    try {
      if (line.startsWith('#')) comment(line, out);
      else out.samples.push(sample(line));
    } catch (err) {
      throw new Error(`line ${i + 1} of the metrics text is not Prometheus text format (${(err as Error).message}): ${JSON.stringify(line.slice(0, 120))}`);
    }
  }
  return out;
}

function comment(line: string, out: PromScrape): void {
  const m = /^#\s*(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s(.*))?$/.exec(line);
  // Other comments are free text.
  if (!m) return;
  const rest = m[3] ?? '';
  if (m[1] === 'TYPE') {
    const type = rest.trim();
    if (!TYPES.has(type)) throw new Error(`unknown metric type "${type}"`);
    out.types.set(m[2]!, type as PromType);
  } else {
    out.help.set(m[2]!, unescape(rest, false));
  }
}

function sample(line: string): PromSample {
  const nm = NAME.exec(line);
  if (!nm) throw new Error('expected a metric name');
  const name = nm[0];
  let pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === '{') {
    pos = readLabels(line, pos + 1, labels);
  }
  const rest = line.slice(pos);
  if (!/^[ \t]/.test(rest)) throw new Error('expected a space before the value');
  const fields = rest.trim().split(/[ \t]+/);
  // A value, optionally a timestamp (ignored: the views use their own clock).
  if (fields.length < 1 || fields.length > 2) throw new Error('expected a value and at most a timestamp');
  return { name, labels, value: parseValue(fields[0]!) };
}

/** Reads `name="value",...}` from `pos` (after the brace); returns the position after `}`. */
function readLabels(line: string, start: number, labels: Record<string, string>): number {
  let pos = start;
  for (;;) {
    while (line[pos] === ' ' || line[pos] === '\t') pos++;
    if (line[pos] === '}') return pos + 1;
    const ln = LABEL_NAME.exec(line.slice(pos));
    if (!ln) throw new Error('expected a label name');
    pos += ln[0].length;
    while (line[pos] === ' ' || line[pos] === '\t') pos++;
    if (line[pos] !== '=' || line[pos + 1] !== '"') throw new Error(`expected ="..." after label ${ln[0]}`);
    pos += 2;
    let raw = '';
    for (;;) {
      const c = line[pos];
      if (c === undefined) throw new Error(`unterminated value of label ${ln[0]}`);
      if (c === '"') break;
      if (c === '\\') {
        const n = line[pos + 1];
        if (n === undefined) throw new Error(`unterminated value of label ${ln[0]}`);
        raw += c + n;
        pos += 2;
      } else {
        raw += c;
        pos++;
      }
    }
    labels[ln[0]] = unescape(raw, true);
    pos++;
    while (line[pos] === ' ' || line[pos] === '\t') pos++;
    if (line[pos] === ',') pos++;
    else if (line[pos] !== '}') throw new Error('expected , or } after a label');
  }
}

/** Label values escape `\\`, `\"` and `\n`; HELP text `\\` and `\n`. Other escapes stay as written. */
function unescape(s: string, quotes: boolean): string {
  return s.replace(/\\(.)/g, (all, c: string) => (c === 'n' ? '\n' : c === '\\' ? '\\' : quotes && c === '"' ? '"' : all));
}

/**
 * Prometheus reads NaN and Inf in any case (Go's ParseFloat), and prom-client writes
 * `Nan` (e.g. nodejs_eventloop_lag_mean_seconds before the first sample): a stricter
 * parser would refuse every proxy's scrape.
 */
function parseValue(s: string): number {
  switch (s.toLowerCase()) {
    case '+inf': case 'inf': return Infinity;
    case '-inf': return -Infinity;
    case 'nan': return NaN;
  }
  const v = Number(s);
  if (s === '' || Number.isNaN(v)) throw new Error(`"${s}" is not a number`);
  return v;
}

/** The samples of series `name` (exact name, e.g. `istio_requests_total`). */
export function samplesOf(scrape: PromScrape, name: string): PromSample[] {
  return scrape.samples.filter((s) => s.name === name);
}

/** The value of the one series `name` with no labels (or the first), or undefined. */
export function valueOf(scrape: PromScrape, name: string): number | undefined {
  return scrape.samples.find((s) => s.name === name)?.value;
}

/** A key of a label set that does not depend on the order the labels were written in. */
export function labelKey(labels: Record<string, string>, omit?: string): string {
  return Object.keys(labels).filter((k) => k !== omit).sort().map((k) => `${k}=${labels[k]}`).join('\u0000');
}

/** The histogram `base` (e.g. `istio_request_duration_milliseconds`), one entry per label set. */
export function histogramsOf(scrape: PromScrape, base: string): PromHistogram[] {
  const byKey = new Map<string, PromHistogram>();
  const get = (labels: Record<string, string>): PromHistogram => {
    const key = labelKey(labels, 'le');
    let h = byKey.get(key);
    if (!h) {
      const own = { ...labels };
      delete own.le;
      h = { labels: own, buckets: [], sum: 0, count: 0 };
      byKey.set(key, h);
    }
    return h;
  };
  for (const s of scrape.samples) {
    if (s.name === `${base}_bucket`) {
      const le = parseValue(s.labels.le ?? '');
      get(s.labels).buckets.push({ le, count: s.value });
    } else if (s.name === `${base}_sum`) get(s.labels).sum = s.value;
    else if (s.name === `${base}_count`) get(s.labels).count = s.value;
  }
  for (const h of byKey.values()) h.buckets.sort((a, b) => a.le - b.le);
  return [...byKey.values()];
}

/**
 * The `q` quantile (0..1) of cumulative `buckets` as Prometheus' histogram_quantile
 * computes it: the bucket holding the rank, linear interpolation inside it (the first
 * bucket from 0 when its bound is positive); a rank in the +Inf bucket is the highest
 * finite bound. Null when the buckets hold no observation.
 */
export function histogramQuantile(q: number, buckets: readonly { le: number; count: number }[]): number | null {
  if (buckets.length === 0) return null;
  const total = buckets[buckets.length - 1]!.count;
  if (!(total > 0)) return null;
  if (q <= 0) return 0;
  const rank = Math.min(q, 1) * total;
  let prevLe = 0;
  let prevCount = 0;
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!;
    if (b.count >= rank) {
      if (b.le === Infinity) return i === 0 ? null : buckets[i - 1]!.le;
      // Prometheus starts the first bucket at 0 unless its bound is negative.
      const lower = i === 0 ? (b.le > 0 ? 0 : b.le) : prevLe;
      const inBucket = b.count - prevCount;
      if (inBucket <= 0) return b.le;
      return lower + (b.le - lower) * ((rank - prevCount) / inBucket);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return buckets[buckets.length - 1]!.le;
}
