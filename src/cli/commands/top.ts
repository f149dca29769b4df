/**
 * `weft top`: the golden signals live, like `top`: per edge (source workload →
 * destination Service) sorted by requests per second, and the proxies' saturation
 * (event-loop lag, memory, connections, requests in flight and pending). Each refresh
 * scrapes every proxy once and computes the rates against the previous scrape, so the
 * window is the interval. Redrawn in place on a terminal; otherwise (a pipe, a file)
 * each reading is a block of its own, and `-o json` one JSON object per line.
 */
import { parse, type OptionSpec } from '../../lib/options';
import { isWeftError } from '../../lib/errors';
import { contextOptions, loadContext } from '../context';
import { defineCommand, noPositionals, type CliIo } from '../io';
import { CLEAR_SCREEN, interruptSignal, sleep } from '../output';
import { namespaceOption } from '../registry-command';
import { withRegistry } from '../registry-session';
import { readProxies } from '../mesh-stats';
import { proxyTargets, type ProxyTarget } from '../proxy-targets';
import { edgeRows, noTraffic, proxyRows, section, statReading, type StatReading } from '../golden-tables';
import type { ProxyReading } from '../../telemetry/golden-signals';

const USAGE = 'weft top [-n NAMESPACE] [--interval 2s] [--iterations N] [-o table|json]';
const FORMATS = ['table', 'json'] as const;

export interface TopOptions {
  intervalMs: number;
  /** Stop after this many readings (0: until Ctrl-C). */
  iterations: number;
  namespace: string;
  format: (typeof FORMATS)[number];
}

/** Where the loop gets the proxies and their scrapes (the registry and HTTP; tests pass their own). */
export interface TopSource {
  targets(): Promise<ProxyTarget[]>;
  read(targets: readonly ProxyTarget[]): Promise<ProxyReading[]>;
}

/** One screen of `weft top` (table format). */
export function topScreen(r: StatReading, opts: Pick<TopOptions, 'intervalMs' | 'namespace'>): string {
  const head = `weft top: every ${opts.intervalMs / 1000} s${opts.namespace ? `, namespace ${opts.namespace}` : ''}, window ${r.windowSeconds} s, at ${r.at}\n\n`;
  const edges = section('EDGES (by requests per second)', edgeRows(r.edges), noTraffic(r.windowSeconds, opts.namespace));
  const proxies = section('PROXIES', proxyRows(r.proxies), 'No proxy answered.');
  return `${head}${edges}\n${proxies}${r.warnings.map((w) => `warning: ${w}\n`).join('')}`;
}

/**
 * Reads, waits an interval, reads again and prints; then once per interval. A reading
 * that fails (registry gone for a moment) is shown and the loop goes on, as --watch does.
 */
export async function runTop(source: TopSource, opts: TopOptions, io: CliIo): Promise<number> {
  const { signal, dispose } = interruptSignal(io);
  try {
    let prev: ProxyReading[] | undefined;
    for (let shown = 0; !signal.aborted && (opts.iterations === 0 || shown < opts.iterations);) {
      let screen: string;
      try {
        const targets = await source.targets();
        const now = await source.read(targets);
        if (!prev) {
          prev = now;
          await sleep(opts.intervalMs, signal);
          continue;
        }
        const reading = statReading(targets, prev, now, opts.namespace);
        prev = now;
        screen = opts.format === 'json' ? `${JSON.stringify(reading)}\n` : topScreen(reading, opts);
      } catch (err) {
        const msg = isWeftError(err) ? `${err.message} [${err.code}]` : err instanceof Error ? err.message : String(err);
        screen = opts.format === 'json' ? `${JSON.stringify({ error: msg })}\n` : `error: ${msg}\n`;
      }
      if (signal.aborted) break;
      // On a terminal the screen is redrawn; elsewhere the readings follow each other.
      io.stdout(opts.format === 'json' ? screen : io.tty ? `${CLEAR_SCREEN}${screen}` : `${screen}\n`);
      shown++;
      if (opts.iterations === 0 || shown < opts.iterations) await sleep(opts.intervalMs, signal);
    }
  } finally {
    dispose();
  }
  return 0;
}

export default defineCommand({
  usage: USAGE,
  summary: 'golden signals live: per edge by requests per second, and each proxy\'s saturation',
  description: 'Every --interval, every ztunnel and ready waypoint pod is scraped (GET /metrics on port 15020) and the\n'
    + 'rates are computed against the previous scrape: requests per second, success rate (not 5xx), p50/p95/p99\n'
    + 'latency and mTLS per edge (source workload -> destination Service; L4 edges from the ztunnels show\n'
    + 'connections and bytes per second), and per proxy its event-loop lag p99, memory, open connections,\n'
    + 'requests in flight and requests waiting for a connectionPool slot. Redrawn in place on a terminal; in a\n'
    + 'pipe each reading is a block (-o json: one JSON object per line). Ctrl-C ends it.',
  specs: {
    ...contextOptions,
    output: { flag: 'output', default: 'table' as (typeof FORMATS)[number], description: 'output format: table or json (-o)', parse: parse.oneOf(FORMATS) } satisfies OptionSpec<(typeof FORMATS)[number]>,
    namespace: namespaceOption,
    interval: {
      flag: 'interval', default: 2000, defaultText: '2s', description: 'time between readings (each is the window of the next rates)',
      parse: parse.duration({ min: 100, max: 600_000 }),
    } satisfies OptionSpec<number>,
    iterations: {
      flag: 'iterations', default: 0, defaultText: 'until Ctrl-C', description: 'stop after this many readings', parse: parse.int({ min: 0 }),
    } satisfies OptionSpec<number>,
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    return withRegistry(ctx, (session) => runTop({
      targets: async () => proxyTargets(ctx, await session.load()),
      read: (targets) => readProxies(targets),
    }, { intervalMs: values.interval, iterations: values.iterations, namespace: values.namespace, format: values.output }, io));
  },
});
