/**
 * Workload churn through the real metrics of a ztunnel (Istio's TCP counters,
 * ztunnel/metrics.ts) or a waypoint (request counter and histograms,
 * waypoint/metrics.ts), both following a real MeshState: workloads come, talk once
 * with a long-lived client, and leave, `window` of them in the registry at any time.
 * The series of a workload that left are removed (lib/metric-series.ts,
 * mesh/metric-sweep.ts), so the series count follows the window, not the number of
 * workloads that ever lived. Used by test/metric-series-churn.test.ts (the bound) and
 * bench/metric-series.ts (bytes of heap per series).
 */
import { Registry } from 'prom-client';
import { ambientNamespace, workloadRecord } from '../registry/fixtures';
import { MeshState } from '../registry/state';
import { recordKey, type Change, type WorkloadRecord } from '../registry/types';
import { ConnectionRegistry } from '../ztunnel/connections';
import { ZtunnelMetrics } from '../ztunnel/metrics';
import { WaypointMetrics } from '../waypoint/metrics';
import type { RequestRecord } from '../waypoint/types';

export type ChurnProxy = 'ztunnel' | 'waypoint';

/** The metrics of one proxy, fed one exchange (a connection, a request) between two workloads. */
export interface ChurnRig {
  registry: Registry;
  state: MeshState;
  /** Adds workload `i` (address 10.x.y.z) to the registry. */
  add(i: number): void;
  /** Deletes workload `i` from the registry: its series go. */
  remove(i: number): void;
  /** One exchange from the client to workload `i`, reported by the proxy's metrics. */
  exchange(i: number): void;
  /** Series now in the registry's Istio metrics (every family, one per label set). */
  series(): Promise<number>;
  close(): void;
}

const NS = 'churn';
const CLIENT = workloadRecord({ namespace: NS, name: 'client', node: 'node-a', serviceAccount: 'client', addresses: ['10.255.255.1'] });

function address(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function workload(i: number): WorkloadRecord {
  return workloadRecord({ namespace: NS, name: `w-${i}`, node: 'node-b', serviceAccount: `sa-${i}`, addresses: [address(i)] });
}

export function churnRig(proxy: ChurnProxy): ChurnRig {
  const registry = new Registry();
  const state = new MeshState({ trustDomain: 'cluster.local' });
  let revision = 0;
  const apply = (changes: Change[]) => state.applyChanges(changes, ++revision);
  const put = (r: WorkloadRecord): Change => ({ op: 'put', kind: 'workload', key: recordKey('workload', r), record: r });
  const ns = ambientNamespace(NS);
  apply([{ op: 'put', kind: 'namespace', key: recordKey('namespace', ns), record: ns }, put(CLIENT)]);
  let exchange: (i: number) => void;
  let unfollow: () => void;
  if (proxy === 'ztunnel') {
    const metrics = new ZtunnelMetrics(registry);
    const connections = new ConnectionRegistry();
    metrics.observe(connections);
    unfollow = metrics.followState(state);
    exchange = (i) => {
      const src = state.workloadByAddress(CLIENT.addresses[0]!)!;
      const dst = state.workloadByAddress(address(i))!;
      const c = connections.add({ direction: 'outbound', protocol: 'HBONE', src: { ip: CLIENT.addresses[0]!, port: 40000, workload: src, identity: src.identity },
        dst: { ip: address(i), port: 8080, workload: dst, identity: dst.identity } });
      c.established = true;
      metrics.connectionOpened(c);
      c.counters.received += 100;
      c.counters.sent += 1000;
      connections.remove(c);
      metrics.connectionClosed(c, '-');
    };
  } else {
    const metrics = new WaypointMetrics(registry, state);
    unfollow = metrics.followState(state);
    exchange = (i) => metrics.onRequest(request(i));
  }
  return {
    registry, state,
    add: (i) => apply([put(workload(i))]),
    remove: (i) => apply([{ op: 'delete', kind: 'workload', key: recordKey('workload', workload(i)) }]),
    exchange: (i) => exchange(i),
    series: async () => {
      let n = 0;
      for (const m of await registry.getMetricsAsJSON()) {
        // A histogram's label set is one series (its buckets, _sum and _count go together).
        if (m.name.startsWith('istio_')) n += new Set(m.values.map((v) => JSON.stringify({ ...v.labels, le: undefined }))).size;
      }
      return n;
    },
    close: () => unfollow(),
  };
}

function request(i: number): RequestRecord {
  return {
    protocol: 'http1', grpc: false, method: 'GET', authority: `w-${i}.${NS}.svc.cluster.local`, path: '/', status: 200,
    durationMs: 3, attempts: 1, traceId: '0'.repeat(32), responseFlag: '-', requestBytes: 100, responseBytes: 1000,
    sourceAddress: CLIENT.addresses[0]!, sourceIdentity: `spiffe://cluster.local/ns/${NS}/sa/client`,
    upstreamTarget: { host: address(i), port: 8080, transport: 'hbone' },
    destinationIdentity: `spiffe://cluster.local/ns/${NS}/sa/sa-${i}`,
    destinationService: { namespace: NS, name: `svc-${i}`, hostname: `svc-${i}.${NS}.svc.cluster.local` },
  };
}

/**
 * Workloads 0..total-1 come one by one; each has one exchange with the client; once
 * `window` are in the registry the oldest leaves as the next comes. `each` is told
 * after every workload, with how many have come.
 */
export async function churn(rig: ChurnRig, total: number, window: number, each?: (done: number) => void | Promise<void>): Promise<void> {
  for (let i = 0; i < total; i++) {
    rig.add(i);
    rig.exchange(i);
    if (i >= window) rig.remove(i - window);
    await each?.(i + 1);
  }
}
