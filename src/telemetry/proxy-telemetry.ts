/**
 * One proxy's observability, wired once from its config: the tracer with its sinks (the
 * span ring that `weft traces` reads, the OTLP exporter when an endpoint is set), the
 * live tap, and the read-only views they serve on the metrics port (15020) beside
 * /metrics. Both the ztunnel and the waypoint app make one and hand it to their data
 * path; tests and benches make the real one the same way.
 */
import type { Registry } from 'prom-client';
import { json, type Handler } from '../lib/http-endpoints';
import type { Logger } from '../lib/log';
import { parseDuration } from '../lib/options';
import { AccessLogPolicy } from './access-log';
import { OtlpExporter } from './otlp-exporter';
import type { AccessLogLevels } from './options';
import { SpanRing } from './span-ring';
import { TapHub } from './tap-hub';
import { Tracer } from './tracer';
import { TAP_PATH, TRACES_PATH, type SpanSink, type TraceQuery } from './types';

export interface TelemetryConfig {
  traceSampling: number;
  traceBufferSpans: number;
  otlpEndpoint: string;
  accessLogSampling: number;
  accessLogLevels: AccessLogLevels;
}

export interface ProxyTelemetryOptions {
  /** `waypoint demo/waypoint` or `ztunnel node-1`. */
  proxy: string;
  config: TelemetryConfig;
  registry: Registry;
  logger: Logger;
  /** [0, 1) for sampling decisions (tests). */
  random?: () => number;
}

export class ProxyTelemetry {
  readonly proxy: string;
  readonly ring: SpanRing;
  readonly tap: TapHub;
  /** Which access-log lines are written (--access-log-sampling, --access-log-levels). */
  readonly accessLog: AccessLogPolicy;
  readonly exporter: OtlpExporter | undefined;
  readonly tracer: Tracer;

  constructor(readonly options: ProxyTelemetryOptions) {
    const { config } = options;
    this.proxy = options.proxy;
    this.ring = new SpanRing(config.traceBufferSpans);
    this.tap = new TapHub({ proxy: options.proxy, registry: options.registry });
    this.accessLog = new AccessLogPolicy({
      sampling: config.accessLogSampling, levels: config.accessLogLevels, registry: options.registry, ...(options.random ? { random: options.random } : {}),
    });
    const sinks: SpanSink[] = [this.ring];
    if (config.otlpEndpoint) {
      this.exporter = new OtlpExporter({ endpoint: config.otlpEndpoint, proxy: options.proxy, registry: options.registry, logger: options.logger.child({ component: 'otlp' }) });
      sinks.push(this.exporter);
    }
    this.tracer = new Tracer({ proxy: options.proxy, sampling: config.traceSampling, sinks, ...(options.random ? { random: options.random } : {}) });
  }

  /** The read-only views for the metrics port: the span ring and the live tap. */
  views(): Record<string, Handler> {
    return {
      [TRACES_PATH]: (_req, url, res) => json(res, 200, this.ring.query(traceQuery(url))),
      [TAP_PATH]: this.tap.handler,
    };
  }

  async close(): Promise<void> {
    this.tap.close();
    await this.exporter?.close();
  }
}

/** `?service=ns/name&since=<epoch ms or duration like 5m>&trace=<id>&limit=N`; bad values are ignored (a view, not a config). */
export function traceQuery(url: URL, now: number = Date.now()): TraceQuery {
  const q: TraceQuery = {};
  const service = url.searchParams.get('service');
  if (service) q.service = service;
  const trace = url.searchParams.get('trace');
  if (trace && /^[0-9a-f]{32}$/.test(trace)) q.traceId = trace;
  const sinceRaw = url.searchParams.get('since') ?? '';
  // A duration (`5m`) looks back from now; a number is epoch ms (what weft traces sends).
  const back = parseDuration(sinceRaw);
  const since = back !== undefined ? now - back : Number(sinceRaw);
  if (Number.isFinite(since) && since > 0) q.sinceMs = since;
  const limit = Number(url.searchParams.get('limit'));
  if (Number.isInteger(limit) && limit > 0) q.limit = limit;
  return q;
}
