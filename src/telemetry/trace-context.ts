/**
 * Trace context on the wire: W3C `traceparent`/`tracestate` read and written, Zipkin B3
 * (`b3` single header, `x-b3-*` headers) read. A proxy never trusts a malformed header:
 * a bad traceparent is ignored and replaced (with its tracestate, which belonged to it),
 * so one broken client cannot break the trace of the hops behind it.
 *
 * W3C Trace Context §3.2: version 00 is exactly `00-<32 hex>-<16 hex>-<2 hex>`; a higher
 * version is read by its first four fields; version ff and all-zero ids are invalid;
 * upper-case hex is invalid. Flag bit 0 is "sampled".
 */
import { randomHex } from '../lib/random-pool';

/** Header values as Node gives them (lower-case names). */
type Headers = Record<string, string | string[] | undefined>;

/** What a request carried: whose child it is, and the caller's sampling decision. */
export interface TraceContext {
  /** 32 lower-case hex digits. */
  traceId: string;
  /** The caller's span: 16 lower-case hex digits. */
  parentId: string;
  /** true/false: the caller decided; undefined: it deferred (B3 without a sampling state). */
  sampled: boolean | undefined;
  /** The W3C tracestate that came with the traceparent (vendor entries, passed on as is). */
  tracestate?: string;
}

const HEX = /^[0-9a-f]+$/;
const ZERO = /^0+$/;

function id(s: string, len: number): boolean {
  return s.length === len && HEX.test(s) && !ZERO.test(s);
}

/** A W3C traceparent, or undefined when it is malformed (or two were sent: neither is trusted). */
export function parseTraceparent(value: string | string[] | undefined): TraceContext | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  // Version 00 is exactly 55 characters; a future version may append fields after a dash.
  if (v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  const version = v.slice(0, 2);
  if (!HEX.test(version) || version === 'ff') return undefined;
  if (v.length !== 55 && (version === '00' || v[55] !== '-')) return undefined;
  const traceId = v.slice(3, 35);
  const parentId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!id(traceId, 32) || !id(parentId, 16) || !HEX.test(flags)) return undefined;
  return { traceId, parentId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/** `00-<trace>-<span>-01|00`. */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

/** A 64-bit B3 trace id is the low half of a 128-bit W3C one. */
function b3TraceId(s: string): string | undefined {
  const t = s.toLowerCase();
  if (t.length === 16 && id(t, 16)) return `${'0'.repeat(16)}${t}`;
  return id(t, 32) ? t : undefined;
}

/** B3 sampling state: `1`/`true`/`d` (debug) sample, `0`/`false` do not, absent defers. */
function b3Sampled(s: string | undefined): boolean | undefined | null {
  if (s === undefined || s === '') return undefined;
  switch (s.toLowerCase()) {
    case '1': case 'true': case 'd': return true;
    case '0': case 'false': return false;
    default: return null;
  }
}

/**
 * A B3 single header `{trace}-{span}[-{sampling}[-{parent}]]`. A lone sampling state
 * (`b3: 0`) carries only a decision: it is returned as `{ sampled }` without ids.
 */
export function parseB3Single(value: string | string[] | undefined): TraceContext | { sampled: boolean } | undefined {
  if (typeof value !== 'string') return undefined;
  const parts = value.trim().split('-');
  if (parts.length === 1) {
    const s = b3Sampled(parts[0]);
    return typeof s === 'boolean' ? { sampled: s } : undefined;
  }
  if (parts.length > 4) return undefined;
  const traceId = b3TraceId(parts[0]!);
  const parentId = parts[1]!.toLowerCase();
  const sampled = b3Sampled(parts[2]);
  if (!traceId || !id(parentId, 16) || sampled === null) return undefined;
  return { traceId, parentId, sampled };
}

/** The `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags` headers. */
export function parseB3Multi(headers: Headers): TraceContext | undefined {
  const trace = headers['x-b3-traceid'];
  const span = headers['x-b3-spanid'];
  if (typeof trace !== 'string' || typeof span !== 'string') return undefined;
  const traceId = b3TraceId(trace.trim());
  const parentId = span.trim().toLowerCase();
  const flags = headers['x-b3-flags'];
  const sampledRaw = headers['x-b3-sampled'];
  const sampled = flags === '1' ? true : b3Sampled(typeof sampledRaw === 'string' ? sampledRaw.trim() : undefined);
  if (!traceId || !id(parentId, 16) || sampled === null) return undefined;
  return { traceId, parentId, sampled };
}

/**
 * The context a request carries: its W3C traceparent (with its tracestate) when valid,
 * else B3 single, else B3 multi. `decision` is set when only a B3 sampling state came;
 * `w3c` when the context is the request's own valid traceparent.
 */
export function extractContext(headers: Headers): { context?: TraceContext; decision?: boolean; w3c?: true } {
  const w3c = parseTraceparent(headers.traceparent);
  if (w3c) {
    const ts = headers.tracestate;
    // Several tracestate headers are one list (W3C §3.3.1: combined in order).
    if (ts !== undefined) w3c.tracestate = Array.isArray(ts) ? ts.join(',') : ts;
    return { context: w3c, w3c: true };
  }
  if (headers.b3 !== undefined) {
    const b3 = parseB3Single(headers.b3);
    if (b3 && 'traceId' in b3) return { context: b3 };
    if (b3) return { decision: b3.sampled };
  }
  if (headers['x-b3-traceid'] !== undefined) {
    const multi = parseB3Multi(headers);
    if (multi) return { context: multi };
  }
  return {};
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** 16 random bytes as a trace id (never all zero: W3C makes it invalid). */
export function newTraceId(): string {
  const t = randomHex(16);
  return t === ZERO_TRACE ? `${ZERO_TRACE.slice(0, 31)}1` : t;
}

/** 8 random bytes as a span id (never all zero). */
export function newSpanId(): string {
  const s = randomHex(8);
  return s === ZERO_SPAN ? `${ZERO_SPAN.slice(0, 15)}1` : s;
}
