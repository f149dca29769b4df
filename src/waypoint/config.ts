/**
 * Limits of the waypoint's L7 data path, validated once at the edge (a bad value names
 * its field) and frozen. Defaults follow Envoy's where it has one.
 */
import { WeftError } from '../lib/errors';
import { DEFAULT_SNIFF_TIMEOUT_MS } from './sniff';

export interface L7Config {
  /** Request line plus headers, bytes (Node's maxHeaderSize; HTTP/2 maxHeaderListSize). Larger → 431. */
  maxHeaderBytes: number;
  /** Request header fields, count (Envoy: 100). More → 431. */
  maxHeaderCount: number;
  /** Request body bytes kept for replay on retry (Linkerd: 64 KiB); a larger body streams and is not retried. */
  retryBufferBytes: number;
  /** Mirror requests in flight at once, waypoint-wide; more are dropped (and logged). */
  maxMirrorsInFlight: number;
  /** Wait for the first bytes of a stream on a port that declares no protocol, ms. */
  sniffTimeoutMs: number;
  /** Downstream HTTP/1.1 keep-alive idle time, ms. */
  keepAliveTimeoutMs: number;
  /** Time to receive a request's headers, ms (slow-loris bound). */
  headersTimeoutMs: number;
  /** Idle upstream connections are closed after this, ms. */
  upstreamIdleMs: number;
}

export const DEFAULT_L7_CONFIG: Readonly<L7Config> = Object.freeze({
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  retryBufferBytes: 64 * 1024,
  maxMirrorsInFlight: 64,
  sniffTimeoutMs: DEFAULT_SNIFF_TIMEOUT_MS,
  keepAliveTimeoutMs: 60_000,
  headersTimeoutMs: 30_000,
  upstreamIdleMs: 30_000,
});

const BOUNDS: Record<keyof L7Config, [number, number]> = {
  maxHeaderBytes: [1024, 1024 * 1024],
  maxHeaderCount: [8, 10_000],
  retryBufferBytes: [0, 64 * 1024 * 1024],
  maxMirrorsInFlight: [0, 100_000],
  sniffTimeoutMs: [1, 60_000],
  keepAliveTimeoutMs: [1, 3_600_000],
  headersTimeoutMs: [1, 600_000],
  upstreamIdleMs: [1, 3_600_000],
};

/** Fills defaults and checks every field; throws WEFT_CONFIG_INVALID naming the field. */
export function validateL7Config(raw: Partial<Record<keyof L7Config, unknown>> = {}): Readonly<L7Config> {
  const out = { ...DEFAULT_L7_CONFIG };
  for (const key of Object.keys(raw) as (keyof L7Config)[]) {
    if (!(key in BOUNDS)) {
      throw new WeftError('WEFT_CONFIG_INVALID', `waypoint L7 config: unknown field ${JSON.stringify(key)}; known: ${Object.keys(BOUNDS).join(', ')}`);
    }
    const v = raw[key];
    if (v === undefined) continue;
    const [min, max] = BOUNDS[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new WeftError('WEFT_CONFIG_INVALID', `waypoint L7 config: ${key}=${JSON.stringify(v)} must be an integer from ${min} to ${max}`,
        { details: { field: key, value: v } });
    }
    out[key] = v;
  }
  return Object.freeze(out);
}
