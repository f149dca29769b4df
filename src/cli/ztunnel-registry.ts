/**
 * The registry as a ztunnel holds it, for a cluster whose Redis the operator cannot
 * reach (it is inside the cluster, without a Service outside). Every ztunnel follows
 * the whole registry, so any one that answers gives the full view; it is also what
 * the data path enforces, which is what an operator asks `weft workloads` about.
 */
import { WeftError } from '../lib/errors';
import { MeshState, type RegistrySnapshot } from '../registry/state';
import { KINDS } from '../registry/types';
import { validateRecord } from '../registry/validate';
import type { RegistryDump } from '../ztunnel/admin-types';
import { adminGet } from './admin-client';
import { ClusterSession } from './cluster';
import type { CliContext } from './context';
import type { RegistryReader } from './registry-session';

export class ZtunnelRegistryReader implements RegistryReader {
  where = 'a ztunnel (through the API server)';

  private constructor(readonly ctx: CliContext, private readonly cluster: ClusterSession) {}

  static async open(ctx: CliContext): Promise<ZtunnelRegistryReader> {
    return new ZtunnelRegistryReader(ctx, ClusterSession.open(ctx));
  }

  /** Asks the ztunnels one by one (ready pods first) until one answers. */
  async load(): Promise<MeshState> {
    const nodes = (await this.cluster.ztunnelNodes())
      .filter((n) => n.admin && 'podProxy' in n.admin && !n.admin.podProxy.unavailable);
    const failures: string[] = [];
    for (const node of nodes.slice(0, 3)) {
      try {
        const dump = await adminGet<RegistryDump>(node, '/registry', { ...this.cluster.adminOptions, timeoutMs: 5000 });
        const state = toState(dump, this.ctx.trustDomain);
        const pod = node.admin && 'podProxy' in node.admin ? node.admin.podProxy.pod : node.name;
        this.where = `ztunnel ${pod} on ${node.name} (through the API server)`;
        return state;
      } catch (err) {
        failures.push(`${node.name}: ${(err as Error).message}`);
      }
    }
    throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
      `no ztunnel of ${this.cluster.target.source} gave its registry view (${failures.join('; ') || 'no running ztunnel pod'}); check kubectl -n ${this.cluster.target.namespace} get pods, or pass --redis-url to read Redis directly`);
  }

  async close(): Promise<void> {
    this.cluster.close();
  }
}

/** Validates the dump record by record, as a follower does with Redis: a bad record is an error here, not silently dropped. */
export function toState(dump: RegistryDump, fallbackTrustDomain: string): MeshState {
  if (typeof dump !== 'object' || dump === null || typeof dump.records !== 'object' || typeof dump.revision !== 'number') {
    throw new Error('GET /registry did not return a registry dump; is the ztunnel a matching weft version?');
  }
  const snapshot = {} as RegistrySnapshot;
  for (const kind of KINDS) {
    const list = dump.records[kind] ?? [];
    if (!Array.isArray(list)) throw new Error(`GET /registry: records.${kind} is not a list`);
    (snapshot as Record<string, unknown[]>)[kind] = list.map((r, i) => {
      try {
        return validateRecord(kind, r);
      } catch (err) {
        throw new Error(`GET /registry: records.${kind}[${i}]: ${(err as Error).message}`);
      }
    });
  }
  const state = new MeshState({ trustDomain: dump.trustDomain || fallbackTrustDomain });
  state.replaceAll(snapshot, dump.revision);
  return state;
}
