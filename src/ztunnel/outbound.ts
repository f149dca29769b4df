/**
 * Outbound capture (port 15001): every TCP connection an enrolled pod opens arrives
 * here (DNAT), the original destination comes from conntrack, and routeOutbound
 * decides: tunnel it over HBONE (presenting the SOURCE workload's certificate,
 * expecting the destination workload's identity), tunnel it to the Service's
 * waypoint (same certificate, the waypoint's identity expected, `:authority` the
 * original VIP:port), pass it through as plain TCP, or refuse it with a TCP reset
 * (a bound Service whose waypoint is missing or has no ready pod: NO_WAYPOINT).
 */
import * as net from 'node:net';
import type { MeshState } from '../registry/state';
import type { WorkloadView } from '../registry/enrolment';
import { formatHostPort } from '../lib/address';
import type { ConnectionRegistry, TrackedConnection } from './connections';
import { defaultHboneDialTarget, type HboneDialTarget, type OriginalDstSource } from './contracts';
import { HBONE_PORT, type SocketFactory } from '../hbone/contracts';
import { defaultUpstreamFactory, dialTcp, reset } from '../mesh/dial';
import { ConnectionLifecycle, endResult } from './lifecycle';
import { ListenerBase, type CapturedListenerOptions } from './listener';
import { ServiceLoadBalancer, type EndpointPicker } from '../mesh/load-balancer';
import { flagForError } from './metrics';
import { routeOutbound, type HboneDecision, type PassthroughDecision, type WaypointDecision } from './outbound-route';
import { defaultLoopGuard } from './listener';
import type { LoopGuard } from './loop-guard';
import { DEFAULT_PIPE_HIGH_WATER_MARK, Pipe, resetStream, type PipeSide } from '../hbone/pipe';
import type { HbonePool } from '../hbone/pool';

export interface OutboundOptions extends CapturedListenerOptions {
  pool: HbonePool;
  /** Default: per-service setting, least-connections counted by `connections`. */
  loadBalancer?: EndpointPicker;
  /** Default `<pod IP>:15008`. */
  hboneDialTarget?: HboneDialTarget;
  /** Passthrough dial deadline. Default 10 s. */
  connectTimeoutMs?: number;
  pipeHighWaterMark?: number;
}

export class OutboundProxy extends ListenerBase {
  private readonly state: MeshState;
  private readonly pool: HbonePool;
  private readonly originalDst: OriginalDstSource;
  private readonly connections: ConnectionRegistry;
  private readonly lb: EndpointPicker;
  private readonly dialTarget: HboneDialTarget;
  private readonly socketFactory: SocketFactory;
  private readonly connectTimeoutMs: number;
  private readonly hwm: number;
  private readonly lifecycle: ConnectionLifecycle;
  private readonly guard: LoopGuard;

  constructor(opts: OutboundOptions) {
    const log = opts.logger.child({ component: 'outbound' });
    super(log, { pauseOnConnect: true });
    this.state = opts.state;
    this.pool = opts.pool;
    this.originalDst = opts.originalDst;
    this.connections = opts.connections;
    this.lb = opts.loadBalancer ?? new ServiceLoadBalancer((uid) => opts.connections.activeTo(uid));
    this.dialTarget = opts.hboneDialTarget ?? defaultHboneDialTarget;
    this.socketFactory = opts.socketFactory ?? defaultUpstreamFactory;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.hwm = opts.pipeHighWaterMark ?? DEFAULT_PIPE_HIGH_WATER_MARK;
    this.guard = opts.loopGuard ?? defaultLoopGuard();
    this.lifecycle = new ConnectionLifecycle({ connections: opts.connections, metrics: opts.metrics, telemetry: opts.telemetry, logger: this.log, logLimiter: this.logLimiter });
  }

  protected async onConnection(sock: net.Socket): Promise<void> {
    let downstreamError: string | undefined;
    sock.on('error', (err: NodeJS.ErrnoException) => { downstreamError ??= err.code ?? err.message; });
    const ends = await this.capturedEnds(sock, this.originalDst, 'an outbound connection');
    if (!ends) return;
    const { srcIp, srcPort, dst } = ends;
    const conn = this.lifecycle.begin({ direction: 'outbound', protocol: 'TCP', src: { ip: srcIp, port: srcPort }, dst: { ip: dst.ip, port: dst.port } });
    const decision = routeOutbound(this.state, { sourceIp: srcIp, dst }, this.lb, this.guard);
    if (decision.source) conn.src.workload = decision.source;
    if (decision.kind === 'refuse') {
      if (decision.service) this.connections.setDestination(conn, { ...conn.dst, ...service(decision.service), ...waypointOf(decision.waypoint) });
      reset(sock);
      this.lifecycle.end(conn, { flag: decision.flag, reason: decision.reason });
      return;
    }
    let upstream: PipeSide;
    try {
      upstream = decision.kind === 'passthrough'
        ? await this.openPassthrough(conn, decision)
        : await this.openTunnel(conn, tunnelHop(decision), srcIp, srcPort);
    } catch (err) {
      reset(sock);
      this.lifecycle.end(conn, { flag: flagForError(err), reason: (err as Error).message });
      return;
    }
    if (sock.destroyed || downstreamError) {
      destroySide(upstream);
      this.lifecycle.end(conn, { flag: 'DOWNSTREAM_RESET', reason: downstreamError ?? 'client left before the upstream answered' });
      return;
    }
    this.lifecycle.established(conn);
    const pipe = new Pipe(sock, upstream, {
      highWaterMark: this.hwm,
      counters: conn.counters,
      onDone: (outcome) => this.lifecycle.end(conn, endResult(outcome)),
    });
    conn.terminate = (why) => pipe.abort(why);
  }

  private async openTunnel(conn: TrackedConnection, d: TunnelHop, srcIp: string, srcPort: number): Promise<PipeSide> {
    if (d.waypointNote) this.log.debug({ connection: conn.id, note: d.waypointNote }, 'waypoint binding not followed');
    const hop = this.dialTarget(d.peer);
    conn.protocol = 'HBONE';
    conn.src.identity = d.source.identity;
    // For a waypoint hop the destination workload is the waypoint pod (the tunnel's
    // peer, as Istio's source ztunnel reports it) and the service the original one.
    this.connections.setDestination(conn, {
      ip: d.target.ip, port: d.target.port, workload: d.peer, identity: d.identity,
      hboneAddr: formatHostPort(hop.host, hop.port), ...service(d.service), ...waypointOf(d.waypoint),
    });
    const traceparent = this.lifecycle.traceparent(conn);
    // The pool key is {source identity, peer identity, next hop}: a waypoint pod's
    // tunnels are shared by every connection of this source to any Service it serves.
    const opened = await this.pool.open({
      sourceIdentity: d.source.identity,
      destinationIdentity: d.identity,
      nextHop: hop,
      originalDst: { ip: d.peer.record.addresses[0]!, port: HBONE_PORT },
      peerNode: d.peer.record.node,
      authority: d.target,
      forwardedFor: { ip: srcIp, port: srcPort },
      baggage: baggage(d.source),
      // Sampled or not: the peer's inbound line names the same trace, and its span (when
      // sampled) is a child of this connection's.
      traceparent,
      counters: conn.counters,
    });
    conn.tunnelId = opened.tunnelId;
    return opened.stream;
  }

  private async openPassthrough(conn: TrackedConnection, d: PassthroughDecision): Promise<PipeSide> {
    this.connections.setDestination(conn, {
      ip: d.ip, port: d.port, workload: d.destination, identity: d.destination?.identity, ...service(d.service),
    });
    this.log.debug({ connection: conn.id, reason: d.reason }, 'passthrough');
    return dialTcp(this.socketFactory, { ip: d.ip, port: d.port }, this.connectTimeoutMs);
  }

  protected override closeResources(why: string): void {
    this.lifecycle.terminateAll(why);
  }
}

/** What openTunnel needs of either tunnelled decision. */
interface TunnelHop {
  source: WorkloadView;
  /** The tunnel's peer: the destination workload, or the waypoint pod. */
  peer: WorkloadView;
  /** The identity `peer` must present. */
  identity: string;
  /** The CONNECT `:authority`. */
  target: { ip: string; port: number };
  service?: { namespace: string; name: string; hostname: string };
  /** `<namespace>/<name>` when the peer is a waypoint. */
  waypoint?: string;
  waypointNote?: string;
}

function tunnelHop(d: HboneDecision | WaypointDecision): TunnelHop {
  if (d.kind === 'waypoint') {
    return { source: d.source, peer: d.pod, identity: d.identity, target: d.target, service: d.service, waypoint: `${d.waypoint.namespace}/${d.waypoint.name}` };
  }
  const hop: TunnelHop = { source: d.source, peer: d.destination, identity: d.identity, target: d.target };
  if (d.service) hop.service = d.service;
  if (d.waypointNote) hop.waypointNote = d.waypointNote;
  return hop;
}

function waypointOf(w: string | undefined): { waypoint?: string } {
  return w === undefined ? {} : { waypoint: w };
}

function service(s: { namespace: string; name: string; hostname: string } | undefined): { service?: string; serviceHost?: string } {
  return s ? { service: `${s.namespace}/${s.name}`, serviceHost: s.hostname } : {};
}

/**
 * The baggage of each source workload view (a new view when its record changes), made
 * once: the CONNECT's headers stay with the HTTP/2 stream for the connection's life, and
 * a string built per connection was ~0.2 KB of concatenation nodes each.
 */
const baggageOf = new WeakMap<WorkloadView, string>();

/** W3C baggage describing the source, as Istio's ztunnel sends it. */
function baggage(w: WorkloadView): string {
  let b = baggageOf.get(w);
  if (b === undefined) {
    const l = w.record.labels;
    const svc = l['service.istio.io/canonical-name'] ?? l['app.kubernetes.io/name'] ?? l.app ?? w.record.name;
    b = `k8s.namespace.name=${w.record.namespace},k8s.pod.name=${w.record.name},service.name=${svc}`;
    baggageOf.set(w, b);
  }
  return b;
}

function destroySide(s: PipeSide): void {
  if (s instanceof net.Socket) s.destroy();
  else resetStream(s);
}
