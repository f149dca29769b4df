/**
 * `weft dashboard`: a local web page (src/dashboard/) with the live service graph, the
 * golden signals per edge, recent traces and the tap stream, read from the proxies
 * themselves (proxy-targets.ts: every ztunnel and ready waypoint pod's metrics port).
 * Read-only, and bound to loopback unless --address says otherwise (the page shows who
 * calls what; it has no login), in which case a warning says so.
 *
 * The sources are shared by every open tab: one scrape of every proxy per refresh (the
 * previous scrape is kept, so a reading costs one scrape, not two a window apart), one
 * read of the span rings per refresh, and the proxies' tap streams open only while a
 * tab shows the tap.
 */
import { isIP, type AddressInfo } from 'node:net';
import { loadContext, contextOptions } from '../context';
import { defineCommand, noPositionals, type CliIo } from '../io';
import { interruptSignal } from '../output';
import { namespaceOption } from '../registry-command';
import { withRegistry } from '../registry-session';
import { proxyTargets, type ProxyTarget } from '../proxy-targets';
import { meshStatsBetween, readProxies } from '../mesh-stats';
import { stitchTraces } from '../trace-view';
import { collectSpans } from './traces';
import { followTaps } from '../tap-streams';
import { DashboardServer, isLoopback } from '../../dashboard/server';
import { latest, type DashboardSources, type DashboardTrace } from '../../dashboard/api';
import { renderSvg } from '../../graph/svg';
import { createLogger, type Logger } from '../../lib/log';
import { WeftError } from '../../lib/errors';
import { parse } from '../../lib/options';
import { DESTINATION_SERVICE_ATTRIBUTE } from '../../telemetry/span-ring';
import type { MeshStats, SpanRecord } from '../../telemetry/types';
import type { ProxyReading } from '../../telemetry/golden-signals';

export const DEFAULT_DASHBOARD_PORT = 15030;
/** Traces the page lists, from spans that ended this recently. */
const TRACES_SHOWN = 30;
const TRACES_SINCE_MS = 5 * 60_000;

export interface MeshSourcesOptions {
  /** The proxies to read now (read again on every refresh, so pods that come and go are followed). */
  targets(): Promise<ProxyTarget[]>;
  namespace: string;
  /** How often the stats, graph and traces are read again at most (and the stats' window). */
  refreshMs: number;
  /** A previous scrape older than this is not a window's start (nobody looked meanwhile). Default 3 refreshes, at least 15 s (the page polls every 5 s). */
  idleMs?: number;
  logger: Logger;
}

/** Whether a trace touched `namespace` (a span named a Service in it); true when empty. */
function inNamespace(spans: readonly SpanRecord[], namespace: string): boolean {
  return !namespace || spans.some((s) => String(s.attributes[DESTINATION_SERVICE_ATTRIBUTE] ?? '').startsWith(`${namespace}/`));
}

/** The real sources: what the proxies serve on their metrics ports. */
export function meshSources(o: MeshSourcesOptions): DashboardSources {
  const targets = o.targets;
  const idleMs = o.idleMs ?? Math.max(3 * o.refreshMs, 15_000);
  let previous: ProxyReading[] | undefined;
  const stats = latest(async (): Promise<MeshStats> => {
    const now = await targets();
    // A scrape from before an idle spell (no tab asked) would average the rates over it: start a fresh window.
    const stale = previous !== undefined && previous.some((r) => Date.now() - r.atMs > idleMs);
    if (!previous || stale) {
      previous = await readProxies(now);
      await new Promise((r) => setTimeout(r, o.refreshMs));
    }
    const after = await readProxies(now);
    const s = meshStatsBetween(now, previous, after, { namespace: o.namespace });
    previous = after;
    return s;
  }, o.refreshMs);
  // Drawn once per reading, from the same reading the table shows.
  let drawn: { from: MeshStats; svg: string } | undefined;
  const svg = async (): Promise<string> => {
    const now = await stats();
    if (drawn?.from !== now) drawn = { from: now, svg: renderSvg(now) };
    return drawn.svg;
  };
  const traces = latest(async (): Promise<DashboardTrace[]> => {
    const collected = await collectSpans(await targets(), { sinceEpochMs: Date.now() - TRACES_SINCE_MS });
    // stitchTraces gives the oldest first, each trace's spans in drawing order: the page lists the newest first.
    return stitchTraces(collected.spans).filter((t) => inNamespace(t.spans, o.namespace)).reverse().slice(0, TRACES_SHOWN)
      .map((t) => ({ traceId: t.traceId, spans: t.spans }));
  }, o.refreshMs);
  return {
    stats, svg, traces,
    tap: (subscriber) => followTaps({
      targets, onEvent: subscriber,
      ...(o.namespace ? { filter: { namespace: o.namespace } } : {}),
      onError: (proxy, reason) => o.logger.debug({ proxy, reason }, 'dashboard: a proxy\'s tap stream failed; asking again'),
    }),
  };
}

/** Listens, warning when the address is not loopback; a port in use is a refusal that says what to do. */
export async function startDashboard(server: DashboardServer, address: string, port: number, logger: Logger): Promise<AddressInfo> {
  if (!isLoopback(address)) {
    logger.warn({ address }, 'the dashboard listens on a non-loopback address: anyone who can reach it sees who calls what in the mesh (it has no login); use --address 127.0.0.1 and an SSH tunnel instead where that matters');
  }
  try {
    return await server.listen(address, port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WeftError('WEFT_CONFIG_INVALID', `the dashboard cannot listen on ${address}:${port} (${code ?? (err as Error).message}); pick another --port (0 picks a free one) or --address`);
  }
}

function dashboardUrl(a: AddressInfo): string {
  return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
}

const USAGE = 'weft dashboard [--address 127.0.0.1] [--port 15030] [-n NAMESPACE]';

export default defineCommand({
  usage: USAGE,
  summary: 'a local web page with the live service graph, golden signals per edge, recent traces and the tap',
  description: 'Serves a read-only page (no login) on --address:--port, loopback by default: open the URL it prints.\n'
    + 'It reads every ztunnel and ready waypoint pod on its metrics port (15020): /metrics for the golden\n'
    + 'signals and the graph, /debug/traces for traces, /debug/tap for the live stream (opened only while a\n'
    + 'page is showing). The proxies\' addresses must be reachable from where weft runs (the lab\'s are).\n'
    + 'A non-loopback --address is allowed but logs a warning: the page shows who calls what.',
  specs: {
    ...contextOptions,
    namespace: namespaceOption,
    address: {
      flag: 'address', default: '127.0.0.1', description: 'address to listen on (a non-loopback one is logged as a warning)',
      // Not any name: the server takes the bound name as a Host, and `cafe` or `1.2` would go to a resolver.
      parse: (raw: string) => {
        if (raw !== 'localhost' && isIP(raw) === 0) throw new Error('expected an IP address or localhost');
        return raw;
      },
    },
    port: { flag: 'port', default: DEFAULT_DASHBOARD_PORT, description: 'port to listen on (0 picks a free one)', parse: parse.port() },
    refresh: {
      flag: 'refresh', default: 5000, defaultText: '5s', description: 'how often the signals, graph and traces are read again (and the signals\' window)',
      parse: parse.duration({ min: 1000, max: 60_000 }),
    },
  },
  async run({ values, positionals }, io: CliIo) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    const logger = createLogger({ level: 'info', component: 'weft-dashboard', destination: { write: (line: string) => { io.stderr(line); } } });
    return withRegistry(ctx, async (registry) => {
      // Every waypoint is read even with -n (as weft graph does): a call into the namespace
      // may pass another namespace's waypoint, and the ztunnels' hops from a waypoint pod
      // are told apart only when that pod is a target (else they show as extra L4 edges).
      const targets = async (): Promise<ProxyTarget[]> => proxyTargets(ctx, await registry.load());
      const sources = meshSources({ targets, namespace: values.namespace, refreshMs: values.refresh, logger });
      const server = new DashboardServer({ sources, logger });
      const where = await startDashboard(server, values.address, values.port, logger);
      io.stdout(`weft dashboard: ${dashboardUrl(where)} (read-only; Ctrl-C stops it)\n`);
      const { signal, dispose } = interruptSignal(io);
      try {
        await new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      } finally {
        dispose();
        await server.close();
      }
      return 0;
    });
  },
});
