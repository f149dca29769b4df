/**
 * Inbound plaintext (port 15006): TCP to a mesh pod that did not arrive over HBONE
 * (a client outside the mesh). There is no peer identity, so STRICT mTLS refuses it
 * outright and policies can only match on addresses and ports. A refusal is a TCP
 * reset: the client sees "connection reset", never a half-working connection.
 *
 * The original destination may also be a service VIP (a non-mesh client dialled a
 * service with an enrolled endpoint on this node; see vip-resolve.ts): the endpoint is
 * chosen here, and only an enrolled endpoint on this node goes through the checks.
 */
import type * as net from 'node:net';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { ServiceRecord } from '../registry/types';
import { formatHostPort } from '../lib/address';
import { authorize, type AuthzDecision } from './authorization';
import type { TrackedConnection } from './connections';
import type { OriginalDstSource } from './contracts';
import type { OriginalDst, SocketFactory } from '../hbone/contracts';
import { defaultUpstreamFactory, dialTcp, reset } from '../mesh/dial';
import { ConnectionLifecycle, type EndResult } from './lifecycle';
import { defaultLoopGuard, ListenerBase, type CapturedListenerOptions } from './listener';
import { guardDestination, type LoopGuard } from './loop-guard';
import { RoundRobin, type EndpointPicker } from '../mesh/load-balancer';
import { flagForError } from './metrics';
import { DEFAULT_PIPE_HIGH_WATER_MARK } from '../hbone/pipe';
import { PolicyWatcher } from './policy-watch';
import { resolveVip } from './vip-resolve';

export interface InboundPlaintextOptions extends CapturedListenerOptions {
  /** Default 10 s. */
  upstreamConnectTimeoutMs?: number;
  pipeHighWaterMark?: number;
  /**
   * Endpoint choice for service VIPs. Default round robin: an even spread, as
   * kube-proxy gives these clients (it ignores a service's LEAST_CONN setting too).
   */
  loadBalancer?: EndpointPicker;
}

export class InboundPlaintextServer extends ListenerBase {
  private readonly state: MeshState;
  private readonly originalDst: OriginalDstSource;
  private readonly nodeName: string;
  private readonly socketFactory: SocketFactory;
  private readonly upstreamTimeoutMs: number;
  private readonly hwm: number;
  private readonly lifecycle: ConnectionLifecycle;
  private readonly lb: EndpointPicker;
  private readonly guard: LoopGuard;
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
    this.lb = opts.loadBalancer ?? new RoundRobin();
    this.guard = opts.loopGuard ?? defaultLoopGuard();
    this.lifecycle = new ConnectionLifecycle({ connections: opts.connections, metrics: opts.metrics, telemetry: opts.telemetry, logger: this.log, logLimiter: this.logLimiter });
    this.policies = new PolicyWatcher(this.state, this.log, (n) => opts.metrics?.revoked.inc({ listener: 'plaintext' }, n));
  }

  protected async onConnection(sock: net.Socket): Promise<void> {
    let downstreamError: string | undefined;
    sock.on('error', (err: NodeJS.ErrnoException) => { downstreamError ??= err.code ?? err.message; });
    const ends = await this.capturedEnds(sock, this.originalDst, 'a plaintext inbound connection');
    if (!ends) return;
    const { srcIp, srcPort } = ends;
    let dst = ends.dst;
    const src = { ip: srcIp, port: srcPort, workload: this.state.workloadByAddress(srcIp) };
    const route = resolveVip(this.state, dst, this.nodeName, this.lb, this.guard);
    let svc: { service?: string; serviceHost?: string } = {};
    if (route.kind !== 'not-a-service') {
      svc = serviceFields(route.service);
      if (route.kind === 'refuse') {
        const conn = this.lifecycle.begin({ direction: 'inbound', protocol: 'TCP', src, dst: { ...dst, ...svc } });
        reset(sock);
        this.lifecycle.end(conn, { flag: route.flag, reason: route.reason });
        return;
      }
      if (route.kind === 'forward') {
        this.log.debug({ src: formatHostPort(srcIp, srcPort), target: formatHostPort(route.target.ip, route.target.port), reason: route.reason }, 'service VIP: forwarding as plain TCP');
        const conn = this.lifecycle.begin({
          direction: 'inbound', protocol: 'TCP', src,
          dst: { ...route.target, workload: route.destination, identity: route.destination.identity, ...svc },
        });
        // No checks here: a remote enrolled endpoint's own node captures and checks it.
        return this.deliver(sock, conn, route.target, () => downstreamError, () => undefined);
      }
      dst = route.target;
    } else {
      // A VIP's endpoint was checked by resolveVip; a pod address is checked here.
      const refusal = guardDestination(dst, this.guard);
      if (refusal) {
        const conn = this.lifecycle.begin({ direction: 'inbound', protocol: 'TCP', src, dst: { ...dst } });
        reset(sock);
        this.lifecycle.end(conn, refusal);
        return;
      }
    }
    const workload = this.state.workloadByAddress(dst.ip);
    const conn = this.lifecycle.begin({
      direction: 'inbound',
      protocol: 'TCP',
      src,
      dst: { ip: dst.ip, port: dst.port, workload, identity: workload?.identity, ...svc },
    });
    const refuse = (result: EndResult) => {
      reset(sock);
      this.lifecycle.end(conn, result);
    };
    if (!workload || workload.record.node !== this.nodeName) {
      return refuse({ flag: 'NO_ROUTE', reason: `${dst.ip} is not a workload on node ${this.nodeName}` });
    }
    const decide = (w: WorkloadView): AuthzDecision =>
      authorize({ source: { ip: srcIp }, destination: { workload: w, ip: dst.ip, port: dst.port } },
        this.state.policiesFor(w), this.state.peerAuthModeFor(w));
    const decision = decide(workload);
    if (!decision.allowed) {
      this.log.debug({ src: formatHostPort(srcIp, srcPort), reason: decision.reason }, 'plaintext connection denied');
      return refuse({ flag: 'DENY', reason: decision.reason });
    }
    const target = dst;
    return this.deliver(sock, conn, target, () => downstreamError, () => {
      const cur = this.state.workloadByAddress(target.ip);
      return cur && cur.record.node === this.nodeName ? decide(cur) : undefined;
    });
  }

  /** Dials `target` and joins it to the client, under the policy watcher via `recheck`. */
  private async deliver(sock: net.Socket, conn: TrackedConnection, target: OriginalDst, downstreamError: () => string | undefined,
    recheck: () => AuthzDecision | undefined): Promise<void> {
    let upstream: net.Socket;
    try {
      upstream = await dialTcp(this.socketFactory, target, this.upstreamTimeoutMs);
    } catch (err) {
      reset(sock);
      this.lifecycle.end(conn, { flag: flagForError(err), reason: (err as Error).message });
      return;
    }
    if (sock.destroyed || downstreamError()) {
      upstream.destroy();
      this.lifecycle.end(conn, { flag: 'DOWNSTREAM_RESET', reason: downstreamError() ?? 'client left before the upstream answered' });
      return;
    }
    this.lifecycle.established(conn);
    this.lifecycle.pipeUnderPolicy(conn, sock, upstream, { highWaterMark: this.hwm, policies: this.policies, recheck });
  }

  protected override closeResources(why: string): void {
    this.policies.close();
    this.lifecycle.terminateAll(why);
  }
}

function serviceFields(s: ServiceRecord): { service: string; serviceHost: string } {
  return { service: `${s.namespace}/${s.name}`, serviceHost: s.hostname };
}
