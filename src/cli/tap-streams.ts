/**
 * The live tap of the whole mesh as one stream: a `GET /debug/tap` (TAP_PATH) to every
 * proxy (proxy-targets.ts), each answer read line by line (src/telemetry/tap-hub.ts:
 * a `{"connected":...}` line first, then one TapEvent per line, empty keep-alive
 * lines), every event handed to one callback. A proxy that ends or refuses its stream
 * is asked again after `retryMs`, and the set of proxies is read again then, so a
 * waypoint pod that starts later joins. Stops when the returned function is called.
 */
import * as http from 'node:http';
import { VERSION } from '../lib/version';
import { TAP_PATH, type TapEvent, type TapFilter } from '../telemetry/types';
import type { ProxyTarget } from './proxy-targets';

/** A longer line is not a TapEvent (paths are bounded); the stream is dropped. */
const MAX_LINE_BYTES = 64 * 1024;
/** Of a refusal's body, what is read for its `{"error": ...}` reason. */
const MAX_REFUSAL_BYTES = 4096;

/** `HTTP <status> to GET <url>`, and the proxy's reason when its body is `{"error": "..."}` (e.g. a ztunnel with --workers). */
function refusal(req: http.ClientRequest, res: http.IncomingMessage, url: string, report: (reason: string) => void): void {
  // Cut short, the destroyed request also errors the response: one report, not two.
  let said = false;
  const reportOnce = (reason: string) => {
    if (said) return;
    said = true;
    report(reason);
  };
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    body += chunk;
    if (body.length <= MAX_REFUSAL_BYTES) return;
    reportOnce(`HTTP ${res.statusCode} to GET ${url}`);
    req.destroy();
  });
  res.on('end', () => {
    let error: unknown;
    try {
      error = (JSON.parse(body) as { error?: unknown }).error;
    } catch { /* not JSON: the status says it */ }
    reportOnce(`HTTP ${res.statusCode} to GET ${url}${typeof error === 'string' ? `: ${error}` : ''}`);
  });
  res.on('error', () => reportOnce(`HTTP ${res.statusCode} to GET ${url}`));
}

export interface TapStreamsOptions {
  /** The proxies now; called again on every retry. */
  targets(): Promise<readonly ProxyTarget[]>;
  filter?: TapFilter;
  onEvent(event: TapEvent): void;
  /** A proxy's stream failed or ended (the reason is for the operator). */
  onError?(proxy: string, reason: string): void;
  retryMs?: number;
}

function tapUrl(target: ProxyTarget, filter: TapFilter): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v) q.set(k, String(v));
  const qs = q.toString();
  return `${target.baseUrl}${TAP_PATH}${qs ? `?${qs}` : ''}`;
}

function isTapEvent(v: unknown): v is TapEvent {
  const e = v as TapEvent;
  return typeof e === 'object' && e !== null && typeof e.verdict === 'string' && typeof e.proxy === 'string'
    && typeof e.source === 'object' && e.source !== null && typeof e.destination === 'object' && e.destination !== null;
}

/** Opens one stream per proxy (keyed by base URL) and keeps them open; returns stop(). */
export function followTaps(opts: TapStreamsOptions): () => void {
  const open = new Map<string, http.ClientRequest>();
  const retryMs = opts.retryMs ?? 2000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const follow = (target: ProxyTarget) => {
    const url = tapUrl(target, opts.filter ?? {});
    const req = http.get(url, { headers: { accept: 'application/x-ndjson', 'user-agent': `weft-cli/${VERSION}` }, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        refusal(req, res, url, (reason) => opts.onError?.(target.proxy, reason));
        return;
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let v: unknown;
          try {
            v = JSON.parse(line);
          } catch {
            continue;
          }
          if (isTapEvent(v)) opts.onEvent(v);
        }
        if (buf.length > MAX_LINE_BYTES) {
          opts.onError?.(target.proxy, `a line of more than ${MAX_LINE_BYTES} bytes from ${url}`);
          req.destroy();
        }
      });
    });
    req.on('error', (err) => { if (!stopped) opts.onError?.(target.proxy, `${url}: ${err.message}`); });
    req.on('close', () => { if (open.get(target.baseUrl) === req) open.delete(target.baseUrl); });
    open.set(target.baseUrl, req);
  };

  const refresh = async () => {
    timer = undefined;
    try {
      const targets = await opts.targets();
      if (stopped) return;
      for (const t of targets) if (!open.has(t.baseUrl)) follow(t);
    } catch (err) {
      opts.onError?.('registry', (err as Error).message);
    }
    if (!stopped) timer = setTimeout(() => { void refresh(); }, retryMs).unref();
  };
  void refresh();

  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const req of open.values()) req.destroy();
    open.clear();
  };
}
