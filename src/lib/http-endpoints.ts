/**
 * The small HTTP endpoints every Weft process serves: JSON views, Prometheus metrics
 * (15020), readiness (15021) and the log level, plus listen/close helpers. Shared by
 * the ztunnel and the waypoint so both answer probes and scrapes the same way.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, rmSync } from 'node:fs';
import type { Registry } from 'prom-client';
import { LOG_LEVELS, type Logger } from './log';

export type Handler = (req: IncomingMessage, url: URL, res: ServerResponse) => void | Promise<void>;

export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function serve(routes: Record<string, Handler>, log: Logger,
  notFound: (req: IncomingMessage, res: ServerResponse, path: string) => void = (_req, res, path) => {
    json(res, 404, { error: `no such endpoint ${path}`, endpoints: Object.keys(routes) });
  }): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handler = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (!handler) {
      notFound(req, res, url.pathname.slice(0, 64));
      return;
    }
    Promise.resolve(handler(req, url, res)).catch((err: unknown) => {
      log.error({ err, path: url.pathname }, 'admin endpoint failed');
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.destroy();
    });
  });
}

/**
 * `/logging`: GET reads the level, POST /logging?level= changes it. A GET must never
 * change state (a prefetching browser or a link would otherwise do it).
 */
export function loggingRoute(logger: Logger): Handler {
  return (req, url, res) => {
    const level = url.searchParams.get('level');
    if (req.method !== 'POST') {
      if (level !== null) {
        res.setHeader('allow', 'POST');
        json(res, 405, { error: `changing the log level needs POST /logging?level=${level}; GET only reads it`, level: logger.level });
        return;
      }
      json(res, 200, { level: logger.level });
      return;
    }
    if (level === null || !(LOG_LEVELS as readonly string[]).includes(level)) {
      json(res, 400, { error: `level must be one of ${LOG_LEVELS.join(', ')}`, level: logger.level });
      return;
    }
    logger.level = level;
    logger.info({ level }, 'log level changed through the admin API');
    json(res, 200, { level: logger.level });
  };
}

/** `/metrics` (and Istio's `/stats/prometheus`), plus any read-only `views` a component publishes beside them. */
export function metricsServer(src: { metrics: Registry; logger: Logger }, views: Record<string, Handler> = {}): Server {
  const scrape: Handler = async (_q, _u, res) => {
    const body = await src.metrics.metrics();
    res.writeHead(200, { 'content-type': src.metrics.contentType });
    res.end(body);
  };
  return serve({ ...views, '/metrics': scrape, '/stats/prometheus': scrape }, src.logger);
}

export function readinessServer(src: { status(): { ready: boolean }; logger: Logger }): Server {
  return serve({
    '/healthz/ready': (_q, _u, res) => {
      const s = src.status();
      res.writeHead(s.ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(s.ready ? 'ready\n' : 'not ready\n');
    },
  }, src.logger);
}

export function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => { server.off('error', reject); resolve(); });
  });
}

export function listenUnix(server: Server, path: string): Promise<void> {
  // A socket file left by a crashed run would make listen fail with EADDRINUSE.
  rmSync(path, { force: true });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      chmodSync(path, 0o600);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) { resolve(); return; }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
