/**
 * `weft controller`: mirrors the Kubernetes API server's view into the registry.
 * Flags are validated here, once; app.ts does the wiring.
 */
import { hostname } from 'node:os';
import type { Command } from '../cli/command';
import { commonOptions, redisOptionSpecs, redisTarget } from '../lib/common-options';
import { WeftError } from '../lib/errors';
import { createLogger } from '../lib/log';
import { optionsHelp, parse, parseOptions, type OptionSpec } from '../lib/options';
import { waitForShutdownSignal } from '../lib/signals';
import { inClusterConfig, loadKubeconfig } from '../k8s/kubeconfig';
import { ROOT_NAMESPACE } from '../registry/types';
import { startControllerApp, type ControllerAppConfig } from './app';
import { ISTIO_ROOT_NAMESPACE } from './k8s-types';
import { telemetryOptions } from '../telemetry/options';

const dnsName = parse.string({ pattern: /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, what: 'a lower-case DNS name' });
const hostPortOrOff = (raw: string): { host: string; port: number } | undefined =>
  raw === 'off' ? undefined : parse.hostPort()(raw);

export const controllerSpecs = {
  kubeconfig: {
    flag: 'kubeconfig', env: 'KUBECONFIG', default: '', defaultText: 'in-cluster service account',
    description: 'kubeconfig file (its current-context); without it the in-cluster service account is used', parse: parse.string(),
  } satisfies OptionSpec<string>,
  context: { flag: 'context', env: 'WEFT_KUBE_CONTEXT', default: '', defaultText: 'current-context', description: 'kubeconfig context to use', parse: parse.string() },
  ...redisOptionSpecs,
  trustDomain: commonOptions.trustDomain,
  logLevel: commonOptions.logLevel,
  clusterDomain: {
    flag: 'cluster-domain', env: 'WEFT_CLUSTER_DOMAIN', default: 'cluster.local',
    description: 'DNS domain of the cluster: service hostnames are <name>.<ns>.svc.<domain>', parse: dnsName,
  } satisfies OptionSpec<string>,
  istioRootNamespace: {
    flag: 'istio-root-namespace', env: 'WEFT_ISTIO_ROOT_NAMESPACE', default: ISTIO_ROOT_NAMESPACE,
    description: `Istio's root namespace: its selector-less security.istio.io policies are mesh-wide, mapped to Weft's root namespace ${ROOT_NAMESPACE} (GLOBAL)`,
    parse: parse.string({ pattern: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, what: 'a namespace name (DNS-1123 label)' }),
  } satisfies OptionSpec<string>,
  leaseNamespace: {
    flag: 'lease-namespace', env: 'WEFT_LEASE_NAMESPACE', default: 'weft-system',
    description: 'namespace of the leader-election Lease', parse: dnsName,
  } satisfies OptionSpec<string>,
  leaseName: { flag: 'lease-name', env: 'WEFT_LEASE_NAME', default: 'weft-controller', description: 'name of the Lease', parse: dnsName },
  leaseDuration: {
    flag: 'lease-duration', env: 'WEFT_LEASE_DURATION', default: 15_000, defaultText: '15s',
    description: 'how long a silent leader keeps the lease (a standby takes over after it)', parse: parse.duration({ min: 1000, max: 300_000 }),
  } satisfies OptionSpec<number>,
  leaderElection: {
    flag: 'leader-election', env: 'WEFT_LEADER_ELECTION', default: true, boolean: true,
    description: 'elect a leader with a Lease (false: a single replica writes unconditionally)', parse: parse.bool(),
  } satisfies OptionSpec<boolean>,
  identity: {
    flag: 'identity', env: 'WEFT_CONTROLLER_IDENTITY', default: `${hostname()}-${process.pid}`, defaultText: '<hostname>-<pid>',
    description: 'holder identity in the Lease', parse: parse.string({ pattern: /^\S+$/, what: 'a name without spaces' }),
  } satisfies OptionSpec<string>,
  waypointImage: {
    flag: 'waypoint-image', env: 'WEFT_WAYPOINT_IMAGE', default: '', defaultText: "this controller pod's own image",
    description: 'image of the waypoint Deployments made for Gateways of class weft-waypoint (the same weft image)', parse: parse.string({ pattern: /^\S+$/, what: 'an image reference' }),
  } satisfies OptionSpec<string>,
  caAddress: {
    flag: 'ca-address', env: 'WEFT_CA_ADDRESS', default: 'weft-ca.weft-system.svc:15012',
    description: 'the CA address (host:port) waypoints are given', parse: parse.string({ pattern: /^\S+:\d+$/, what: 'host:port' }),
  } satisfies OptionSpec<string>,
  // Read from weft-config like the ztunnels, so one setting reaches every proxy: the controller does not trace, it hands these to the waypoints it deploys.
  traceSampling: { ...telemetryOptions.traceSampling, description: `given to the waypoint Deployments it makes: ${telemetryOptions.traceSampling.description}` },
  otlpEndpoint: { ...telemetryOptions.otlpEndpoint, description: `given to the waypoint Deployments it makes: ${telemetryOptions.otlpEndpoint.description}` },
  metricsListen: {
    flag: 'metrics-listen', env: 'WEFT_CONTROLLER_METRICS_LISTEN', default: { host: '0.0.0.0', port: 15014 } as { host: string; port: number } | undefined,
    defaultText: '0.0.0.0:15014', description: 'HTTP address for /metrics, /healthz/ready and /healthz/live, or "off"', parse: hostPortOrOff,
  } satisfies OptionSpec<{ host: string; port: number } | undefined>,
};

type Values = ReturnType<typeof parseOptions<typeof controllerSpecs>>['values'];

export function controllerConfig(v: Values, env: NodeJS.ProcessEnv = process.env): ControllerAppConfig {
  const cluster = v.kubeconfig
    ? loadKubeconfig(v.kubeconfig, { ...(v.context ? { context: v.context } : {}), env })
    : inClusterConfig(env);
  return {
    cluster, redis: redisTarget(v), clusterDomain: v.clusterDomain, istioRootNamespace: v.istioRootNamespace, leaseNamespace: v.leaseNamespace, leaseName: v.leaseName,
    identity: v.identity, leaseDurationSeconds: Math.round(v.leaseDuration / 1000), leaderElection: v.leaderElection,
    ...(v.metricsListen ? { metricsListen: v.metricsListen } : {}), defaultMetrics: true,
    waypoints: {
      image: v.waypointImage, caAddress: v.caAddress, trustDomain: v.trustDomain, logLevel: v.logLevel,
      telemetry: { traceSampling: v.traceSampling, otlpEndpoint: v.otlpEndpoint },
      // The controller's own namespace holds weft-root-cert, as it holds the Lease.
      systemNamespace: v.leaseNamespace,
      ownPod: env.POD_NAME && env.POD_NAMESPACE ? { namespace: env.POD_NAMESPACE, name: env.POD_NAME } : undefined,
    },
  };
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(controllerSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `weft controller takes no arguments (got ${positionals.join(' ')}); see weft controller --help`);
  const config = controllerConfig(values);
  const logger = createLogger({ level: values.logLevel, component: 'controller' });
  const app = await startControllerApp(config, logger);
  const signal = await waitForShutdownSignal();
  logger.info({ signal }, 'weft controller stopping');
  await app.stop();
  logger.info('weft controller stopped');
  logger.flush();
  return 0;
}

const command: Command = {
  summary: 'mirror the Kubernetes API (nodes, namespaces, pods, services, policies) into the registry',
  help: () => [
    'Usage: weft controller [flags]   (runs until SIGTERM/SIGINT; releases its Lease on the way out)',
    '',
    'Watches nodes, namespaces, pods, services, EndpointSlices, security.weft.io',
    'AuthorizationPolicies, and (when their CRDs are installed) security.istio.io',
    'AuthorizationPolicies and PeerAuthentications and Gateway API HTTPRoutes, GRPCRoutes',
    'and Gateways, and keeps the Redis registry equal to them; writes route',
    'status and deploys a waypoint per Gateway of class weft-waypoint. Several replicas',
    'elect one writer with a coordination.k8s.io Lease. See docs/controller.md.',
    '',
    'Flags:',
    optionsHelp(controllerSpecs),
  ].join('\n'),
  run,
};

export default command;
