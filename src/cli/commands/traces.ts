/**
 * `weft traces`: recent traces stitched across hops, from the proxies' own span rings (no
 * tracing backend needed). Every ztunnel and ready waypoint pod (proxy-targets.ts) is
 * asked for its spans (`GET /debug/traces` on its metrics port, 15020); the answers are
 * merged by trace id and joined parent to child across proxies (trace-view.ts), and each
 * trace is drawn as a waterfall. `-o json` prints the same spans in OTLP's JSON shape
 * (resourceSpans), as the OTLP exporter sends them. A proxy that does not answer is a
 * warning, not a failure of the others.
 */
import { adminGet } from '../admin-client';
import { loadContext, type CliContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { show, type Frame } from '../output';
import { registryViewOptions } from '../registry-command';
import { withRegistry } from '../registry-session';
import { proxyTargets, type ProxyTarget } from '../proxy-targets';
import { mergeSpans, renderWaterfalls, stitchTraces, traceTouches, type StitchedTrace } from '../trace-view';
import { parse, type OptionSpec } from '../../lib/options';
import type { MeshState } from '../../registry/state';
import { otlpTraces } from '../../telemetry/otlp-shape';
import { TRACES_PATH, type SpanRecord } from '../../telemetry/types';

export interface TracesFilter {
  /** `namespace/name`: only traces with a span to that Service. */
  service: string;
  /** How far back (ms): spans that ended since then. */
  sinceMs: number;
  /** One trace id (32 hex digits). */
  traceId: string;
  /** The newest this many traces. */
  limit: number;
}

/** What looks enough like a span to draw; anything else in an answer is skipped. */
function isSpan(x: unknown): x is SpanRecord {
  const s = x as Partial<SpanRecord> | null;
  return typeof s === 'object' && s !== null && typeof s.traceId === 'string' && typeof s.spanId === 'string' && typeof s.name === 'string'
    && typeof s.proxy === 'string' && typeof s.startMs === 'number' && typeof s.endMs === 'number'
    && (s.parentSpanId === undefined || typeof s.parentSpanId === 'string') && typeof s.attributes === 'object' && s.attributes !== null;
}

export interface CollectedSpans {
  spans: SpanRecord[];
  warnings: string[];
  /** Proxies asked, and how many answered. */
  asked: number;
  answered: number;
}

/** Asks every proxy for its spans matching the query (`since` epoch ms, `trace`), all at once, each with the admin client's deadline. */
export async function collectSpans(targets: readonly ProxyTarget[], query: { sinceEpochMs?: number; traceId?: string }): Promise<CollectedSpans> {
  const params = new URLSearchParams();
  if (query.sinceEpochMs !== undefined) params.set('since', String(Math.floor(query.sinceEpochMs)));
  if (query.traceId) params.set('trace', query.traceId);
  const qs = params.toString();
  const path = qs ? `${TRACES_PATH}?${qs}` : TRACES_PATH;
  const warnings: string[] = [];
  const answers: SpanRecord[][] = [];
  await Promise.all(targets.map(async (t) => {
    const where = `${t.proxy}${t.pod ? ` pod ${t.pod}` : ''} (${t.baseUrl})`;
    let data: unknown;
    try {
      data = await adminGet<unknown>({ name: t.proxy, admin: { baseUrl: t.baseUrl } }, path);
    } catch (err) {
      warnings.push(`${where}: not answering (${(err as Error).message})`);
      return;
    }
    if (!Array.isArray(data)) {
      warnings.push(`${where}: answered ${TRACES_PATH} in another shape (expected a list of spans); is it running another Weft version?`);
      return;
    }
    const spans = data.filter(isSpan);
    if (spans.length < data.length) warnings.push(`${where}: ${data.length - spans.length} of ${data.length} spans in another shape were skipped`);
    answers.push(spans);
  }));
  return { spans: mergeSpans(answers), warnings: warnings.sort(), asked: targets.length, answered: answers.length };
}

/** The traces to show: stitched, those touching the Service, the newest `limit` (drawn oldest first, so the newest ends up above the prompt). */
export function selectTraces(spans: readonly SpanRecord[], f: Pick<TracesFilter, 'service' | 'limit'>): StitchedTrace[] {
  let traces = stitchTraces(spans);
  if (f.service) traces = traces.filter((tr) => traceTouches(tr, f.service));
  return f.limit > 0 && traces.length > f.limit ? traces.slice(traces.length - f.limit) : traces;
}

export async function tracesFrame(ctx: Pick<CliContext, 'nodes'>, state: MeshState, f: TracesFilter, now: number = Date.now(), port?: number): Promise<Frame> {
  const targets = proxyTargets(ctx, state, port !== undefined ? { port } : {});
  const collected = await collectSpans(targets, { sinceEpochMs: now - f.sinceMs, ...(f.traceId ? { traceId: f.traceId } : {}) });
  const traces = selectTraces(collected.spans, f);
  const scope = [f.service && `to ${f.service}`, f.traceId && `with id ${f.traceId}`, `in the last ${formatSince(f.sinceMs)}`].filter(Boolean).join(' ');
  return {
    text: traces.length > 0 ? renderWaterfalls(traces) : undefined,
    data: otlpTraces(traces.flatMap((tr) => tr.spans)),
    warnings: collected.warnings,
    empty: targets.length === 0
      ? 'No proxies to ask: the context names no node addresses and no waypoint pod is ready (weft status, weft waypoints).'
      : `No sampled traces ${scope} (of ${collected.answered}/${collected.asked} proxies answering). Spans are kept only for sampled requests: `
        + 'see --trace-sampling (default 1 %) in docs/observability.md.',
    exitCode: targets.length > 0 && collected.answered === 0 ? 1 : 0,
  };
}

function formatSince(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const USAGE = 'weft traces [--service NAMESPACE/NAME] [--since 5m] [--trace ID] [--limit 10] [-o table|json|yaml] [-w]';

const specs = {
  ...registryViewOptions,
  service: {
    flag: 'service', default: '', defaultText: 'every Service', description: 'only traces with a request or connection to this Service (namespace/name)',
    parse: parse.string({ pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, what: 'namespace/name of a Service, e.g. demo/echo' }),
  } satisfies OptionSpec<string>,
  since: {
    flag: 'since', default: 300_000, defaultText: '5m', description: 'spans that ended this long ago or later (500ms, 30s, 5m, 1h)',
    parse: parse.duration({ min: 1, max: 7 * 86_400_000 }),
  } satisfies OptionSpec<number>,
  trace: {
    flag: 'trace', default: '', defaultText: 'any', description: 'one trace id (32 hex digits, as the access log and traceparent show it)',
    parse: (raw: string) => parse.string({ pattern: /^[0-9a-f]{32}$/, what: '32 lower-case hex digits' })(raw.toLowerCase()),
  } satisfies OptionSpec<string>,
  limit: {
    flag: 'limit', default: 10, description: 'the newest this many traces', parse: parse.int({ min: 1, max: 10_000 }),
  } satisfies OptionSpec<number>,
};

export default defineCommand({
  usage: USAGE,
  summary: 'recent traces stitched across the proxies (ztunnels, waypoints), drawn as a waterfall; -o json is OTLP',
  description: 'Every ztunnel and ready waypoint pod is asked for the sampled spans in its memory (GET /debug/traces on\n'
    + 'its metrics port, 15020; --trace-buffer-spans per proxy). Spans are joined by trace id and parent span id\n'
    + 'across proxies: each trace is one block, the span tree indented, with the proxy that made each span, its\n'
    + 'duration, a bar on the trace\'s time span, and ✗ with the response flag on a failed span. -o json prints\n'
    + 'the spans as OTLP/JSON (resourceSpans), as --otlp-endpoint sends them to a collector.\n'
    + 'The CLI needs a route to node and pod addresses (the lab has one).',
  specs,
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    const filter: TracesFilter = { service: values.service, sinceMs: values.since, traceId: values.trace, limit: values.limit };
    return withRegistry(ctx, (session) =>
      show(async () => tracesFrame(ctx, await session.load(), filter), { format: values.output, watch: values.watch, title: 'weft traces', io }));
  },
});
