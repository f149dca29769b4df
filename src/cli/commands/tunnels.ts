/**
 * `weft tunnels`: the pooled HBONE connections of every node's ztunnel (GET /tunnels),
 * keyed like the pool: source identity, destination identity, peer.
 */
import type { TunnelInfo, TunnelsResponse } from '../../ztunnel/admin-types';
import type { NodeAnswer } from '../admin-client';
import { hasArray } from '../admin-client';
import { adminViewOptions, runAdminView, type AdminView } from '../admin-command';
import { defineCommand, noPositionals } from '../io';
import { ageSince, formatBytes, type Table } from '../output';
import { byKey } from '../registry-command';

export interface TunnelItem extends TunnelInfo {
  node: string;
}

export function tunnelItems(answers: readonly NodeAnswer<TunnelsResponse>[]): TunnelItem[] {
  return answers.flatMap((a) => a.data.tunnels.map((t) => ({ ...t, node: a.node })))
    .sort(byKey((t) => `${t.node}\u0000${t.sourceIdentity}\u0000${t.destinationIdentity}\u0000${t.peerAddress}\u0000${t.id}`));
}

export function tunnelsTable(items: readonly TunnelItem[], now: number): Table {
  return {
    headers: ['NODE', 'SOURCE IDENTITY', 'DESTINATION IDENTITY', 'PEER', 'STATE', 'STREAMS', 'SENT', 'RECEIVED', 'AGE', 'IDLE'],
    rows: items.map((t) => [
      t.node, t.sourceIdentity, t.destinationIdentity, t.peerNode ? `${t.peerAddress} (${t.peerNode})` : t.peerAddress,
      t.state, `${t.activeStreams}/${t.totalStreams}`, formatBytes(t.bytesSent), formatBytes(t.bytesReceived),
      ageSince(t.openedAt, now), ageSince(t.lastActivityAt, now),
    ]),
  };
}

export const tunnelsView: AdminView<TunnelsResponse> = {
  title: 'weft tunnels',
  path: '/tunnels',
  check: hasArray('tunnels'),
  build(answers, now) {
    const items = tunnelItems(answers);
    return { table: tunnelsTable(items, now), data: { items }, empty: 'No open tunnels.' };
  },
};

const USAGE = 'weft tunnels [--node NODE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list the HBONE tunnels each ztunnel holds: identities, peer, streams, bytes, age',
  description: 'STREAMS is active/total CONNECT streams the tunnel carried; SENT and RECEIVED count tunnel payload\n'
    + 'bytes; IDLE is the time since the last stream activity. Asks every node\'s ztunnel admin API; a node\n'
    + 'that does not answer is reported on stderr and the others are still shown.',
  specs: adminViewOptions,
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runAdminView(values, io, tunnelsView);
  },
});
