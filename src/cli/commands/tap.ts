/**
 * `weft tap`: the live stream of requests and connections as they finish, from every
 * proxy at once (like `linkerd viz tap` or `hubble observe`). Each ztunnel and ready
 * waypoint pod (proxy-targets.ts) streams its matching TapEvents from GET /debug/tap on
 * its metrics port (telemetry/tap-hub.ts); the streams are merged as events arrive
 * (tap-streams.ts) and printed one line each, or as JSON lines with -o json. The filter
 * is applied by the proxies, so only matching events cross the network. A proxy that
 * cannot be reached is a warning (once per proxy and reason), and is asked again.
 * Stops after --max events, after --duration, or on Ctrl-C.
 */
import { contextOptions, loadContext } from '../context';
import { defineCommand, noPositionals, type CliIo } from '../io';
import { interruptSignal } from '../output';
import { proxyTargets, type ProxyTarget } from '../proxy-targets';
import { namespaceOption } from '../registry-command';
import { withRegistry } from '../registry-session';
import { followTaps } from '../tap-streams';
import { WeftError } from '../../lib/errors';
import { parse, type OptionSpec } from '../../lib/options';
import { parseTapFilter, TapFilterError } from '../../telemetry/tap-hub';
import type { TapEvent, TapFilter, TapPeer } from '../../telemetry/types';

export const TAP_FORMATS = ['text', 'json'] as const;
export type TapFormat = (typeof TAP_FORMATS)[number];

/** The proxies' filter from the flags, checked as the proxies check it (a bad --status is a usage error here, not a 400 per proxy). */
export function tapFilter(f: { namespace: string; service: string; path: string; status: string }): TapFilter {
  try {
    return parseTapFilter(new URLSearchParams({ namespace: f.namespace, service: f.service, path: f.path, status: f.status }));
  } catch (err) {
    if (err instanceof TapFilterError) throw new WeftError('WEFT_USAGE', `weft tap: --${err.message} (see weft tap --help)`);
    throw err;
  }
}

function peerText(p: TapPeer & { service?: string }): string {
  if (p.service) return p.service;
  if (p.workload) return `${p.namespace ?? '?'}/${p.workload}`;
  return p.address ?? '?';
}

function durationText(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : `${ms.toFixed(1)}ms`;
}

/**
 * One event as one line: time (UTC, to the millisecond), proxy, verdict, source →
 * destination (the Service when there is one), what happened (method, path, status; or
 * the connection's direction and bytes), duration, response flag, trace id.
 */
export function formatTapLine(e: TapEvent): string {
  const time = e.time.slice(11, 23) || e.time;
  const what = e.kind === 'request'
    ? `${e.method ?? '?'} ${e.path ?? '/'} ${e.status || '-'}${e.attempts && e.attempts > 1 ? ` (${e.attempts} attempts)` : ''}`
    : `TCP ${e.direction ?? ''} ${e.bytesSent ?? 0}B↑ ${e.bytesReceived ?? 0}B↓`.replace('  ', ' ');
  return [
    time, e.proxy.padEnd(24), e.verdict.padEnd(9), `${peerText(e.source)} → ${peerText(e.destination)}`, what,
    durationText(e.durationMs), e.responseFlag, e.mtls ? 'mTLS' : 'plain', e.traceId ?? '-',
  ].join('  ') + '\n';
}

export interface TapRun {
  /** The proxies to stream from; called again when a stream ended or failed. */
  targets(): Promise<readonly ProxyTarget[]>;
  filter: TapFilter;
  format: TapFormat;
  /** Stop after this many events (0: no limit). */
  max: number;
  /** Stop after this long (0: no limit). */
  durationMs: number;
  io: CliIo;
  /** How soon a proxy that failed is asked again. */
  retryMs?: number;
}

/** Streams until --max, --duration or the io's signal (else Ctrl-C); resolves with the exit code. */
export function runTap(r: TapRun): Promise<number> {
  const { signal, dispose } = interruptSignal(r.io);
  const warned = new Set<string>();
  let seen = 0;
  return new Promise((resolve) => {
    let done = false;
    let stop = () => {};
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      stop();
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      dispose();
      resolve(0);
    };
    if (signal.aborted) return finish();
    signal.addEventListener('abort', finish);
    if (r.durationMs > 0) timer = setTimeout(finish, r.durationMs);
    stop = followTaps({
      targets: r.targets,
      filter: r.filter,
      retryMs: r.retryMs ?? 5000,
      onEvent: (e) => {
        if (done) return;
        r.io.stdout(r.format === 'json' ? JSON.stringify(e) + '\n' : formatTapLine(e));
        if (r.max > 0 && ++seen >= r.max) finish();
      },
      onError: (proxy, reason) => {
        // Asked again every retryMs: one warning per proxy and reason, not one per retry.
        const key = `${proxy}\u0000${reason}`;
        if (done || warned.has(key)) return;
        warned.add(key);
        r.io.stderr(`warning: ${proxy}: ${reason}\n`);
      },
    });
  });
}

const USAGE = 'weft tap [-n NAMESPACE] [--service S] [--path P] [--status 5xx] [-o text|json] [--max N] [--duration D]';

export default defineCommand({
  usage: USAGE,
  summary: 'the live stream of requests and connections through the proxies, with verdicts (routed, retried, denied, ...)',
  description: 'Every ztunnel and ready waypoint pod streams what finishes (GET /debug/tap on its metrics port,\n'
    + '15020): waypoints one event per request, ztunnels one per connection. The filter is applied by\n'
    + 'the proxies. VERDICT is routed, retried, denied, shed, limited, overflow, faulted, ejected,\n'
    + 'no_route, failed or cancelled (docs/observability.md). A proxy that cannot be reached is a\n'
    + 'warning and is asked again every 5 s. Stops after --max events, --duration, or Ctrl-C.',
  specs: {
    ...contextOptions,
    namespace: { ...namespaceOption, description: 'only events whose source or destination is in this namespace (-n)' },
    service: { flag: 'service', default: '', defaultText: 'any', description: 'only requests/connections to this Service (namespace/name or name)', parse: parse.string() },
    path: { flag: 'path', default: '', defaultText: 'any', description: 'only requests whose path starts with this (connections have none)', parse: parse.string() },
    status: { flag: 'status', default: '', defaultText: 'any', description: 'only requests answered with this status class (5xx, 4xx) or code (503)', parse: parse.string() },
    output: {
      flag: 'output', default: 'text' as TapFormat, description: 'output format: text (one line per event) or json (one TapEvent per line) (-o)',
      parse: parse.oneOf(TAP_FORMATS),
    } satisfies OptionSpec<TapFormat>,
    max: { flag: 'max', default: 0, defaultText: 'no limit', description: 'stop after this many events', parse: parse.int({ min: 1, max: 100_000_000 }) },
    duration: {
      flag: 'duration', default: 0, defaultText: 'until Ctrl-C', description: 'stop after this long (e.g. 30s, 5m)', parse: parse.duration({ min: 1, max: 7 * 24 * 3_600_000 }),
    } satisfies OptionSpec<number>,
  },
  footer: 'Examples:\n'
    + '  weft tap -n demo\n'
    + '  weft tap --service demo/echo --status 5xx\n'
    + '  weft tap -o json --max 100 > events.jsonl',
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const filter = tapFilter(values);
    const ctx = loadContext(values, io.env);
    const read = () => withRegistry(ctx, async (session) => proxyTargets(ctx, await session.load()));
    // The first read fails the command (no registry, no proxies); later ones are retries.
    let first: readonly ProxyTarget[] | undefined = await read();
    if (first.length === 0) {
      throw new WeftError('WEFT_CONTEXT_MISSING', 'weft tap: no proxy to tap: the context names no node with an address and the registry has no ready waypoint pod; '
        + 'start the lab (scripts/lab up) or pick a context whose nodes run a ztunnel (--context)');
    }
    return runTap({
      targets: async () => {
        const t = first ?? await read();
        first = undefined;
        return t;
      },
      filter, format: values.output, max: values.max, durationMs: values.duration, io,
    });
  },
});
