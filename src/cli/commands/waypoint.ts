/**
 * `weft waypoint add|remove|run`: a waypoint is a namespace's L7 proxy (a Gateway of
 * class weft-waypoint). On the lab, `add` starts a waypoint pod live (nothing else
 * restarts) and `remove` takes it away; on a cluster they create and delete the
 * Gateway object through the API server and the controller deploys it. `remove`
 * refuses while a namespace or Service still sends its traffic through the waypoint,
 * because their traffic would then be refused (fail closed), unless --force.
 * `run` is the waypoint process itself (src/waypoint), started by the lab or the
 * Deployment the controller makes.
 */
import { WeftError } from '../../lib/errors';
import { formatIdentity } from '../../lib/identity';
import { parse } from '../../lib/options';
import { GATEWAY_API_GROUP, GATEWAY_API_INSTALL, GATEWAY_API_VERSION, WAYPOINT_GATEWAY_CLASS } from '../../gateway/types';
import type { Command } from '../command';
import { ClusterSession } from '../cluster';
import { contextOptions, loadContext, type CliContext } from '../context';
import { defineCommand, defineGroup, processIo, type CliCommand } from '../io';
import { formatStructured, outputOptions } from '../output';
import { withRegistry, withRegistryStore } from '../registry-session';
import { k8sStatus, type KubeObject } from '../../k8s/client';
import { USE_WAYPOINT_LABEL } from '../../registry/types';
import { waypointUsers } from './waypoints';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `<namespace>/<name>`, both DNS labels. */
export function parseWaypointRef(raw: string | undefined, usage: string): { namespace: string; name: string } {
  const m = raw === undefined ? null : /^([^/]+)\/([^/]+)$/.exec(raw);
  if (!m || !DNS_LABEL.test(m[1]!) || !DNS_LABEL.test(m[2]!)) {
    throw new WeftError('WEFT_USAGE',
      `expected the waypoint as <namespace>/<name> (DNS labels: lower-case letters, digits and '-'), got ${JSON.stringify(raw ?? '')}; usage: ${usage}`);
  }
  return { namespace: m[1]!, name: m[2]! };
}

export interface WaypointAddResult {
  namespace: string;
  name: string;
  serviceAccount: string;
  identity: string;
  /** Lab: where the pod runs. */
  node?: string;
  pod?: string;
  address?: string;
  netns?: string;
  /** Lab: false when `weft waypoint run` is not built yet (pod and records only). */
  started?: boolean;
  /** Cluster: the Gateway object created. */
  object?: string;
}

/** The Gateway a cluster gets for `weft waypoint add` (Istio's waypoint shape: one HBONE listener on 15008). */
export function waypointGateway(namespace: string, name: string): { apiVersion: string; kind: string; metadata: { name: string; namespace: string }; spec: unknown } {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: { name, namespace },
    spec: { gatewayClassName: WAYPOINT_GATEWAY_CLASS, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

function gatewaysPath(namespace: string, name?: string): string {
  return `/apis/${GATEWAY_API_GROUP}/v1/namespaces/${encodeURIComponent(namespace)}/gateways${name ? `/${encodeURIComponent(name)}` : ''}`;
}

function requireLab(ctx: CliContext, verb: string): string {
  if (ctx.kind === 'lab' && ctx.labDir) return ctx.labDir;
  throw new WeftError('WEFT_CONTEXT_MISSING',
    `weft waypoint ${verb} needs the lab (a context written by scripts/lab up) or a cluster (--kubeconfig); context ${ctx.source} is neither: start the lab (scripts/lab up) or pass --kubeconfig`);
}

const ADD_USAGE = 'weft waypoint add <namespace>/<name> --node <node> [--service-account SA] [-o table|json|yaml]';

const add = defineCommand({
  usage: ADD_USAGE,
  summary: 'add a waypoint for a namespace (lab: starts its pod live; cluster: creates a Gateway of class weft-waypoint)',
  description: 'On the lab the waypoint gets its own pod (netns weft-pod-<ns>-<name>, an address from the node\'s pod CIDR),\n'
    + 'never enrolled itself, and the command returns once it is ready. Nothing else restarts. Nothing goes through it\n'
    + 'until a namespace or Service is bound to it: weft namespace use-waypoint <namespace> <name>.\n'
    + `On a cluster it creates the Gateway (class ${WAYPOINT_GATEWAY_CLASS}); the controller deploys it (--node does not apply).`,
  specs: {
    ...contextOptions,
    output: outputOptions.output,
    node: { flag: 'node', default: '', defaultText: 'required on the lab', description: 'lab node to run the waypoint pod on', parse: parse.string() },
    serviceAccount: { flag: 'service-account', default: '', defaultText: 'the waypoint\'s name', description: 'service account of the waypoint\'s identity (lab)', parse: parse.string() },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', `expected exactly one waypoint; usage: ${ADD_USAGE}`);
    const { namespace, name } = parseWaypointRef(positionals[0], ADD_USAGE);
    if (values.serviceAccount !== '' && !DNS_LABEL.test(values.serviceAccount)) {
      throw new WeftError('WEFT_USAGE', `invalid --service-account=${JSON.stringify(values.serviceAccount)}: expected a DNS label (lower-case letters, digits and '-')`);
    }
    const ctx = loadContext(values, io.env);
    const serviceAccount = values.serviceAccount || name;
    let result: WaypointAddResult;
    if (ctx.cluster) {
      if (values.serviceAccount !== '' && values.serviceAccount !== name) {
        throw new WeftError('WEFT_USAGE', `--service-account applies to the lab only: on a cluster the controller names the waypoint's ServiceAccount after the Gateway (${name})`);
      }
      result = await addOnCluster(ctx, namespace, name);
    } else {
      const labDir = requireLab(ctx, 'add');
      if (values.node === '') throw new WeftError('WEFT_USAGE', `--node is required on the lab (which node runs the waypoint pod); usage: ${ADD_USAGE}`);
      // Loaded here: the lab's modules (ip, iptables) are not needed on a cluster.
      const { addWaypoint } = require('../../lab/waypoint-ctl') as typeof import('../../lab/waypoint-ctl');
      const made = await addWaypoint(labDir, { namespace, name, node: values.node, serviceAccount });
      result = {
        namespace, name, serviceAccount, identity: formatIdentity({ trustDomain: ctx.trustDomain, namespace, serviceAccount }),
        node: made.waypoint.node, pod: made.waypoint.name, address: made.waypoint.ip, netns: made.waypoint.netns, started: made.started,
      };
    }
    io.stdout(values.output === 'table' ? formatAdd(result) : formatStructured(result, values.output));
    return 0;
  },
});

async function addOnCluster(ctx: CliContext, namespace: string, name: string): Promise<WaypointAddResult> {
  const cluster = ClusterSession.open(ctx);
  try {
    await cluster.client.create(gatewaysPath(namespace), waypointGateway(namespace, name));
  } catch (err) {
    const status = k8sStatus(err);
    if (status === 409) {
      throw new WeftError('WEFT_WAYPOINT_EXISTS', `Gateway ${namespace}/${name} already exists in ${cluster.target.source}; pick another name, or remove it first (weft waypoint remove ${namespace}/${name})`, { cause: err });
    }
    if (status === 404) {
      throw new WeftError('WEFT_K8S_REQUEST_FAILED',
        `cannot create Gateway ${namespace}/${name}: the API server of ${cluster.target.source} has no Gateway API (CRDs not installed) or no namespace ${namespace}; ${GATEWAY_API_INSTALL}`,
        { cause: err });
    }
    throw err;
  } finally {
    cluster.close();
  }
  return { namespace, name, serviceAccount: name, identity: formatIdentity({ trustDomain: ctx.trustDomain, namespace, serviceAccount: name }), object: `Gateway ${namespace}/${name} (class ${WAYPOINT_GATEWAY_CLASS})` };
}

export function formatAdd(r: WaypointAddResult): string {
  const lines = r.object
    ? [`waypoint ${r.namespace}/${r.name}: created ${r.object}; the controller deploys it (kubectl -n ${r.namespace} get deploy,pods -l gateway.networking.k8s.io/gateway-name=${r.name})`]
    : [`waypoint ${r.namespace}/${r.name} added: pod on ${r.node} at ${r.address} (netns ${r.netns}), identity ${r.identity}`,
      r.started ? 'It is ready (its readiness endpoint answers 200).' : 'Its pod and records exist, but no process runs: weft waypoint run is not built yet (npm run build).'];
  lines.push(`Nothing goes through it until you bind a namespace: weft namespace use-waypoint ${r.namespace} ${r.name}`);
  return lines.join('\n') + '\n';
}

const REMOVE_USAGE = 'weft waypoint remove <namespace>/<name> [--force] [-o table|json|yaml]';

export interface WaypointRemoveResult {
  namespace: string;
  name: string;
  /** What was still bound to it (removed anyway with --force). */
  usedBy: string[];
  forced: boolean;
  object?: string;
}

const remove = defineCommand({
  usage: REMOVE_USAGE,
  summary: 'remove a waypoint (refused while a namespace or Service uses it, unless --force)',
  description: 'Traffic of what is bound to a removed waypoint is refused by the source ztunnels (fail closed) until\n'
    + 'it is unbound (weft namespace use-waypoint <ns> none) or a waypoint of that name exists again.',
  specs: {
    ...contextOptions,
    output: outputOptions.output,
    force: { flag: 'force', boolean: true, default: false, description: 'remove even while a namespace or Service still uses it', parse: parse.bool() },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', `expected exactly one waypoint; usage: ${REMOVE_USAGE}`);
    const { namespace, name } = parseWaypointRef(positionals[0], REMOVE_USAGE);
    const ctx = loadContext(values, io.env);
    const result: WaypointRemoveResult = ctx.cluster
      ? await removeOnCluster(ctx, namespace, name, values.force)
      : await removeOnLab(ctx, namespace, name, values.force);
    io.stdout(values.output === 'table' ? formatRemove(result) : formatStructured(result, values.output));
    return 0;
  },
});

function inUse(namespace: string, name: string, usedBy: string[]): WeftError {
  return new WeftError('WEFT_WAYPOINT_IN_USE',
    `waypoint ${namespace}/${name} is still used by ${usedBy.join(', ')}; their traffic would be refused without it. `
    + `Unbind them first (weft namespace use-waypoint ${namespace} none; a Service: remove its weft.io/use-waypoint label), or pass --force`,
    { details: { waypoint: `${namespace}/${name}`, usedBy } });
}

/** Lab: a waypoint is its registry record or a pod the lab runs (a half-made one included). */
async function removeOnLab(ctx: CliContext, namespace: string, name: string, force: boolean): Promise<WaypointRemoveResult> {
  const labDir = requireLab(ctx, 'remove');
  const lab = require('../../lab/waypoint-ctl') as typeof import('../../lab/waypoint-ctl');
  const { exists, usedBy } = await withRegistry(ctx, async (s) => {
    const state = await s.load();
    return { exists: state.waypoint(namespace, name) !== undefined, usedBy: waypointUsers(state, namespace, name) };
  });
  const labPod = lab.labWaypoints(labDir).some((w) => w.namespace === namespace && w.name === name);
  if (!exists && !labPod) await lab.removeWaypoint(labDir, namespace, name); // throws the not-found error listing the lab's waypoints
  if (usedBy.length > 0 && !force) throw inUse(namespace, name, usedBy);
  if (labPod) {
    await lab.removeWaypoint(labDir, namespace, name);
  } else {
    // Registered but not a pod of this lab (written by hand or a previous lab): the record goes.
    await withRegistryStore(ctx, (s) => s.store.apply([{ op: 'delete', kind: 'waypoint', key: `${namespace}/${name}` }]));
  }
  return { namespace, name, usedBy, forced: usedBy.length > 0 };
}

interface LabelledObject extends KubeObject { metadata: KubeObject['metadata'] & { labels?: Record<string, string> } }

/**
 * Cluster: the API server is the source of truth for bindings (the Namespace's and
 * Services' labels) and for the Gateway; the registry view may lag behind it.
 */
async function removeOnCluster(ctx: CliContext, namespace: string, name: string, force: boolean): Promise<WaypointRemoveResult> {
  const cluster = ClusterSession.open(ctx);
  const notFound = (err: unknown) => new WeftError('WEFT_REGISTRY_NOT_FOUND', `no Gateway ${namespace}/${name} in ${cluster.target.source}; list them with weft waypoints`,
    { cause: err, details: { kind: 'waypoint', key: `${namespace}/${name}` } });
  try {
    try {
      await cluster.client.get(gatewaysPath(namespace, name));
    } catch (err) {
      if (k8sStatus(err) === 404) throw notFound(err);
      throw err;
    }
    const usedBy: string[] = [];
    if ((await cluster.namespaceLabels(namespace))[USE_WAYPOINT_LABEL] === name) usedBy.push(`namespace ${namespace}`);
    const services = await cluster.client.list<LabelledObject>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
      { labelSelector: `${USE_WAYPOINT_LABEL}=${name}` });
    for (const svc of services.items.map((x) => x.metadata.name ?? '?').sort()) usedBy.push(`service ${namespace}/${svc}`);
    if (usedBy.length > 0 && !force) throw inUse(namespace, name, usedBy);
    try {
      await cluster.client.delete(gatewaysPath(namespace, name));
    } catch (err) {
      if (k8sStatus(err) === 404) throw notFound(err);
      throw err;
    }
    return { namespace, name, usedBy, forced: usedBy.length > 0, object: `Gateway ${namespace}/${name}` };
  } finally {
    cluster.close();
  }
}

export function formatRemove(r: WaypointRemoveResult): string {
  const lines = [`waypoint ${r.namespace}/${r.name} removed${r.object ? ` (deleted ${r.object}; the controller removes its Deployment)` : ''}`];
  if (r.forced) lines.push(`warning: still bound by ${r.usedBy.join(', ')}: their traffic is refused (fail closed) until unbound or a waypoint ${r.name} exists again`);
  return lines.join('\n') + '\n';
}

/**
 * `weft waypoint run`, the waypoint process, lives in src/waypoint: loaded only when
 * run, so `add`/`remove` never load the proxy.
 */
function waypointProcess(): Command | undefined {
  try {
    return (require('../../waypoint/command') as { default: Command }).default;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

const SUMMARY_RUN = 'run one waypoint (the L7 proxy; started by the lab or the controller\'s Deployment)';

const runCommand: CliCommand = {
  summary: SUMMARY_RUN,
  help: () => waypointProcess()?.help() ?? `Usage: weft waypoint run [flags]\n\n${SUMMARY_RUN}. Not built in this copy of weft.`,
  run: (argv) => runCommand.runWith(argv, processIo),
  async runWith(argv) {
    const cmd = waypointProcess();
    if (!cmd) throw new WeftError('WEFT_USAGE', 'weft waypoint run is not part of this build of weft (src/waypoint is missing); run npm run build');
    return cmd.run(argv);
  },
};

export default defineGroup({
  usage: 'weft waypoint <add|remove|run> ...',
  summary: 'add or remove a namespace\'s waypoint (L7 proxy), or run one',
  subcommands: { add, remove, run: runCommand },
});
