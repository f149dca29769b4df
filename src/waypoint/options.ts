/**
 * Every setting of `weft waypoint run`: one place, each a flag and an environment
 * variable, with the same common options (Redis, trust domain, log level) and CA flags
 * as `weft ztunnel`. A waypoint serves one Gateway of class weft-waypoint: its name,
 * namespace and service account say which routes it applies and which identity it
 * presents; it never holds a node credential.
 */
import { isIP } from 'node:net';
import { caClientOptions, commonOptions, redisTarget, type RedisConnection } from '../lib/common-options';
import { WeftError } from '../lib/errors';
import { parse, parseOptions, type OptionValues } from '../lib/options';
import { telemetryOptions } from '../telemetry/options';

const NAME = { pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, what: 'a DNS-1123 label (lower-case letters, digits and "-")' };

export const waypointOptions = {
  ...commonOptions,
  name: { flag: 'name', env: 'WEFT_WAYPOINT_NAME', description: 'name of the waypoint (its Gateway)', parse: parse.string(NAME) },
  namespace: { flag: 'namespace', env: 'WEFT_WAYPOINT_NAMESPACE', description: 'namespace of the waypoint; it serves the Services bound to it there', parse: parse.string(NAME) },
  serviceAccount: {
    flag: 'service-account', env: 'WEFT_WAYPOINT_SERVICE_ACCOUNT', default: '', defaultText: 'the waypoint name',
    description: 'service account of the waypoint pod: its identity is spiffe://<trust domain>/ns/<namespace>/sa/<service account>',
    parse: parse.string(),
  },
  address: {
    flag: 'address', env: 'WEFT_WAYPOINT_ADDRESS', description: 'the pod address HBONE (15008), metrics (15020) and readiness (15021) bind to',
    parse: (raw: string) => { if (!isIP(raw)) throw new Error('expected an IP address'); return raw; },
  },
  ...caClientOptions,
  ...telemetryOptions,
  identityTokenFile: {
    flag: 'identity-token-file', env: 'WEFT_IDENTITY_TOKEN_FILE',
    description: 'file with the credential the CA issues this waypoint\'s own certificate for: the projected ServiceAccount token (cluster) or the lab\'s identity token; re-read at every request',
    parse: parse.string({ pattern: /./, what: 'a file path' }),
  },
  certTtl: {
    flag: 'cert-ttl', env: 'WEFT_CERT_TTL', default: 24 * 3_600_000,
    description: 'lifetime asked for the waypoint certificate', parse: parse.duration({ min: 60_000, max: 90 * 86_400_000 }),
  },
  hbonePort: { flag: 'hbone-port', env: 'WEFT_HBONE_PORT', default: 15008, description: 'HBONE listener port', parse: parse.port() },
  adminPort: { flag: 'admin-port', env: 'WEFT_ADMIN_PORT', default: 15000, description: 'admin API port (localhost only)', parse: parse.port() },
  metricsPort: { flag: 'metrics-port', env: 'WEFT_METRICS_PORT', default: 15020, description: 'Prometheus metrics port', parse: parse.port() },
  readinessPort: { flag: 'readiness-port', env: 'WEFT_READINESS_PORT', default: 15021, description: 'readiness probe port', parse: parse.port() },
  drainTimeout: {
    flag: 'drain-timeout', env: 'WEFT_DRAIN_TIMEOUT', default: 5000, defaultText: '5s',
    description: 'on SIGTERM, how long requests in flight may finish while new connections are refused (0s: at once)',
    parse: (raw: string) => (raw === '0' || raw === '0s' ? 0 : parse.duration({ min: 100, max: 600_000 })(raw)),
  },
};

export type WaypointConfig = OptionValues<typeof waypointOptions> & { readonly redis: RedisConnection };

export function loadWaypointConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): WaypointConfig {
  const { values, positionals } = parseOptions(waypointOptions, argv, env);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `weft waypoint run takes no arguments, got "${positionals.join(' ')}"`);
  return Object.freeze({ ...values, serviceAccount: values.serviceAccount || values.name, redis: redisTarget(values) });
}
