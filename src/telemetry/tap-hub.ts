/**
 * The live tap of one proxy: `GET /debug/tap?namespace=&service=&path=&status=` streams
 * every finished request/connection matching the filter as one JSON line (TapEvent),
 * like `linkerd viz tap` or `hubble observe` read from their proxies.
 *
 * The stream (application/x-ndjson, chunked): a first line `{"connected":{...}}` as soon
 * as the subscription holds (so a client knows it is listening before any event), then
 * one TapEvent per line, and an empty line every `keepaliveMs` so idle streams are not
 * cut by idle timeouts and a dead reader is noticed.
 *
 * Bounds: at most `maxSubscribers` listen at once (more are refused 503 with what to
 * do); a subscriber whose unsent bytes (res.writableLength) pass `maxBufferedBytes` reads
 * too slowly and is dropped (weft_tap_dropped_total), never buffered without bound.
 * Publishing costs one boolean check when nobody listens (`active`).
 */
import type { ServerResponse } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import { realClock, type Clock } from '../lib/clock';
import { json, type Handler } from '../lib/http-endpoints';
import type { TapEvent, TapFilter } from './types';

export interface TapHubOptions {
  /** The proxy's name, told in the stream's first line. */
  proxy?: string;
  /** Where the tap's metrics go; absent: not counted (unit tests). */
  registry?: Registry;
  /** Subscribers at once (default 8): each costs a JSON encoding per matching event. */
  maxSubscribers?: number;
  /** Unsent bytes past which a subscriber is dropped as too slow (default 1 MiB). */
  maxBufferedBytes?: number;
  /** An empty line this often (default 15 s). */
  keepaliveMs?: number;
  clock?: Clock;
}

/** A malformed filter: the tap answers 400 with `message` rather than streaming everything. */
export class TapFilterError extends Error {}

/** `?namespace=&service=&path=&status=`; empty values are absent. Throws TapFilterError on a bad `status` or `path`. */
export function parseTapFilter(params: URLSearchParams): TapFilter {
  const f: TapFilter = {};
  const namespace = params.get('namespace');
  if (namespace) f.namespace = namespace;
  const service = params.get('service');
  if (service) f.service = service;
  const path = params.get('path');
  if (path) {
    if (!path.startsWith('/')) throw new TapFilterError(`path must be a path prefix starting with "/" (got "${path.slice(0, 64)}")`);
    f.path = path;
  }
  const status = params.get('status');
  if (status) {
    if (!/^[1-5](xx|\d\d)$/i.test(status)) throw new TapFilterError(`status must be a class such as 5xx or one code such as 503 (got "${status.slice(0, 16)}")`);
    f.status = status.toLowerCase();
  }
  return f;
}

/**
 * Whether `e` is one `f` asks for. namespace: the source's or the destination's
 * (workload or Service); service: the destination Service as `namespace/name` or `name`;
 * path: a prefix of the request's path; status: a class (`5xx`) or a code. A filter on
 * path or status only matches requests (connections have neither).
 */
export function tapMatches(f: TapFilter, e: TapEvent): boolean {
  if (f.namespace !== undefined && e.source.namespace !== f.namespace && e.destination.namespace !== f.namespace
    && !(e.destination.service?.startsWith(`${f.namespace}/`) ?? false)) return false;
  if (f.service !== undefined) {
    const svc = e.destination.service;
    if (svc === undefined || (svc !== f.service && svc.slice(svc.indexOf('/') + 1) !== f.service)) return false;
  }
  if (f.path !== undefined && !(e.path?.startsWith(f.path) ?? false)) return false;
  if (f.status !== undefined) {
    if (e.status === undefined || e.status === 0) return false;
    if (f.status.endsWith('xx') ? Math.floor(e.status / 100) !== Number(f.status[0]) : e.status !== Number(f.status)) return false;
  }
  return true;
}

interface Subscriber {
  filter: TapFilter;
  res: ServerResponse;
}

export class TapHub {
  /** True while a subscriber listens: build TapEvents only then (a field, read on every request). */
  active = false;
  private readonly subscribers = new Set<Subscriber>();
  private readonly max: number;
  private readonly maxBuffered: number;
  private readonly keepaliveMs: number;
  private readonly clock: Clock;
  private keepalive: unknown;
  private readonly listening: Gauge | undefined;
  private readonly dropped: Counter<'reason'> | undefined;
  private readonly refused: Counter | undefined;

  constructor(private readonly options: TapHubOptions = {}) {
    this.max = options.maxSubscribers ?? 8;
    this.maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
    this.keepaliveMs = options.keepaliveMs ?? 15_000;
    this.clock = options.clock ?? realClock;
    const registers = options.registry ? [options.registry] : undefined;
    if (registers) {
      this.listening = new Gauge({ name: 'weft_tap_subscribers', help: 'Clients streaming this proxy\'s live tap (GET /debug/tap).', registers });
      this.dropped = new Counter({
        name: 'weft_tap_dropped_total', help: 'Tap subscribers dropped: reason="slow" read too slowly (their unsent bytes passed the limit).',
        labelNames: ['reason'], registers,
      });
      this.refused = new Counter({ name: 'weft_tap_refused_total', help: 'Tap subscriptions refused because the most subscribers already listened.', registers });
    }
  }

  /** How many listen now. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Sends `event` to every subscriber whose filter matches it; call only when `active`. Never throws. */
  publish(event: TapEvent): void {
    let line: string | undefined;
    for (const s of this.subscribers) {
      if (!tapMatches(s.filter, event)) continue;
      line ??= JSON.stringify(event) + '\n';
      this.send(s, line);
    }
  }

  /** The `GET /debug/tap` handler. */
  readonly handler: Handler = (req, url, res) => {
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      json(res, 405, { error: 'the tap is read with GET /debug/tap' });
      return;
    }
    let filter: TapFilter;
    try {
      filter = parseTapFilter(url.searchParams);
    } catch (err) {
      if (!(err instanceof TapFilterError)) throw err;
      json(res, 400, { error: `tap: ${err.message}` });
      return;
    }
    if (this.subscribers.size >= this.max) {
      this.refused?.inc();
      json(res, 503, { error: `tap: ${this.max} subscribers already stream this proxy (the most it serves at once); stop one (weft tap) and try again` });
      return;
    }
    const s: Subscriber = { filter, res };
    this.subscribers.add(s);
    this.changed();
    res.once('close', () => {
      if (this.subscribers.delete(s)) this.changed();
    });
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.socket?.setNoDelay(true);
    this.send(s, JSON.stringify({ connected: { proxy: this.options.proxy, filter } }) + '\n');
  };

  /** Ends every subscriber's stream (shutdown). */
  close(): void {
    for (const s of this.subscribers) s.res.end();
    this.subscribers.clear();
    this.changed();
  }

  private send(s: Subscriber, text: string): void {
    if (s.res.writableLength > this.maxBuffered) {
      this.drop(s);
      return;
    }
    s.res.write(text);
  }

  /** A reader too slow to keep up: its socket is closed, not waited for (ending it would buffer the rest). */
  private drop(s: Subscriber): void {
    if (!this.subscribers.delete(s)) return;
    this.dropped?.inc({ reason: 'slow' });
    s.res.destroy();
    this.changed();
  }

  private changed(): void {
    this.active = this.subscribers.size > 0;
    this.listening?.set(this.subscribers.size);
    if (this.active && this.keepalive === undefined) this.armKeepalive();
    if (!this.active && this.keepalive !== undefined) {
      this.clock.clearTimeout(this.keepalive);
      this.keepalive = undefined;
    }
  }

  private armKeepalive(): void {
    this.keepalive = this.clock.setTimeout(() => {
      this.keepalive = undefined;
      for (const s of [...this.subscribers]) this.send(s, '\n');
      if (this.active && this.keepalive === undefined) this.armKeepalive();
    }, this.keepaliveMs);
  }
}
