/**
 * The `weft dashboard` web server: Node's http, no framework. Read-only (GET and HEAD
 * only), bound to loopback unless told otherwise. Routes:
 *
 *   /                 the page (page.ts), /app.js and /app.css beside it
 *   /api/stats        MeshStats JSON (golden signals per edge, saturation per proxy)
 *   /api/graph.svg    the service graph
 *   /api/traces       recent traces (spans grouped by trace), newest first
 *   /api/tap          the live tap as Server-Sent Events (`event: tap`, one TapEvent each)
 *
 * What the page shows names workloads and paths chosen by whoever runs pods, so it is
 * hostile text: the page writes it with textContent only, and a Content-Security-Policy
 * allowing only this server's own script means a name that gets through anyway cannot
 * run. Host headers other than an address literal, `localhost` or the bound name are
 * refused, so a web page cannot read the dashboard through DNS rebinding. The API is
 * for this page only: a request another site's page makes (its Origin is not ours, or
 * the browser's Sec-Fetch-Site says cross-site) is refused, so a page the user happens
 * to visit cannot hold the tap's viewer slots or make weft read the proxies for it.
 * The page itself (`/`) may still be opened from a link.
 *
 * The tap is a stream to browsers that may stop reading (a hidden tab, a slow link):
 * each client may have `maxBufferedBytes` waiting in its socket, past which it is
 * dropped, not buffered (an EventSource reconnects by itself and gets the backlog);
 * at most `maxTapClients` at once.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import type { Logger } from '../lib/log';
import { LogLimiter } from '../lib/log-limiter';
import type { TapEvent } from '../telemetry/types';
import type { DashboardSources } from './api';
import { APP_CSS, APP_JS, PAGE_HTML } from './page';

export interface DashboardServerOptions {
  sources: DashboardSources;
  logger: Logger;
  /** Browsers on the tap stream at once; more are refused with 503. Default 16. */
  maxTapClients?: number;
  /** Bytes a tap client may leave unread in its socket before it is dropped. Default 256 KiB. */
  maxBufferedBytes?: number;
  /** Last tap events replayed to a new client, so a page opened in a quiet moment shows something. Default 50. */
  backlog?: number;
  /** An SSE comment this often keeps proxies and the browser from closing an idle stream. Default 15 s. */
  heartbeatMs?: number;
}

/** Headers of every answer: nothing cached, nothing framed, no script but ours. */
const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

interface TapClient {
  res: ServerResponse;
}

/** True for 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopback(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, '').toLowerCase();
  if (a === 'localhost' || a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

export class DashboardServer {
  readonly server: Server;
  /** Tap clients dropped because they read too slowly. */
  droppedClients = 0;
  private readonly opts: Required<Omit<DashboardServerOptions, 'sources' | 'logger'>>;
  private readonly clients = new Set<TapClient>();
  private readonly backlog: string[] = [];
  private stopTap: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly limiter = new LogLimiter();
  /** The name the server was bound to (accepted as a Host besides address literals and localhost). */
  private boundName = '';

  constructor(private readonly o: DashboardServerOptions) {
    this.opts = {
      maxTapClients: o.maxTapClients ?? 16,
      maxBufferedBytes: o.maxBufferedBytes ?? 256 * 1024,
      backlog: o.backlog ?? 50,
      heartbeatMs: o.heartbeatMs ?? 15_000,
    };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.o.logger.error({ err, path: (req.url ?? '').slice(0, 64) }, 'dashboard request failed');
        if (!res.headersSent) this.send(res, 502, 'application/json', JSON.stringify({ error: 'reading the mesh failed; see the dashboard log' }));
        else res.destroy();
      });
    });
  }

  /** Tap clients connected now. */
  get tapClients(): number {
    return this.clients.size;
  }

  /** Listens on address:port (0 picks a free port); resolves with where. */
  async listen(address: string, port: number): Promise<AddressInfo> {
    this.boundName = address.replace(/^\[|\]$/g, '').toLowerCase();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, address, () => { this.server.off('error', reject); resolve(); });
    });
    return this.server.address() as AddressInfo;
  }

  /** Ends every tap stream and stops listening. */
  async close(): Promise<void> {
    for (const c of [...this.clients]) this.drop(c);
    // close() waits for every connection to end: a browser's keep-alive one would hold it.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private send(res: ServerResponse, status: number, type: string, body: string): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  private hostAllowed(host: string | undefined): boolean {
    if (!host) return false;
    let name: string;
    try {
      name = new URL(`http://${host}`).hostname.replace(/^\[|\]$/g, '').toLowerCase();
    } catch {
      return false;
    }
    return name === 'localhost' || isIP(name) !== 0 || name === this.boundName;
  }

  /** Whether an /api request comes from this page (or from no browser page at all). */
  private sameOrigin(req: IncomingMessage): boolean {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    try {
      return new URL(origin).host === req.headers.host?.toLowerCase();
    } catch {
      return false;
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (!this.hostAllowed(req.headers.host)) {
      this.send(res, 421, 'text/plain', 'the dashboard answers requests addressed to its IP address or localhost only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      this.send(res, 405, 'text/plain', 'the dashboard is read-only: GET only\n');
      return;
    }
    if (path.startsWith('/api/') && !this.sameOrigin(req)) {
      this.send(res, 403, 'text/plain', 'the dashboard\'s API answers its own page only\n');
      return;
    }
    const s = this.o.sources;
    switch (path) {
      case '/': return this.send(res, 200, 'text/html; charset=utf-8', PAGE_HTML);
      case '/app.js': return this.send(res, 200, 'text/javascript; charset=utf-8', APP_JS);
      case '/app.css': return this.send(res, 200, 'text/css; charset=utf-8', APP_CSS);
      case '/api/stats': return this.send(res, 200, 'application/json', JSON.stringify(await s.stats()));
      case '/api/graph.svg': return this.send(res, 200, 'image/svg+xml', await s.svg());
      case '/api/traces': return this.send(res, 200, 'application/json', JSON.stringify(await s.traces()));
      case '/api/tap': return this.openTap(req, res);
      default: return this.send(res, 404, 'application/json', JSON.stringify({ error: `no such page ${path.slice(0, 64)}`, pages: ['/', '/api/stats', '/api/graph.svg', '/api/traces', '/api/tap'] }));
    }
  }

  private openTap(req: IncomingMessage, res: ServerResponse): void {
    if (this.clients.size >= this.opts.maxTapClients) {
      res.setHeader('retry-after', '10');
      this.send(res, 503, 'text/plain', `the tap has ${this.opts.maxTapClients} viewers already; close a dashboard tab\n`);
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'keep-alive' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const client: TapClient = { res };
    res.write('retry: 3000\n\n');
    for (const frame of this.backlog) res.write(frame);
    this.clients.add(client);
    res.on('close', () => this.forget(client));
    if (this.clients.size === 1) this.startTap();
  }

  private startTap(): void {
    this.stopTap = this.o.sources.tap((e) => this.publish(e));
    this.heartbeat = setInterval(() => {
      for (const c of [...this.clients]) this.write(c, ': keep-alive\n\n');
    }, this.opts.heartbeatMs).unref();
  }

  private publish(event: TapEvent): void {
    const frame = `event: tap\ndata: ${JSON.stringify(event)}\n\n`;
    this.backlog.push(frame);
    if (this.backlog.length > this.opts.backlog) this.backlog.shift();
    for (const c of [...this.clients]) this.write(c, frame);
  }

  /** Writes to a client unless what it left unread is past the bound: then it is dropped. */
  private write(c: TapClient, frame: string): void {
    if (c.res.writableLength + Buffer.byteLength(frame) > this.opts.maxBufferedBytes) {
      this.droppedClients++;
      const suppressed = this.limiter.take('slow-tap-client');
      if (suppressed !== undefined) {
        this.o.logger.warn({ unreadBytes: c.res.writableLength, limit: this.opts.maxBufferedBytes, suppressed }, 'dashboard tap client reads too slowly; dropped');
      }
      this.drop(c);
      return;
    }
    c.res.write(frame);
  }

  private drop(c: TapClient): void {
    this.forget(c);
    c.res.destroy();
  }

  private forget(c: TapClient): void {
    if (!this.clients.delete(c) || this.clients.size > 0) return;
    // The last viewer left: the proxies' taps go quiet again.
    this.stopTap?.();
    this.stopTap = undefined;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}
