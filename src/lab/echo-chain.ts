/**
 * The echo app as one hop of a call chain, for the cross-hop retry demonstration
 * (docs/resilience.md, "Retries"): a request with `?via=middle.demo,backend.demo`
 * is not answered by this pod but passed on to `http://middle.demo<path>` with
 * `via=backend.demo` and the rest of its query unchanged, and the next hop's status and
 * body are the answer. The last hop (no `via` left) answers as the echo always does,
 * so `?via=middle.demo,backend.demo&status=503` is a chain whose backend fails.
 *
 * The app propagates the headers a well-behaved service propagates from the request it
 * serves to the requests it makes: trace context (W3C traceparent, tracestate, baggage),
 * x-request-id, and Weft's retry mark. The last is what lets the waypoints of a chain
 * hold its retries to one budget (src/resilience/retry.ts): a retry made by the first
 * hop reaches the last hop still marked.
 *
 * Only Node builtins, like the rest of the echo app.
 */
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';

/** The query parameter naming the next hops, comma-separated (`host[:port]`). */
export const VIA_PARAM = 'via';

/** Weft's retry mark (RETRY_HEADER in src/resilience/retry.ts; a test keeps the two equal). */
export const RETRY_MARK_HEADER = 'x-weft-retry';

/** Headers propagated from the served request to the next hop's. */
export const PROPAGATED_HEADERS: readonly string[] = ['traceparent', 'tracestate', 'baggage', 'x-request-id', RETRY_MARK_HEADER];

/** A next hop waits at most this long for its answer, then the chain answers 504. */
const HOP_TIMEOUT_MS = 10_000;

/** The next hop of a request: its URL and the headers to send; undefined when the request has no `via`. */
export function nextHop(url: URL, headers: IncomingMessage['headers']): { url: string; headers: Record<string, string> } | undefined {
  const via = url.searchParams.get(VIA_PARAM);
  if (via === null) return undefined;
  const [host, ...rest] = via.split(',').filter((h) => h !== '');
  if (host === undefined || !/^[a-z0-9.-]+(:\d{1,5})?$/.test(host)) return undefined;
  const q = new URLSearchParams(url.searchParams);
  if (rest.length > 0) q.set(VIA_PARAM, rest.join(','));
  else q.delete(VIA_PARAM);
  const query = q.toString();
  const out: Record<string, string> = {};
  for (const name of PROPAGATED_HEADERS) {
    const v = headers[name];
    if (typeof v === 'string') out[name] = v;
  }
  return { url: `http://${host}${url.pathname}${query ? `?${query}` : ''}`, headers: out };
}

/** Keep-alive to the next hops, as a real service's client would. */
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** Passes the request on to its next hop and answers with that hop's status and body. */
export function callNext(hop: { url: string; headers: Record<string, string> }, method: string, res: ServerResponse): void {
  const answer = (status: number, body: Buffer | string, type = 'text/plain') => {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const out = httpRequest(hop.url, { method, headers: hop.headers, agent, timeout: HOP_TIMEOUT_MS }, (up) => {
    const chunks: Buffer[] = [];
    up.on('data', (c: Buffer) => chunks.push(c));
    up.on('end', () => answer(up.statusCode ?? 502, Buffer.concat(chunks), String(up.headers['content-type'] ?? 'text/plain')));
    up.on('error', (err) => answer(502, `next hop ${hop.url}: ${err.message}\n`));
  });
  out.on('timeout', () => out.destroy(new Error('timed out')));
  out.on('error', (err) => answer(err.message === 'timed out' ? 504 : 502, `next hop ${hop.url}: ${err.message}\n`));
  out.end();
}
