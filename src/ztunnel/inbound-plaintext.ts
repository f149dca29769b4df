/**
 * Inbound plaintext (port 15006): TCP to a mesh pod that did not arrive over HBONE
 * (a client outside the mesh). There is no peer identity, so STRICT mTLS refuses it
 * outright and policies can only match on addresses and ports. A refusal is a TCP
 * reset: the client sees "connection reset", never a half-working connection.
 */
import type * as net from 'node:net';
import type { Logger } from '../lib/log';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import { formatHostPort } from './address';
import { authorize, type AuthzDecision } from './authorization';
import type { ConnectionRegistry } from './connections';
import { PROXY_PORTS, type OriginalDstSource, type SocketFactory } from './contracts';
import { defaultUpstreamFactory, dialTcp, reset } from './dial';
import { ConnectionLifecycle, type EndResult } from './lifecycle';
import { ListenerBase } from './listener';
import { flagForError, type ZtunnelMetrics } from './metrics';
import { DEFAULT_PIPE_HIGH_WATER_MARK } from './pipe';
import { PolicyWatcher } from './policy-watch';

export interface InboundPlaintextOptions {
  state: MeshState;
  originalDst: OriginalDstSource;
  logger: Logger;
  connections: ConnectionRegistry;
  metrics?: ZtunnelMetrics;
  nodeName: string;
  /** Dials the local pods; `net.connect` by default. */
  socketFactory?: SocketFactory;
  /** Default 10 s. */
  upstreamConnectTimeoutMs?: number;
  pipeHighWaterMark?: number;
}

export class InboundPlaintextServer extends ListenerBase {
  private readonly state: MeshState;
  private readonly originalDst: OriginalDstSource;
  private readonly nodeName: string;
  private readonly socketFactory: SocketFactory;
  private readonly upstreamTimeoutMs: number;
  private readonly hwm: number;
  private readonly lifecycle: ConnectionLifecycle;
  readonly policies: PolicyWatcher;

  constructor(opts: InboundPlaintextOptions) {
    const log = opts.logger.child({ component: 'inbound-plaintext' });
    super(log, { pauseOnConnect: true });
    this.state = opts.state;
    this.originalDst = opts.originalDst;
    this.nodeName = opts.nodeName;
    this.socketFactory = opts.socketFactory ?? defaultUpstreamFactory;
    this.upstreamTimeoutMs = opts.upstreamConnectTimeoutMs ?? 10_000;
    this.hwm = opts.pipeHighWaterMark ?? DEFAULT_PIPE_HIGH_WATER_MARK;
    this.lifecycle = new ConnectionLifecycle({ connections: opts.connections, metrics: opts.metrics, logger: this.log });
    this.policies = new PolicyWatcher(this.state, this.log, (n) => opts.metrics?.revoked.inc({ listener: 'plaintext' }, n));
  }

  protected async onConnection(sock: net.Socket): Promise<void> {
    let downstreamError: string | undefined;
    sock.on('error', (err: NodeJS.ErrnoException) => { downstreamError ??= err.code ?? err.message; });
    const ends = await this.capturedEnds(sock, this.originalDst, 'a plaintext inbound connection');
    if (!ends) return;
    const { srcIp, srcPort, dst } = ends;
    const workload = this.state.workloadByAddress(dst.ip);
    const conn = this.lifecycle.begin({
      direction: 'inbound',
      protocol: 'TCP',
      src: { ip: srcIp, port: srcPort, workload: this.state.workloadByAddress(srcIp) },
      dst: { ip: dst.ip, port: dst.port, workload, identity: workload?.identity },
    });
    const refuse = (result: EndResult) => {
      reset(sock);
      this.lifecycle.end(conn, result);
    };
    if (!workload || workload.record.node !== this.nodeName) {
      return refuse({ flag: 'NO_ROUTE', reason: `${dst.ip} is not a workload on node ${this.nodeName}` });
    }
    if (PROXY_PORTS.has(dst.port)) {
      return refuse({ flag: 'LOOP', reason: `refused to prevent a loop: ${formatHostPort(dst.ip, dst.port)} is a proxy port` });
    }
    const decide = (w: WorkloadView): AuthzDecision =>
      authorize({ source: { ip: srcIp }, destination: { workload: w, ip: dst.ip, port: dst.port } },
        this.state.policiesFor(w), this.state.peerAuthModeFor(w));
    const decision = decide(workload);
    if (!decision.allowed) {
      this.log.debug({ src: formatHostPort(srcIp, srcPort), reason: decision.reason }, 'plaintext connection denied');
      return refuse({ flag: 'DENY', reason: decision.reason });
    }
    let upstream: net.Socket;
    try {
      upstream = await dialTcp(this.socketFactory, dst, this.upstreamTimeoutMs);
    } catch (err) {
      return refuse({ flag: flagForError(err), reason: (err as Error).message });
    }
    if (sock.destroyed || downstreamError) {
      upstream.destroy();
      this.lifecycle.end(conn, { flag: 'DOWNSTREAM_RESET', reason: downstreamError ?? 'client left before the upstream answered' });
      return;
    }
    this.lifecycle.established(conn);
    this.lifecycle.pipeUnderPolicy(conn, sock, upstream, {
      highWaterMark: this.hwm,
      policies: this.policies,
      recheck: () => {
        const cur = this.state.workloadByAddress(dst.ip);
        return cur && cur.record.node === this.nodeName ? decide(cur) : undefined;
      },
    });
  }

  protected override closeResources(): void {
    this.policies.close();
    this.lifecycle.terminateAll('shutdown');
  }
}
