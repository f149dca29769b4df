/**
 * The ztunnel's inbound HBONE (port 15008): the shared HBONE server (src/hbone/server.ts:
 * accept, mTLS, HTTP/2, CONNECT validation, the per-peer limits) with the ztunnel's
 * two decisions plugged in. Peers dial `<pod IP>:15008`; the node's DNAT delivers the
 * connection here, and the original destination (from conntrack) says which local
 * workload it is for — and so which workload certificate to present. Each CONNECT
 * stream is then one proxied connection to that workload (the L4 handler below):
 *
 *   400  not CONNECT, or a bad or oversized :authority (the HBONE server); a proxy port
 *        or this node's own address (loop-guard.ts), or another identity than the
 *        tunnel authenticated
 *   503  the :authority is not a mesh workload on this node, or it refused the dial
 *   401  authorization denied it (peer identity from the certificate; source IP
 *        from `forwarded` only when it is an address of the peer's own identity, or
 *        when the peer is a waypoint bound to the destination (waypoint-peer.ts),
 *        else the peer's address — see src/hbone/request.ts)
 *   200  then bytes both ways until both sides end
 *
 * What a peer may cost (streams, parked bytes, dials, floods, sessions) is bounded
 * by src/hbone/limits.ts; live connections are re-authorized when policies change.
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { Change } from '../registry/types';
import { formatHostPort, type HostPort } from '../lib/address';
import { WeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import type { CertSource, SocketFactory } from '../hbone/contracts';
import type { HboneLimits, HboneNodeLimits } from '../hbone/limits';
import { clientAddress, type ClientAddress } from '../hbone/request';
import { boundWaypointPeer } from './waypoint-peer';
import { HboneServer, type HboneStreamContext } from '../hbone/server';
import type { HboneTuning } from '../hbone/settings';
import { authorize, type AuthzDecision } from './authorization';
import type { OriginalDstSource } from './contracts';
import { defaultUpstreamFactory, dialTcp, onClose } from '../mesh/dial';
import { ConnectionLifecycle } from './lifecycle';
import { defaultLoopGuard, type CapturedListenerOptions } from './listener';
import { guardDestination, type LoopGuard } from './loop-guard';
import { flagForError, type ZtunnelMetrics } from './metrics';
import { PolicyWatcher } from './policy-watch';

const { NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface InboundOptions extends CapturedListenerOptions {
  certs: CertSource;
  tuning?: Partial<HboneTuning>;
  /** TLS handshake deadline for accepted connections. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Deadline for connecting to the pod. Default 10 s. */
  upstreamConnectTimeoutMs?: number;
  /** PING interval on accepted tunnels. Default 10 s. */
  pingIntervalMs?: number;
  /** A PING unanswered this long closes the tunnel. Default 20 s. */
  pingTimeoutMs?: number;
  /** What one peer may cost (streams, parked bytes, dials, floods, sessions); src/hbone/limits.ts. */
  limits?: Partial<HboneLimits>;
  /**
   * The node-wide limits' state, shared by every HBONE server of the node (one per
   * address family); built from `limits` when absent. Give one or the other.
   */
  nodeLimits?: HboneNodeLimits;
}

export class InboundServer {
  private readonly state: MeshState;
  private readonly originalDst: OriginalDstSource;
  private readonly nodeName: string;
  private readonly log: Logger;
  private readonly hbone: HboneServer;
  private readonly socketFactory: SocketFactory;
  private readonly guard: LoopGuard;
  private readonly upstreamTimeoutMs: number;
  private readonly lifecycle: ConnectionLifecycle;
  private readonly metrics: ZtunnelMetrics | undefined;
  readonly policies: PolicyWatcher;
  private closing: Promise<void> | undefined;

  constructor(opts: InboundOptions) {
    this.log = opts.logger.child({ component: 'inbound' });
    this.state = opts.state;
    this.originalDst = opts.originalDst;
    this.nodeName = opts.nodeName;
    this.hbone = new HboneServer({
      logger: this.log,
      certs: opts.certs,
      trustDomain: opts.state.trustDomain,
      identityFor: (raw, peer) => this.identityFor(raw, peer),
      handler: (stream, ctx) => this.onStream(stream, ctx),
      tuning: opts.tuning,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
      pingIntervalMs: opts.pingIntervalMs,
      pingTimeoutMs: opts.pingTimeoutMs,
      limits: opts.limits,
      nodeLimits: opts.nodeLimits,
      metrics: opts.metrics,
    });
    this.socketFactory = opts.socketFactory ?? defaultUpstreamFactory;
    this.upstreamTimeoutMs = opts.upstreamConnectTimeoutMs ?? 10_000;
    this.metrics = opts.metrics;
    this.guard = opts.loopGuard ?? defaultLoopGuard();
    this.lifecycle = new ConnectionLifecycle({ connections: opts.connections, metrics: opts.metrics, telemetry: opts.telemetry, logger: this.log, logLimiter: this.hbone.logLimiter });
    this.policies = new PolicyWatcher(this.state, this.log, (n) => opts.metrics?.revoked.inc({ listener: 'hbone' }, n));
    this.state.on('change', this.onStateChange);
    this.state.on('snapshot', this.pruneEngines);
  }

  private readonly onStateChange = (changes: Change[]) => {
    if (changes.some((c) => c.kind === 'workload' || c.kind === 'namespace')) this.pruneEngines();
  };

  /** Certificates of identities with no mesh workload left on this node are let go. */
  private readonly pruneEngines = () => {
    const keep = new Set<string>();
    for (const w of this.state.workloadsOnNode(this.nodeName)) if (w.enrolled) keep.add(w.identity);
    this.hbone.retainIdentities(keep);
  };

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string, port: number): Promise<net.AddressInfo> {
    return this.hbone.listen(host, port);
  }

  address(): net.AddressInfo | undefined {
    return this.hbone.address();
  }

  /** Drain: stops accepting, and sends GOAWAY on every tunnel (HboneServer). */
  stopAccepting(): void {
    this.hbone.stopAccepting();
  }

  /** Stops accepting, ends every connection (its access-log line saying `why`), closes every tunnel. */
  close(why = 'shutdown'): Promise<void> {
    this.closing ??= (() => {
      this.hbone.stopAccepting();
      this.state.off('change', this.onStateChange);
      this.state.off('snapshot', this.pruneEngines);
      this.policies.close();
      this.lifecycle.terminateAll(why);
      return this.hbone.close(why);
    })();
    return this.closing;
  }

  /** Budget, dial slots, sessions per peer and handshakes of the whole node (shared by its HBONE servers). */
  get node(): HboneNodeLimits {
    return this.hbone.node;
  }

  /** Local identities with a TLS engine (certificate loaded for serving). */
  get tlsIdentities(): number {
    return this.hbone.tlsIdentities;
  }

  /** Live HTTP/2 sessions (tunnels from peers). */
  get sessionCount(): number {
    return this.hbone.sessionCount;
  }

  /** TLS handshakes in progress (capped by limits.maxHandshakes). */
  get handshakesInProgress(): number {
    return this.hbone.handshakesInProgress;
  }

  /** Sockets currently owned (accepted and not yet closed). */
  get ownedSockets(): number {
    return this.hbone.ownedSockets;
  }

  /** The certificate to present: the local mesh workload the connection was sent to (its original destination). */
  private async identityFor(raw: net.Socket, peer: string): Promise<string | undefined> {
    const dst = await this.originalDst.lookup(raw);
    const workload = this.state.workloadByAddress(dst.ip);
    if (!workload || workload.record.node !== this.nodeName || !workload.enrolled) {
      this.log.warn({ peer, dst: formatHostPort(dst.ip, dst.port), workload: workload && `${workload.record.namespace}/${workload.record.name}` },
        'HBONE connection for an address that is not a mesh workload on this node; closing it (is the peer\'s registry stale?)');
      return undefined;
    }
    return workload.identity;
  }

  /** The L4 decisions for one validated CONNECT stream. */
  private async onStream(stream: http2.ServerHttp2Stream, ctx: HboneStreamContext): Promise<void> {
    const authority = ctx.target;
    // A proxy port or this node's own address is never a pod: dialling it would loop.
    const loop = guardDestination(authority, this.guard);
    if (loop) {
      // Counted and logged (rate-limited) like the other listeners' refusals.
      const conn = this.lifecycle.begin({ direction: 'inbound', protocol: 'HBONE', src: { ...ctx.peerAddr, identity: ctx.peerIdentity }, dst: { ...authority } }, ctx.headers.traceparent);
      ctx.respond(400);
      this.lifecycle.end(conn, loop);
      return;
    }
    const target = this.state.workloadByAddress(authority.ip);
    if (!target || target.record.node !== this.nodeName || !target.enrolled) {
      return ctx.refuse(503, `${authority.ip} is not a mesh workload on node ${this.nodeName}`);
    }
    if (target.identity !== ctx.localIdentity) {
      // The client verified the identity we presented; tunnelling to a workload of
      // another identity would let it skip that check.
      return ctx.refuse(400, `${authority.ip} runs as ${target.identity}, not ${ctx.localIdentity} which this tunnel authenticated`);
    }
    const src = clientAddress(this.state, ctx.forwarded, ctx.peerIdentity, ctx.peerAddr,
      () => boundWaypointPeer(this.state, ctx.peerIdentity, target) !== undefined);
    if (src.ignored) {
      this.metrics?.forwardedIgnored.inc({ reason: src.ignored });
      this.log.debug({ peer: ctx.peer, peerIdentity: ctx.peerIdentity, reason: src.ignored },
        'ignored the forwarded client address: not an address of the peer\'s identity, nor is the peer a waypoint bound to the destination');
    }
    // A dial slot first: refused streams cost no socket. REFUSED_STREAM tells the peer
    // nothing was done, so it may retry.
    const dials = this.hbone.node.dials;
    const full = dials.tryTake(ctx.guard, ctx.peerIdentity);
    if (full) {
      this.hbone.refused('pending_dials', { peer: ctx.peer, peerIdentity: ctx.peerIdentity, limit: full, node: dials.pending(), session: dials.pending(ctx.guard) },
        `refusing an HBONE CONNECT (REFUSED_STREAM): ${dials.refusal(full, ctx.peerIdentity)}`);
      if (!stream.destroyed) stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    try {
      await this.serve(ctx, stream, authority, target, src);
    } finally {
      dials.release(ctx.guard, ctx.peerIdentity);
    }
  }

  /**
   * Dials the destination pod; a reset that arrives while the dial is under way cancels
   * it (one 'close' listener, removed when the dial ends: no AbortController, which cost
   * CPU per new connection and ~0.7 KB). A method of its own so that nothing of the dial
   * sits in the context that the pipe's closures keep for the connection's life
   * (bench/heap-diff.ts).
   */
  private async dial(stream: http2.ServerHttp2Stream, authority: HostPort): Promise<{ sock: net.Socket } | { err: unknown; cancelled: boolean }> {
    try {
      return { sock: await dialTcp(this.socketFactory, authority, this.upstreamTimeoutMs, onClose(stream)) };
    } catch (err) {
      return { err, cancelled: err instanceof WeftError && err.details?.reason === 'cancelled' };
    }
  }

  /** Authorizes, dials (cancellable) and pipes one CONNECT stream; resolves once it is piped or refused. */
  private async serve(ctx: HboneStreamContext, stream: http2.ServerHttp2Stream, authority: HostPort, target: WorkloadView, src: ClientAddress): Promise<void> {
    // Rapid reset (CVE-2023-44487): a HEADERS and its RST_STREAM usually arrive in one
    // read. Waiting one turn lets nghttp2 process the whole read first, so a stream
    // already reset is never dialled — nor logged as a connection.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (stream.closed || stream.destroyed) {
      this.metrics?.hboneRefused.inc({ reason: 'reset_before_dial' });
      return;
    }
    const conn = this.lifecycle.begin({
      direction: 'inbound',
      protocol: 'HBONE',
      // A believed `forwarded` address was looked up already (it is a workload of the peer's identity).
      src: { ip: src.ip, port: src.port, workload: src.workload ?? this.state.workloadByAddress(src.ip), identity: ctx.peerIdentity },
      dst: { ip: authority.ip, port: authority.port, workload: target, identity: target.identity },
    }, ctx.headers.traceparent);
    const decide = (w: WorkloadView): AuthzDecision => authorize(
      { source: { identity: ctx.peerIdentity, ip: src.ip }, destination: { workload: w, ip: authority.ip, port: authority.port } },
      this.state.policiesFor(w), this.state.peerAuthModeFor(w));
    const decision = decide(target);
    if (!decision.allowed) {
      ctx.respond(401);
      this.lifecycle.end(conn, { flag: 'DENY', reason: decision.reason });
      return;
    }
    const dialled = await this.dial(stream, authority);
    if ('err' in dialled) {
      ctx.respond(503);
      this.lifecycle.end(conn, { flag: dialled.cancelled ? 'DOWNSTREAM_RESET' : flagForError(dialled.err), reason: (dialled.err as Error).message });
      return;
    }
    const upstream = dialled.sock;
    if (stream.closed || stream.destroyed) {
      upstream.destroy();
      this.lifecycle.end(conn, { flag: 'DOWNSTREAM_RESET', reason: 'the peer cancelled the CONNECT before the upstream answered' });
      return;
    }
    stream.respond({ ':status': 200 });
    this.lifecycle.established(conn);
    // A stalled direction may park its writer's queue (the high-water mark, or the write
    // that crossed it) and, when the stream is the reader, whatever is left of its
    // HTTP/2 window (the session's shared window in force, session-guard.ts).
    const hwm = this.hbone.tuning.pipeHighWaterMark;
    const reservation = ctx.guard.stallReservation({ stream, upstream });
    this.lifecycle.pipeUnderPolicy(conn, stream, upstream, {
      highWaterMark: hwm,
      policies: this.policies,
      stall: (direction, paused) => {
        if (reservation.stall(direction, paused)) return true;
        this.hbone.refused('buffer_budget', { peer: ctx.peer, connection: conn.id, parkedOnSession: ctx.guard.budget.used, parkedOnNode: this.hbone.node.budget.used },
          'resetting a stalled HBONE stream: its bytes do not fit the memory budget (the receiving side is not reading)');
        return false;
      },
      onDone: () => reservation.release(),
      recheck: () => {
        const cur = this.state.workloadByAddress(authority.ip);
        return cur && cur.record.node === this.nodeName ? decide(cur) : undefined;
      },
    });
  }
}
