/**
 * An in-process mesh on loopback for tests: N "nodes" (each with its own MeshState,
 * certificate source, pool and the three listeners on 127.0.0.x) and "pods" (small
 * TCP servers on other 127.x addresses). Real TLS, real HTTP/2, real sockets; only
 * the iptables DNAT is replaced by the dialler recording the original destination
 * (ConntrackTable) and by `hboneDialTarget` pointing at the destination node.
 */
import * as net from 'node:net';
import { Registry } from 'prom-client';
import pino from 'pino';
import type { Logger } from '../../lib/log';
import { MeshState } from '../../registry/state';
import type { Change, Kind, RecordsByKind } from '../../registry/types';
import { recordKey } from '../../registry/types';
import { ConnectionRegistry } from '../connections';
import { HBONE_PORT, type DialTarget, type OriginalDst } from '../../hbone/contracts';
import { InboundServer, type InboundOptions } from '../inbound';
import { InboundPlaintextServer } from '../inbound-plaintext';
import { ZtunnelMetrics } from '../metrics';
import { exactSelfAddresses, loopGuard } from '../loop-guard';
import { OutboundProxy } from '../outbound';
import { HbonePool, type HbonePoolOptions } from '../../hbone/pool';
import { SecureContextCache } from '../../hbone/tls';
import { ListenerDrain } from '../drain';
import { ConntrackTable } from './conntrack-table';
import { ProxyTelemetry } from '../../telemetry/proxy-telemetry';
import { IssuerCertSource } from './issuer-certs';

export interface LoopbackNode {
  name: string;
  address: string;
  state: MeshState;
  certs: IssuerCertSource;
  connections: ConnectionRegistry;
  registry: Registry;
  metrics: ZtunnelMetrics;
  pool: HbonePool;
  outbound: OutboundProxy;
  inbound: InboundServer;
  plaintext: InboundPlaintextServer;
  ports: { outbound: number; inbound: number; plaintext: number };
  /** Spans (only for nodes given a trace sampling). */
  telemetry?: ProxyTelemetry;
}

export interface LoopbackMeshOptions {
  nodes: Array<{ name: string; address: string }>;
  trustDomain?: string;
  logger?: Logger;
  pool?: Partial<Omit<HbonePoolOptions, 'certs' | 'logger'>>;
  /** Options of every node's HBONE server (limits, timers). */
  inbound?: Partial<Pick<InboundOptions, 'limits' | 'nodeLimits' | 'tuning' | 'socketFactory' | 'upstreamConnectTimeoutMs'>>;
  /** Trace sampling per node name; a node listed gets a ProxyTelemetry (spans in its ring). */
  traceSampling?: Record<string, number>;
}

export class LoopbackMesh {
  readonly conntrack = new ConntrackTable();
  readonly nodes = new Map<string, LoopbackNode>();
  private readonly servers = new Set<net.Server>();
  private readonly clientSockets = new Set<net.Socket>();
  private readonly podSockets = new Set<net.Socket>();

  private constructor(readonly ca: IssuerCertSource, readonly logger: Logger) {}

  static async start(opts: LoopbackMeshOptions): Promise<LoopbackMesh> {
    const trustDomain = opts.trustDomain ?? 'cluster.local';
    const ca = await IssuerCertSource.create(trustDomain);
    const mesh = new LoopbackMesh(ca, opts.logger ?? pino({ level: 'silent' }));
    for (const n of opts.nodes) await mesh.addNode(n.name, n.address, trustDomain, opts.pool ?? {}, opts.inbound ?? {}, opts.traceSampling?.[n.name]);
    return mesh;
  }

  private async addNode(name: string, address: string, trustDomain: string, poolOpts: LoopbackMeshOptions['pool'], inboundOpts: LoopbackMeshOptions['inbound'], traceSampling?: number): Promise<void> {
    const log = this.logger.child({ node: name });
    const state = new MeshState({ trustDomain });
    const certs = this.ca.sibling();
    const connections = new ConnectionRegistry();
    const registry = new Registry();
    const metrics = new ZtunnelMetrics(registry);
    metrics.followState(state);
    const contexts = new SecureContextCache();
    const pool = new HbonePool({ certs, logger: log, contexts, socketFactory: this.conntrack.factory(), ...poolOpts });
    // The node is its address only: its pods share 127.0.0.0/8 with it.
    const guard = loopGuard(exactSelfAddresses([address]));
    const telemetry = traceSampling === undefined ? undefined : new ProxyTelemetry({
      proxy: `ztunnel ${name}`, registry, logger: log,
      config: { traceSampling, traceBufferSpans: 1024, otlpEndpoint: '', accessLogSampling: 1, accessLogLevels: {} },
    });
    const common = { state, logger: log, connections, metrics, nodeName: name, originalDst: this.conntrack, loopGuard: guard, ...(telemetry ? { telemetry } : {}) };
    const outbound = new OutboundProxy({
      ...common, pool,
      hboneDialTarget: (w) => this.hboneTarget(w.record.node),
    });
    const inbound = new InboundServer({ ...common, certs, ...inboundOpts });
    const plaintext = new InboundPlaintextServer(common);
    const ports = {
      outbound: (await outbound.listen(address, 0)).port,
      inbound: (await inbound.listen(address, 0)).port,
      plaintext: (await plaintext.listen(address, 0)).port,
    };
    this.nodes.set(name, { name, address, state, certs, connections, registry, metrics, pool, outbound, inbound, plaintext, ports, ...(telemetry ? { telemetry } : {}) });
  }

  node(name: string): LoopbackNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no test node ${name}`);
    return n;
  }

  /** Where a peer's HBONE dial lands: the destination node's 15008 listener. */
  hboneTarget(nodeName: string): DialTarget {
    const n = this.node(nodeName);
    return { host: n.address, port: n.ports.inbound };
  }

  /** Applies the same records to every node's state (as every follower would). */
  put<K extends Kind>(kind: K, ...records: RecordsByKind[K][]): void {
    const changes = records.map((record) => ({ op: 'put', kind, key: recordKey(kind, record), record }) as Change);
    this.apply(changes);
  }

  remove(kind: Kind, key: string): void {
    this.apply([{ op: 'delete', kind, key }]);
  }

  private revision = 0;
  private apply(changes: Change[]): void {
    this.revision++;
    for (const n of this.nodes.values()) n.state.applyChanges(changes, this.revision);
  }

  /** A node's graceful shutdown, as its ztunnel runs it on SIGTERM (not started: call run()). */
  drain(name: string, timeoutMs: number): ListenerDrain {
    const n = this.node(name);
    return new ListenerDrain({ listeners: [n.outbound, n.plaintext, n.inbound], connections: n.connections, timeoutMs, logger: this.logger.child({ node: name }) });
  }

  /** A "pod" server on `ip` (port 0); closed with the mesh. */
  async pod(ip: string, onConnection: (s: net.Socket) => void, port = 0): Promise<number> {
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      this.podSockets.add(s);
      s.once('close', () => this.podSockets.delete(s));
      onConnection(s);
    });
    this.servers.add(srv);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, ip, () => resolve());
    });
    return (srv.address() as net.AddressInfo).port;
  }

  /** An app in pod `from` (on `node`) connecting to `to`: captured to the node's 15001. */
  connectOutbound(node: string, from: string, to: OriginalDst): net.Socket {
    const n = this.node(node);
    return this.track(this.conntrack.dial({ host: n.address, port: n.ports.outbound }, to, { from }));
  }

  /** A client outside the mesh connecting to pod `to` on `node`: captured to 15006. */
  connectPlaintext(node: string, from: string, to: OriginalDst): net.Socket {
    const n = this.node(node);
    return this.track(this.conntrack.dial({ host: n.address, port: n.ports.plaintext }, to, { from }));
  }

  /** A raw TCP connection to a node's 15008, as if for pod `podIp`. */
  connectHbone(node: string, podIp: string, from?: string): net.Socket {
    const n = this.node(node);
    // Not half-open: this is a TLS transport, whose peer's FIN ends it.
    return this.track(this.conntrack.dial({ host: n.address, port: n.ports.inbound }, { ip: podIp, port: HBONE_PORT }, { from, allowHalfOpen: false }));
  }

  private track(s: net.Socket): net.Socket {
    this.clientSockets.add(s);
    s.on('error', () => {});
    s.once('close', () => this.clientSockets.delete(s));
    return s;
  }

  async close(): Promise<void> {
    for (const s of this.clientSockets) s.destroy();
    for (const n of this.nodes.values()) {
      await n.outbound.close();
      await n.pool.close();
      await n.inbound.close();
      await n.plaintext.close();
    }
    for (const s of this.podSockets) s.destroy();
    await Promise.all([...this.servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
