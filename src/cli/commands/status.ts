/**
 * `weft status`: is each part of the mesh up, and is every ztunnel's view of the
 * registry current? All checks run at once with short deadlines, and a failing part
 * is a row of the answer, never an exception: status is what one runs when things
 * are broken.
 */
import * as net from 'node:net';
import { isWeftError } from '../../lib/errors';
import { parse } from '../../lib/options';
import { describeRedis } from '../../registry/connection';
import type { MeshState } from '../../registry/state';
import type { ConfigDump } from '../../ztunnel/admin-types';
import { queryNodes, type NodesResult } from '../admin-client';
import { contextOptions, loadContext, selectNodes, type CliContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { formatAge, outputOptions, show, type Frame, type Table } from '../output';
import { contextNodes, withCluster, type ClusterSession } from '../cluster';
import { openRegistry, type RegistryReader } from '../registry-session';
import { listWaypoints } from './waypoints';

/** A ztunnel whose registry view is older than this is reported stale (its follower confirms every ~1 s). */
export const STALE_AFTER_SECONDS = 5;
const CA_TIMEOUT_MS = 1500;

export interface RegistryStatus {
  url: string;
  reachable: boolean;
  revision?: number;
  counts?: { nodes: number; namespaces: number; workloads: number; inMesh: number; services: number; policies: number };
  error?: string;
}

export interface CaStatus {
  address?: string;
  reachable: boolean;
  error?: string;
}

export interface ZtunnelStatusItem {
  node: string;
  /** ready | not ready | stale | not answering | not in context */
  status: string;
  healthy: boolean;
  version?: string;
  registryRevision?: number;
  /** Registry revision minus the node's: how many writes it has not applied yet. */
  behind?: number;
  stalenessSeconds?: number;
  startedAt?: string;
  certificates?: Record<string, number>;
  error?: string;
}

/** A waypoint is healthy with at least one ready pod; without one, traffic bound to it is refused. */
export interface WaypointStatusItem {
  namespace: string;
  name: string;
  /** ready | no ready pod | no pods */
  status: string;
  healthy: boolean;
  readyPods: number;
  pods: number;
  /** `node/pod address` of each pod. */
  where: string[];
  usedBy: string[];
}

export interface MeshStatus {
  context: string;
  registry: RegistryStatus;
  ca: CaStatus;
  ztunnels: ZtunnelStatusItem[];
  waypoints: WaypointStatusItem[];
  healthy: boolean;
}

export async function registryStatus(ctx: CliContext): Promise<{ status: RegistryStatus; state?: MeshState }> {
  let url = ctx.redis ? describeRedis(ctx.redis) : 'via a ztunnel';
  let session: RegistryReader | undefined;
  try {
    session = await openRegistry(ctx);
    const state = await session.load();
    url = session.where;
    const ws = state.workloads();
    return {
      state,
      status: {
        url, reachable: true, revision: state.revision,
        counts: {
          nodes: state.list('node').length, namespaces: state.list('namespace').length, workloads: ws.length,
          inMesh: ws.filter((w) => w.enrolled).length, services: state.list('service').length,
          policies: state.list('policy').length + state.list('peerauth').length,
        },
      },
    };
  } catch (err) {
    return { status: { url, reachable: false, error: isWeftError(err) ? err.message : String(err) } };
  } finally {
    await session?.close();
  }
}

export function tcpCheck(address: string, timeoutMs = CA_TIMEOUT_MS): Promise<CaStatus> {
  let hp: { host: string; port: number };
  try {
    hp = parse.hostPort()(address);
  } catch (err) {
    return Promise.resolve({ address, reachable: false, error: (err as Error).message });
  }
  return new Promise((resolve) => {
    const sock = net.connect({ host: hp.host, port: hp.port });
    const done = (s: CaStatus) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(s);
    };
    const timer = setTimeout(() => done({ address, reachable: false, error: `no TCP answer within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => done({ address, reachable: true }));
    sock.once('error', (err: NodeJS.ErrnoException) => done({ address, reachable: false, error: err.code ?? err.message }));
  });
}

/** One row per node: the context's nodes, plus registry nodes the context does not list. */
export function ztunnelStatuses(result: NodesResult<ConfigDump>, registryRevision: number | undefined, extraNodes: string[],
  missingReason = 'the registry lists this node but the context gives no way to reach its ztunnel'): ZtunnelStatusItem[] {
  const items: ZtunnelStatusItem[] = [];
  for (const { node, data } of result.answers) {
    const s = data.status;
    const item: ZtunnelStatusItem = {
      node, status: s.ready ? 'ready' : 'not ready', healthy: s.ready, version: s.version ?? data.version,
      registryRevision: s.registryRevision, stalenessSeconds: s.registryStalenessSeconds, startedAt: s.startedAt,
    };
    if (registryRevision !== undefined && typeof s.registryRevision === 'number') item.behind = Math.max(0, registryRevision - s.registryRevision);
    if (s.ready && s.registryStalenessSeconds > STALE_AFTER_SECONDS) {
      item.status = 'stale';
      item.healthy = false;
    }
    const certs: Record<string, number> = {};
    for (const c of data.certificates ?? []) certs[c.state] = (certs[c.state] ?? 0) + 1;
    item.certificates = certs;
    items.push(item);
  }
  for (const f of result.failures) items.push({ node: f.node, status: 'not answering', healthy: false, error: f.error });
  for (const node of extraNodes) {
    items.push({ node, status: 'not in context', healthy: false, error: missingReason });
  }
  return items.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

export function waypointStatuses(state: MeshState | undefined): WaypointStatusItem[] {
  if (!state) return [];
  return listWaypoints(state).map((w) => ({
    namespace: w.namespace, name: w.name,
    status: w.readyPods > 0 ? 'ready' : w.pods.length === 0 ? 'no pods' : 'no ready pod',
    healthy: w.readyPods > 0, readyPods: w.readyPods, pods: w.pods.length,
    where: w.pods.map((p) => `${p.node}/${p.name} ${p.addresses[0] ?? '-'}`), usedBy: w.usedBy,
  }));
}

export async function meshStatus(ctx: CliContext, nodeFilter: string, cluster?: ClusterSession): Promise<MeshStatus> {
  const all = await contextNodes(ctx, cluster);
  const nodes = selectNodes(ctx, nodeFilter, all);
  // On a cluster the CA is inside it, behind a ClusterIP; the ztunnels' certificate
  // states below say whether it serves.
  const caUnchecked = cluster ? 'not checked from outside the cluster: see the ztunnels\' certificates' : 'not checked: the context names no caAddress';
  const [reg, ca, dumps] = await Promise.all([
    registryStatus(ctx),
    ctx.caAddress ? tcpCheck(ctx.caAddress) : Promise.resolve<CaStatus>({ reachable: false, error: caUnchecked }),
    queryNodes<ConfigDump>(nodes, '/config_dump', (d) =>
      typeof d === 'object' && d !== null && typeof (d as ConfigDump).status === 'object' ? undefined : 'no "status" object',
    cluster ? cluster.adminOptions : {}),
  ]);
  const known = new Set(all.map((n) => n.name));
  const extra = nodeFilter || !reg.state ? [] : reg.state.list('node').map((n) => n.name).filter((n) => !known.has(n));
  const ztunnels = ztunnelStatuses(dumps, reg.status.revision, extra,
    cluster ? 'the registry lists this node but no ztunnel pod runs on it (kubectl -n weft-system get ds weft-ztunnel)' : undefined);
  const waypoints = waypointStatuses(reg.state);
  return {
    context: ctx.source, registry: reg.status, ca, ztunnels, waypoints,
    // Without a caAddress (a --redis-url-only context) the CA is unknown, not unhealthy.
    healthy: reg.status.reachable && (ca.reachable || !ctx.caAddress) && ztunnels.every((z) => z.healthy) && waypoints.every((w) => w.healthy),
  };
}

function certSummary(c: Record<string, number> | undefined): string | undefined {
  if (!c) return undefined;
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  const parts = Object.entries(c).sort().map(([k, v]) => `${v} ${k}`);
  return `${total} cert${total === 1 ? '' : 's'}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

export function statusTable(s: MeshStatus, now: number): Table {
  const r = s.registry;
  const rows: Table['rows'] = [[
    'registry', r.url, r.reachable ? 'reachable' : 'unreachable', undefined, r.revision,
    r.counts
      ? `${r.counts.nodes} nodes, ${r.counts.workloads} workloads (${r.counts.inMesh} in mesh), ${r.counts.services} services, ${r.counts.policies} policies`
      : r.error,
  ]];
  rows.push(['ca', s.ca.address ?? '-', s.ca.reachable ? 'reachable' : s.ca.address ? 'unreachable' : 'unknown', undefined, undefined, s.ca.error ?? 'TCP connect ok']);
  for (const z of s.ztunnels) {
    const detail = z.error ?? [
      z.stalenessSeconds === undefined ? undefined
        : z.stalenessSeconds < 0 ? 'not following the registry' : `registry view ${z.stalenessSeconds.toFixed(1)}s old`,
      z.behind ? `${z.behind} revisions behind` : undefined,
      z.startedAt ? `up ${formatAge(now - Date.parse(z.startedAt))}` : undefined,
      certSummary(z.certificates),
    ].filter(Boolean).join(', ');
    rows.push([`ztunnel`, z.node, z.status, z.version, z.registryRevision, detail]);
  }
  for (const w of s.waypoints) {
    const detail = [`${w.readyPods}/${w.pods} pods ready${w.where.length ? ` (${w.where.join(', ')})` : ''}`,
      w.usedBy.length ? `used by ${w.usedBy.join(', ')}${w.healthy ? '' : ': their traffic is refused'}` : 'unused'].join(', ');
    rows.push(['waypoint', `${w.namespace}/${w.name}`, w.status, undefined, undefined, detail]);
  }
  return { headers: ['COMPONENT', 'NAME', 'STATUS', 'VERSION', 'REVISION', 'DETAIL'], rows };
}

export function statusFrame(s: MeshStatus, now: number): Frame {
  return { table: statusTable(s, now), data: s, warnings: [], exitCode: s.healthy ? 0 : 1 };
}

const USAGE = 'weft status [--node NODE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: "show the mesh's health: registry, CA, each node's ztunnel (ready, version, registry revision, staleness) and each waypoint",
  description: `A ztunnel is "stale" when its registry view was last confirmed more than ${STALE_AFTER_SECONDS}s ago (it keeps serving
its last view meanwhile); REVISION is the registry revision it has applied.`,
  specs: { ...contextOptions, ...outputOptions, node: { flag: 'node', default: '', defaultText: 'all nodes', description: 'only this node', parse: parse.string() } },
  footer: 'Exit status: 0 when everything is healthy, 1 otherwise (always 0 with --watch).',
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    return withCluster(ctx, (cluster) => show(async () => statusFrame(await meshStatus(ctx, values.node, cluster), Date.now()),
      { format: values.output, watch: values.watch, title: 'weft status', io }));
  },
});
