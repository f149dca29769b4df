import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { json, loggingRoute, serve, type Handler } from '../lib/http-endpoints';
import type { Logger } from '../lib/log';
import type {
  CertificatesResponse, ConfigDump, ConnectionsResponse, RegistryDump, TunnelsResponse, ZtunnelStatus,
} from './admin-types';

/** What the admin, metrics and readiness endpoints read from the running ztunnel. */
export interface AdminSource {
  status(): ZtunnelStatus;
  tunnels(): TunnelsResponse;
  connections(): ConnectionsResponse;
  certificates(): CertificatesResponse;
  configDump(): ConfigDump;
  registry(): RegistryDump;
  logger: Logger;
  metrics: Registry;
}

/** The read-only views, by path: what both the loopback API and the guarded view server (admin-view.ts) serve. */
export const VIEWS: Readonly<Record<string, (src: AdminSource) => unknown>> = {
  '/config_dump': (src) => src.configDump(),
  '/tunnels': (src) => src.tunnels(),
  '/connections': (src) => src.connections(),
  '/certs': (src) => src.certificates(),
  '/status': (src) => src.status(),
  '/registry': (src) => src.registry(),
};

function viewRoutes(src: AdminSource): Record<string, Handler> {
  return Object.fromEntries(Object.entries(VIEWS).map(([path, view]) => [path, ((_q, _u, res) => json(res, 200, view(src))) as Handler]));
}

/**
 * The admin API: read-only views plus the log level. It is bound to 127.0.0.1 and to a
 * unix socket only, so nothing can be changed from outside the node; the CLI reaches
 * a ztunnel in another network namespace through the socket (filesystem paths are not
 * namespaced). The level changes only on POST (http-endpoints.ts).
 */
export function adminServer(src: AdminSource): Server {
  return serve({
    ...viewRoutes(src),
    '/logging': loggingRoute(src.logger),
  }, src.logger);
}

