/**
 * `weft connections`: live proxied connections of every node's ztunnel (GET
 * /connections), seen from the local workload as istioctl shows them: LOCAL is the
 * workload's side, REMOTE the other end, REMOTE TARGET who the other end is.
 */
import { parse } from '../../lib/options';
import type { ConnectionInfo, ConnectionsResponse } from '../../ztunnel/admin-types';
import { hasArray, type NodeAnswer } from '../admin-client';
import { adminViewOptions, runAdminView, type AdminView } from '../admin-command';
import { defineCommand, noPositionals } from '../io';
import { ageSince, formatBytes, type Table } from '../output';
import { byKey } from '../registry-command';

export interface ConnectionItem extends ConnectionInfo {
  node: string;
  /** The workload on this node the connection belongs to. */
  workload?: string;
  local: string;
  remote: string;
  remoteTarget?: string;
}

/** Outbound: the local side is the source; inbound (HBONE or plaintext): the destination. */
export function connectionItem(node: string, c: ConnectionInfo): ConnectionItem {
  const outbound = c.direction === 'outbound';
  const item: ConnectionItem = {
    ...c, node,
    local: outbound ? c.sourceAddress : c.destinationAddress,
    remote: outbound ? c.destinationAddress : c.sourceAddress,
  };
  const workload = outbound ? c.sourceWorkload : c.destinationWorkload;
  let target = outbound ? c.destinationService ?? c.destinationWorkload : c.sourceWorkload ?? c.sourceIdentity;
  if (outbound && c.destinationWaypoint) target = `${target ?? '?'} via waypoint ${c.destinationWaypoint}`;
  if (workload) item.workload = workload;
  if (target) item.remoteTarget = target;
  return item;
}

export function connectionItems(answers: readonly NodeAnswer<ConnectionsResponse>[]): ConnectionItem[] {
  return answers.flatMap((a) => a.data.connections.map((c) => connectionItem(a.node, c)))
    .sort(byKey((c) => `${c.node}\u0000${c.workload ?? ''}\u0000${c.direction}\u0000${c.openedAt}\u0000${c.id}`));
}

export function connectionsTable(items: readonly ConnectionItem[], now: number): Table {
  return {
    headers: ['NODE', 'WORKLOAD', 'DIRECTION', 'LOCAL', 'REMOTE', 'REMOTE TARGET', 'PROTOCOL', 'SENT', 'RECEIVED', 'AGE'],
    rows: items.map((c) => [
      c.node, c.workload, c.direction, c.local, c.remote, c.remoteTarget, c.protocol.toUpperCase(),
      formatBytes(c.bytesSent), formatBytes(c.bytesReceived), ageSince(c.openedAt, now),
    ]),
  };
}

export interface ConnectionFilter {
  namespace?: string;
  workload?: string;
}

export function connectionsView(f: ConnectionFilter = {}): AdminView<ConnectionsResponse> {
  return {
    title: 'weft connections',
    path: '/connections',
    check: hasArray('connections'),
    build(answers, now) {
      const items = connectionItems(answers)
        .filter((c) => !f.namespace || (c.workload ?? '').startsWith(`${f.namespace}/`))
        .filter((c) => !f.workload || c.workload === f.workload);
      return { table: connectionsTable(items, now), data: { items }, empty: 'No open connections.' };
    },
  };
}

const USAGE = 'weft connections [--node NODE] [-n NAMESPACE] [--workload NS/POD] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list live connections each ztunnel proxies: workload, direction, addresses, protocol, bytes',
  description: 'DIRECTION is outbound (from a local workload) or inbound (to one). PROTOCOL is HBONE for tunnelled\n'
    + 'connections, PASSTHROUGH/TCP/PLAINTEXT for plain TCP. A node that does not answer is reported on\n'
    + 'stderr and the others are still shown.',
  specs: {
    ...adminViewOptions,
    namespace: { flag: 'namespace', default: '', defaultText: 'all namespaces', description: "only connections of this namespace's workloads (-n)", parse: parse.string() },
    workload: { flag: 'workload', default: '', defaultText: 'all workloads', description: 'only connections of this workload (namespace/name)', parse: parse.string() },
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runAdminView(values, io, connectionsView({ namespace: values.namespace, workload: values.workload }));
  },
});
