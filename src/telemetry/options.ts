/**
 * The observability settings of every proxy (`weft ztunnel` and `weft waypoint run`
 * take the same ones): trace sampling and the span ring, the OTLP export, and access-log
 * volume. Validated at the edge like every option: a bad value names its flag.
 */
import { parse } from '../lib/options';

/** Parent-based ratio sampling's ratio when the caller did not decide: 1 %. */
export const DEFAULT_TRACE_SAMPLING = 0.01;

function ratio(raw: string): number {
  const n = Number(raw.endsWith('%') ? raw.slice(0, -1) : raw) / (raw.endsWith('%') ? 100 : 1);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new Error('expected a ratio from 0 to 1 (or 0% to 100%)');
  return n;
}

/** `demo=info,legacy=off`: per-namespace access-log levels (info: every line; off: none). */
export type AccessLogLevels = Readonly<Record<string, 'info' | 'off'>>;

function accessLogLevels(raw: string): AccessLogLevels {
  const out: Record<string, 'info' | 'off'> = {};
  if (raw.trim() === '') return out;
  for (const part of raw.split(',')) {
    const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)=(info|off)$/.exec(part.trim());
    if (!m) throw new Error(`expected namespace=info|off pairs separated by commas, e.g. demo=info,legacy=off (bad part "${part}")`);
    out[m[1]!] = m[3] as 'info' | 'off';
  }
  return out;
}

export const telemetryOptions = {
  traceSampling: {
    flag: 'trace-sampling', env: 'WEFT_TRACE_SAMPLING', default: DEFAULT_TRACE_SAMPLING, defaultText: '0.01',
    description: 'share of new traces sampled (parent-based: a request whose traceparent says sampled is always sampled); 0 turns new traces off',
    parse: ratio,
  },
  traceBufferSpans: {
    flag: 'trace-buffer-spans', env: 'WEFT_TRACE_BUFFER_SPANS', default: 4096,
    description: 'sampled spans kept in memory for weft traces (the oldest go first)', parse: parse.int({ min: 0, max: 1_000_000 }),
  },
  otlpEndpoint: {
    flag: 'otlp-endpoint', env: 'WEFT_OTLP_ENDPOINT', default: '', defaultText: 'none (no export)',
    description: 'OTLP/gRPC collector to export sampled spans to, e.g. http://otel-collector.observability:4317',
    parse: (raw: string) => (raw === '' ? '' : parse.url(['http:', 'https:'])(raw)),
  },
  accessLogSampling: {
    flag: 'access-log-sampling', env: 'WEFT_ACCESS_LOG_SAMPLING', default: 1, defaultText: '1 (every line)',
    description: 'share of successful requests/connections written to the access log; failures and sampled traces are always written',
    parse: ratio,
  },
  accessLogLevels: {
    flag: 'access-log-levels', env: 'WEFT_ACCESS_LOG_LEVELS', default: {} as AccessLogLevels, defaultText: 'every namespace: info',
    description: 'per-namespace access logs, e.g. demo=info,legacy=off (by the destination\'s namespace, else the source\'s)',
    parse: accessLogLevels,
  },
};
