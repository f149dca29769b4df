/**
 * Weft's spans in OpenTelemetry's shape (OTLP, opentelemetry/proto/trace/v1/trace.proto),
 * as the OTLP/JSON encoding writes it: ids as lower-case hex, times as decimal strings of
 * Unix nanoseconds, enums as numbers, attributes as key/AnyValue pairs. `weft traces -o
 * json` prints it (any OTLP/JSON reader takes it, e.g. the collector's otlpjsonfile
 * receiver), and the OTLP/gRPC exporter sends the same objects after turning the hex ids
 * into bytes (otlp-proto.ts), so the two can not drift apart.
 *
 * One resource per proxy: service.name is the proxy kind (`weft-waypoint`,
 * `weft-ztunnel`), which is how a tracing backend groups them, and the proxy's own name is
 * an attribute (weft.proxy.name), so two waypoints stay apart.
 */
import { VERSION } from '../lib/version';
import type { SpanKind, SpanRecord } from './types';

export type OtlpAnyValue = { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean };

export interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

/** opentelemetry.proto.trace.v1.Status.StatusCode */
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;

/** opentelemetry.proto.trace.v1.Span.SpanKind */
export const SPAN_KIND: Record<SpanKind, number> = { internal: 1, server: 2, client: 3 };

export interface OtlpSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span (proto3's default for bytes). */
  parentSpanId: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: OtlpKeyValue[];
  status: { code: number; message?: string };
}

export interface OtlpResourceSpans {
  resource: { attributes: OtlpKeyValue[] };
  scopeSpans: { scope: { name: string; version: string }; spans: OtlpSpan[] }[];
}

/** ExportTraceServiceRequest, and what `weft traces -o json` prints. */
export interface OtlpTraces {
  resourceSpans: OtlpResourceSpans[];
}

/** The instrumentation scope of every span Weft makes. */
export const SCOPE = { name: 'weft', version: VERSION };

export function anyValue(v: string | number | boolean): OtlpAnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isSafeInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function keyValues(attrs: Record<string, string | number | boolean>): OtlpKeyValue[] {
  return Object.entries(attrs).map(([key, v]) => ({ key, value: anyValue(v) }));
}

/**
 * Epoch milliseconds (fractional) as a decimal string of nanoseconds. A double of epoch
 * milliseconds is exact only to ~0.24 µs, and multiplied by 1e6 it loses more, so the
 * whole milliseconds and the microseconds are joined as integers: microsecond
 * resolution, the same digits every time.
 */
export function msToUnixNanos(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '0';
  const whole = Math.floor(ms);
  const micros = Math.min(999, Math.round((ms - whole) * 1000));
  return (BigInt(whole) * 1_000_000n + BigInt(micros) * 1000n).toString();
}

/** `waypoint demo/waypoint` → kind waypoint, name demo/waypoint; anything else is kept whole as the name. */
export function proxyParts(proxy: string): { kind: string; name: string } {
  const m = /^(ztunnel|waypoint) (.+)$/.exec(proxy);
  return m ? { kind: m[1]!, name: m[2]! } : { kind: 'proxy', name: proxy };
}

/** The resource of one proxy's spans. */
export function proxyResource(proxy: string): OtlpKeyValue[] {
  const { kind, name } = proxyParts(proxy);
  const attrs: Record<string, string> = {
    'service.name': `weft-${kind}`,
    'service.version': VERSION,
    'weft.proxy.name': name,
    'weft.proxy.kind': kind,
  };
  // A waypoint is `namespace/name`: its namespace is a Kubernetes resource attribute; a ztunnel's name is its node.
  const slash = name.indexOf('/');
  if (kind === 'waypoint' && slash > 0) attrs['k8s.namespace.name'] = name.slice(0, slash);
  if (kind === 'ztunnel') attrs['k8s.node.name'] = name;
  return keyValues(attrs);
}

export function otlpSpan(s: SpanRecord): OtlpSpan {
  return {
    traceId: s.traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId ?? '',
    name: s.name,
    kind: SPAN_KIND[s.kind] ?? 0,
    startTimeUnixNano: msToUnixNanos(s.startMs),
    endTimeUnixNano: msToUnixNanos(s.endMs),
    attributes: keyValues(s.attributes),
    status: s.error !== undefined ? { code: STATUS_CODE.error, message: s.error } : { code: STATUS_CODE.unset },
  };
}

/** Spans grouped by the proxy that made them (one resource each), in the order first seen. */
export function otlpTraces(spans: Iterable<SpanRecord>): OtlpTraces {
  const byProxy = new Map<string, OtlpSpan[]>();
  for (const s of spans) {
    let list = byProxy.get(s.proxy);
    if (!list) byProxy.set(s.proxy, (list = []));
    list.push(otlpSpan(s));
  }
  return {
    resourceSpans: [...byProxy].map(([proxy, list]) => ({
      resource: { attributes: proxyResource(proxy) },
      scopeSpans: [{ scope: { ...SCOPE }, spans: list }],
    })),
  };
}
