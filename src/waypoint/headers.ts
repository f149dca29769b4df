/**
 * Header work of the proxy, one place for both HTTP versions: hop-by-hop headers out
 * (both ways; Node's http2 throws if they reach `respond()`), the route's header edits
 * in, the original client in `forwarded`/`x-forwarded-for`. Trace headers are the
 * tracer's (src/telemetry/tracer.ts traceRequest).
 */
import type { HeaderModifier } from '../gateway/types';
import type { HeaderMap, Peer } from './types';

/** RFC 9110 §7.6.1 connection-specific headers, plus the ones HTTP/2 forbids (RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings']);

export interface StripOptions {
  /** Keep `te: trailers` (the one TE value that crosses; gRPC needs it). */
  keepTeTrailers?: boolean;
  /** Keep `connection: upgrade` and `upgrade` (WebSocket). */
  keepUpgrade?: boolean;
}

const NO_OPTIONS: StripOptions = {};

/**
 * The headers without hop-by-hop ones, nor any the Connection header names, nor
 * pseudo-headers. Runs twice per request: no Set unless a Connection header names
 * something, no entry pairs.
 */
export function stripHopByHop(headers: HeaderMap, opts: StripOptions = NO_OPTIONS): HeaderMap {
  let named: Set<string> | undefined;
  if (headers.connection !== undefined) {
    for (const v of asList(headers.connection)) {
      for (const token of v.split(',')) {
        const t = token.trim().toLowerCase();
        if (t) (named ??= new Set()).add(t);
      }
    }
  }
  const out: HeaderMap = {};
  const names = Object.keys(headers);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const value = headers[name];
    if (value === undefined || name.startsWith(':')) continue;
    const lower = name.toLowerCase();
    if (opts.keepUpgrade && (lower === 'upgrade' || lower === 'connection')) {
      if (lower === 'connection') out.connection = 'upgrade';
      else out.upgrade = value;
      continue;
    }
    if (lower === 'te') {
      if (opts.keepTeTrailers && asList(value).some((v) => v.split(',').some((t) => t.trim().toLowerCase() === 'trailers'))) out.te = 'trailers';
      continue;
    }
    if (HOP_BY_HOP.has(lower) || (named?.has(lower) && !(opts.keepUpgrade && lower === 'upgrade'))) continue;
    out[lower] = value;
  }
  return out;
}

/** Applies a RequestHeaderModifier/ResponseHeaderModifier: set replaces, add appends a value, remove deletes. */
export function applyHeaderEdits(headers: HeaderMap, edits: HeaderModifier | undefined): HeaderMap {
  if (!edits) return headers;
  for (const { name, value } of edits.set) headers[name.toLowerCase()] = value;
  for (const { name, value } of edits.add) {
    const lower = name.toLowerCase();
    const prev = headers[lower];
    headers[lower] = prev === undefined ? value : [...asList(prev), value];
  }
  for (const name of edits.remove) delete headers[name.toLowerCase()];
  return headers;
}

/** RFC 7239 node: IPv6 in brackets, with the port, quoted. */
export function forwardedFor(peer: Peer): string {
  const host = peer.address.includes(':') ? `[${peer.address}]` : peer.address;
  return `for="${host}:${peer.port}"`;
}

/** Appends the original client to `forwarded` and `x-forwarded-for` (proxies append, RFC 7239 §4). */
export function addForwarded(headers: HeaderMap, client: Peer): void {
  headers.forwarded = appendValue(headers.forwarded, forwardedFor(client));
  headers['x-forwarded-for'] = appendValue(headers['x-forwarded-for'], client.address);
  if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = 'http';
}

export function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function appendValue(prev: string | string[] | undefined, value: string): string {
  const list = asList(prev);
  return list.length ? `${list.join(', ')}, ${value}` : value;
}

/** First value of a header. */
export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
