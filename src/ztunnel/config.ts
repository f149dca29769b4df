import { WeftError } from '../lib/errors';
import { isIP, isIPv6 } from 'node:net';
import { caClientOptions, commonOptions, redisTarget, type RedisConnection } from '../lib/common-options';
import { telemetryOptions } from '../telemetry/options';
import { parse, parseOptions, type OptionValues } from '../lib/options';
import { DEFAULT_HBONE_LIMITS, HBONE_LIMIT_BOUNDS } from '../hbone/limits';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../hbone/pipe';
import { parseWorkers } from './workers';

const MiB = 1024 * 1024;
// The flags below set these components' limits: their defaults and bounds are the
// components' own (src/hbone/limits.ts, src/hbone/pipe.ts), written once there.
const limit = DEFAULT_HBONE_LIMITS;
const bounds = (field: keyof typeof HBONE_LIMIT_BOUNDS, unit = 1) =>
  ({ min: Math.max(1, HBONE_LIMIT_BOUNDS[field][0] / unit), max: HBONE_LIMIT_BOUNDS[field][1] / unit });

/** Every setting of `weft ztunnel`: one place, each a flag and an environment variable. */
export const ztunnelOptions = {
  ...commonOptions,
  ...telemetryOptions,
  nodeName: {
    flag: 'node', env: 'WEFT_NODE_NAME', description: 'name of the node this ztunnel serves (as in the registry)',
    parse: parse.string({ pattern: /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, what: 'a node name (lower-case DNS label)' }),
  },
  nodeAddress: {
    flag: 'address', env: 'WEFT_NODE_ADDRESS', description: 'node address the proxy listeners bind to (15001, 15006, 15008)',
    parse: (raw: string) => { if (!isIP(raw)) throw new Error('expected an IP address'); return raw; },
  },
  nodeAddress6: {
    flag: 'address6', env: 'WEFT_NODE_ADDRESS6', default: '', defaultText: 'none (IPv6 of enrolled pods is refused, not captured)',
    description: 'on a dual-stack node: the node IPv6 address the proxy listeners also bind, so IPv6 is captured like IPv4 (--address must then be IPv4)',
    parse: (raw: string) => { if (raw !== '' && !isIPv6(raw)) throw new Error('expected an IPv6 address'); return raw; },
  },
  ...caClientOptions,
  joinToken: {
    flag: 'join-token', env: 'WEFT_JOIN_TOKEN', default: '',
    description: 'one-time node join token for the CA (prefer the environment variable)', parse: parse.string(),
  },
  joinSaTokenFile: {
    flag: 'join-sa-token-file', env: 'WEFT_JOIN_SA_TOKEN_FILE', default: '', defaultText: 'off',
    description: 'join the CA with the projected ServiceAccount token in this file (audience weft-ca; re-read at every join); --join-token wins if both are set',
    parse: parse.string(),
  },
  capture: {
    flag: 'capture', env: 'WEFT_CAPTURE', default: false, boolean: true,
    description: 'install iptables capture rules for enrolled pods in this network namespace', parse: parse.bool(),
  },
  cleanup: {
    flag: 'cleanup', env: 'WEFT_CAPTURE_CLEANUP', default: false, boolean: true,
    description: 'remove the capture rules (IPv4 and IPv6) from this network namespace and exit, for uninstalling; a stopping ztunnel leaves them in place so enrolled traffic fails closed until the next one starts',
    parse: parse.bool(),
  },
  workers: {
    flag: 'workers', env: 'WEFT_ZTUNNEL_WORKERS', default: 1,
    description: 'ztunnel processes sharing the node\'s listeners, each with its own registry view, certificates and HBONE pool: a number, or auto (one per CPU this process may use, its container\'s CPU limit included, at most 8); the primary serves readiness and the summed metrics and restarts a worker that dies',
    parse: (raw: string) => parseWorkers(raw),
  },
  certTtl: {
    flag: 'cert-ttl', env: 'WEFT_CERT_TTL', default: 24 * 3_600_000,
    description: 'lifetime asked for workload certificates', parse: parse.duration({ min: 60_000, max: 90 * 86_400_000 }),
  },
  hboneMaxStreams: {
    flag: 'hbone-max-streams', env: 'WEFT_HBONE_MAX_STREAMS', default: limit.maxStreamsPerConnection,
    description: 'concurrent CONNECT streams a peer may open on one HBONE connection (SETTINGS_MAX_CONCURRENT_STREAMS; Istio: 100)',
    parse: parse.int(bounds('maxStreamsPerConnection')),
  },
  hboneBufferBudgetMb: {
    flag: 'hbone-buffer-budget-mb', env: 'WEFT_HBONE_BUFFER_BUDGET_MB', default: limit.nodeBufferBytes / MiB,
    description: 'MiB that stalled HBONE streams (pods not reading) may hold in this ztunnel; beyond it such streams are reset',
    parse: parse.int(bounds('nodeBufferBytes', MiB)),
  },
  hboneMaxPendingDials: {
    flag: 'hbone-max-pending-dials', env: 'WEFT_HBONE_MAX_PENDING_DIALS', default: limit.maxPendingDials,
    description: 'HBONE CONNECTs that may wait for their dial to a pod at once; more are refused (REFUSED_STREAM)',
    parse: parse.int(bounds('maxPendingDials')),
  },
  idleTimeout: {
    flag: 'idle-timeout', env: 'WEFT_IDLE_TIMEOUT', default: DEFAULT_IDLE_TIMEOUT_MS, defaultText: '1h',
    description: 'a proxied connection with no byte either way this long is closed (0s: never); as Envoy\'s TCP proxy, 1h',
    parse: (raw: string) => (raw === '0' || raw === '0s' ? 0 : parse.duration({ min: 1000, max: 7 * 86_400_000 })(raw)),
  },
  drainTimeout: {
    flag: 'drain-timeout', env: 'WEFT_DRAIN_TIMEOUT', default: 5000, defaultText: '5s',
    description: 'on SIGTERM, how long established connections may go on while new ones are refused (listeners closed, capture kept, not ready, GOAWAY to HBONE peers); those still open then are reset. New connections of the node\'s pods are refused until the next ztunnel runs, so longer is not free. Keep it well below the pod\'s terminationGracePeriodSeconds (0s: reset at once)',
    parse: (raw: string) => (raw === '0' || raw === '0s' ? 0 : parse.duration({ min: 100, max: 600_000 })(raw)),
  },
  adminPort: { flag: 'admin-port', env: 'WEFT_ADMIN_PORT', default: 15000, description: 'admin API port (localhost only)', parse: parse.port() },
  adminViewAddress: {
    flag: 'admin-view-address', env: 'WEFT_ADMIN_VIEW_ADDRESS', default: '', defaultText: 'off',
    description: 'also serve the read-only admin views (no /logging) on this address and the admin port, for `weft` through the API server pod proxy; callers need a Kubernetes token allowed get pods/proxy (see --admin-view-kubeconfig)',
    parse: (raw: string) => { if (raw !== '' && !isIP(raw)) throw new Error('expected an IP address'); return raw; },
  },
  adminViewKubeconfig: {
    flag: 'admin-view-kubeconfig', env: 'WEFT_ADMIN_VIEW_KUBECONFIG', default: '', defaultText: 'in-cluster service account',
    description: 'kubeconfig the admin views check callers with (TokenReview + SubjectAccessReview); read at the first request, so a missing one refuses the views, never the data path',
    parse: parse.string(),
  },
  adminViewNamespace: {
    flag: 'admin-view-namespace', env: 'WEFT_ADMIN_VIEW_NAMESPACE', default: 'weft-system',
    description: 'callers of the admin views must be allowed get pods/proxy in this namespace (the ztunnel\'s)',
    parse: parse.string(),
  },
  metricsPort: { flag: 'metrics-port', env: 'WEFT_METRICS_PORT', default: 15020, description: 'Prometheus metrics port', parse: parse.port() },
  readinessPort: { flag: 'readiness-port', env: 'WEFT_READINESS_PORT', default: 15021, description: 'readiness probe port', parse: parse.port() },
  adminSocket: {
    flag: 'admin-socket', env: 'WEFT_ADMIN_SOCKET', default: '',
    description: 'also serve the admin API on this unix socket (how the CLI reaches a ztunnel in another network namespace)',
    parse: parse.string(),
  },
};

/** The flags' values, plus the Redis connection they describe (checked once, here). */
export type ZtunnelConfig = OptionValues<typeof ztunnelOptions> & { readonly redis: RedisConnection };

export function loadZtunnelConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ZtunnelConfig {
  // --cleanup touches only this namespace's rules: node name, address and trust anchors are not needed.
  const cleanup = argv.includes('--cleanup') || /^(1|true|yes)$/i.test(env['WEFT_CAPTURE_CLEANUP'] ?? '');
  const specs = cleanup
    ? {
      ...ztunnelOptions, nodeName: { ...ztunnelOptions.nodeName, default: '' }, nodeAddress: { ...ztunnelOptions.nodeAddress, default: '' },
      trustAnchorFile: { ...ztunnelOptions.trustAnchorFile, default: '' },
    }
    : ztunnelOptions;
  const { values, positionals } = parseOptions(specs, argv, env);
  if (values.nodeAddress6 && isIPv6(values.nodeAddress)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --address6=${values.nodeAddress6}: --address=${values.nodeAddress} is IPv6 already; on a dual-stack node give the IPv4 address as --address and the IPv6 one as --address6`);
  }
  if (positionals.length > 0) {
    throw new WeftError('WEFT_USAGE', `weft ztunnel takes no arguments, got "${positionals.join(' ')}"`);
  }
  return Object.freeze({ ...values, redis: redisTarget(values) });
}

/**
 * Where readiness and metrics listen (the process itself, or the `--workers` primary):
 * loopback for a node on loopback (tests, benches, several ztunnels on one host), every
 * address otherwise, for the kubelet's probes and Prometheus.
 */
export function probeHost(config: Pick<ZtunnelConfig, 'nodeAddress'>): string {
  return config.nodeAddress === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0';
}
