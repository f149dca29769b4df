/**
 * Inbound HBONE (port 15008). Peers dial `<pod IP>:15008`; the node's DNAT delivers
 * the connection here, and the original destination (from conntrack) says which
 * local workload it is for — and so which workload certificate to present, since no
 * SNI is sent. After mTLS (client certificate required, chaining to the mesh roots,
 * same trust domain), each HTTP/2 CONNECT stream is one proxied connection:
 *
 *   400  not CONNECT, bad or oversized :authority, a proxy port or this node's own
 *        address (loop-guard.ts), or another identity than the tunnel authenticated
 *   503  the :authority is not a mesh workload on this node, or it refused the dial
 *   401  authorization denied it (peer identity from the certificate; source IP
 *        from `forwarded` only when it is an address of the peer's own identity,
 *        else the peer's address — see hbone-request.ts)
 *   200  then bytes both ways until both sides end
 *
 * What a peer may cost (streams, parked bytes, dials, floods, sessions) is bounded
 * by hbone-limits.ts; live connections are re-authorized when policies change.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import type { Change } from '../registry/types';
import { WeftError } from '../lib/errors';
import { truncateForLog } from '../lib/log-limiter';
import { formatHostPort, normalizeIp, type HostPort } from './address';
import { authorize, type AuthzDecision } from './authorization';
import { type CertSource, type OriginalDstSource, type SocketFactory } from './contracts';
import { defaultUpstreamFactory, dialTcp } from './dial';
import { applyConnectionWindow, hboneTuning, type HboneTuning } from './hbone-settings';
import { HboneNodeLimits, StallReservation, serverSessionOptions, type HboneLimits, type RefusalReason } from './hbone-limits';
import { SessionGuard } from './hbone-session-guard';
import { resetStream } from './pipe';
import { Keepalive } from './keepalive';
import { ConnectionLifecycle } from './lifecycle';
import { clientAddress, connectTarget, respond, type ClientAddress } from './hbone-request';
import { flagForError, type ZtunnelMetrics } from './metrics';
import { PolicyWatcher } from './policy-watch';
import { ServerTlsEngines, verifyClientIdentity } from './tls';
import { defaultLoopGuard, ListenerBase, type CapturedListenerOptions } from './listener';
import { guardDestination, type LoopGuard } from './loop-guard';

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
  /** What one peer may cost (streams, parked bytes, dials, floods, sessions); hbone-limits.ts. */
  limits?: Partial<HboneLimits>;
  /**
   * The node-wide limits' state, shared by every HBONE server of the node (one per
   * address family); built from `limits` when absent. Give one or the other.
   */
  nodeLimits?: HboneNodeLimits;
}

/** What one accepted tunnel established, shared by all its streams. */
interface TunnelContext {
  /** The identity whose certificate we presented (the original destination's). */
  localIdentity: string;
  peerIdentity: string;
  /** The peer's socket address (normalized), parsed once per tunnel; `peer` is its text. */
  peerAddr: HostPort;
  peer: string;
  guard: SessionGuard;
}

export class InboundServer extends ListenerBase {
  private readonly state: MeshState;
  private readonly certs: CertSource;
  private readonly originalDst: OriginalDstSource;
  private readonly nodeName: string;
  private readonly engines: ServerTlsEngines;
  private readonly socketFactory: SocketFactory;
  private readonly tuning: HboneTuning;
  private readonly limits: HboneLimits;
  /** Budget, dial slots, sessions per peer and handshakes of the whole node (shared by its HBONE servers). */
  readonly node: HboneNodeLimits;
  private readonly guard: LoopGuard;
  private readonly upstreamTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly lifecycle: ConnectionLifecycle;
  private readonly metrics: ZtunnelMetrics | undefined;
  readonly policies: PolicyWatcher;
  private readonly h2: http2.Http2Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** Raw sockets whose TLS handshake is running, by remote address (see onConnection). */
  private readonly handshaking = new Map<string, net.Socket>();
  /** Handed from onSecure to the synchronous 'session' event it triggers. */
  private pending: Omit<TunnelContext, 'guard'> | undefined;

  constructor(opts: InboundOptions) {
    const log = opts.logger.child({ component: 'inbound' });
    super(log, { pauseOnConnect: true, allowHalfOpen: false });
    this.state = opts.state;
    this.certs = opts.certs;
    this.originalDst = opts.originalDst;
    this.nodeName = opts.nodeName;
    this.engines = new ServerTlsEngines({
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 10_000,
      onSecure: (sock, identity) => this.onSecure(sock, identity),
      onError: (err, sock) => {
        this.logLimiter.log(this.log, 'warn', 'tls', { err, peer: sock.remoteAddress }, 'HBONE TLS handshake failed (client certificate missing or not from this mesh, or timeout)');
        sock.destroy();
      },
    });
    this.socketFactory = opts.socketFactory ?? defaultUpstreamFactory;
    this.tuning = hboneTuning(opts.tuning);
    if (opts.nodeLimits && opts.limits) {
      throw new WeftError('WEFT_CONFIG_INVALID', 'InboundServer takes `limits` or the shared `nodeLimits` (built from the limits), not both');
    }
    this.node = opts.nodeLimits ?? new HboneNodeLimits(opts.limits);
    this.limits = this.node.limits;
    this.upstreamTimeoutMs = opts.upstreamConnectTimeoutMs ?? 10_000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
    this.metrics = opts.metrics;
    this.guard = opts.loopGuard ?? defaultLoopGuard();
    this.lifecycle = new ConnectionLifecycle({ connections: opts.connections, metrics: opts.metrics, logger: this.log, logLimiter: this.logLimiter });
    this.policies = new PolicyWatcher(this.state, this.log, (n) => opts.metrics?.revoked.inc({ listener: 'hbone' }, n));
    this.h2 = http2.createServer(serverSessionOptions(this.tuning, this.limits));
    this.h2.on('session', (session: http2.ServerHttp2Session) => this.onSession(session));
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
    this.engines.retain(keep);
  };

  /** Local identities with a TLS engine (certificate loaded for serving). */
  get tlsIdentities(): number {
    return this.engines.size;
  }

  /** Live HTTP/2 sessions (tunnels from peers). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** TLS handshakes in progress (capped by limits.maxHandshakes). */
  get handshakesInProgress(): number {
    return this.handshaking.size;
  }

  /** A limit refused or closed something: counted, and logged at a bounded rate. */
  private refused(reason: RefusalReason, fields: Record<string, unknown>, msg: string): void {
    this.metrics?.hboneRefused.inc({ reason });
    this.logLimiter.log(this.log, 'warn', reason, { reason, ...fields }, msg);
  }

  private refusedPeerSessions(fields: { peer: string; peerIdentity?: string }): void {
    this.refused('sessions_per_peer', { ...fields, limit: this.limits.maxSessionsPerPeer },
      `${this.limits.maxSessionsPerPeer} HBONE sessions from this peer address are open already (the per-peer limit); closing the new connection (the peer's pool should reuse its tunnels)`);
  }

  protected async onConnection(raw: net.Socket): Promise<void> {
    raw.on('error', (err) => this.log.debug({ err, peer: raw.remoteAddress }, 'inbound socket error'));
    const peerIp = normalizeIp(raw.remoteAddress);
    const peer = formatHostPort(peerIp, raw.remotePort ?? 0);
    // A peer address at its session cap would be refused after the handshake: refuse
    // it before any lookup, certificate or TLS work. (Checked again once the session
    // exists: others may have taken the last place during this one's handshake.)
    if (this.node.peerSessions.full(peerIp)) {
      this.refusedPeerSessions({ peer });
      raw.destroy();
      return;
    }
    try {
      const dst = await this.originalDst.lookup(raw);
      const workload = this.state.workloadByAddress(dst.ip);
      if (!workload || workload.record.node !== this.nodeName || !workload.enrolled) {
        this.log.warn({ peer, dst: formatHostPort(dst.ip, dst.port), workload: workload && `${workload.record.namespace}/${workload.record.name}` },
          'HBONE connection for an address that is not a mesh workload on this node; closing it (is the peer\'s registry stale?)');
        raw.destroy();
        return;
      }
      if (this.node.handshakes >= this.limits.maxHandshakes) {
        this.refused('handshakes', { peer, limit: this.limits.maxHandshakes }, 'too many HBONE TLS handshakes in progress on this node; closing this connection (the peer retries)');
        raw.destroy();
        return;
      }
      const cert = this.certs.current(workload.identity) ?? await this.certs.get(workload.identity);
      if (raw.destroyed) return;
      raw.setNoDelay(true);
      // From here the TLS socket owns the raw socket's handle: destroying both (as a
      // blanket close() would) crashes Node. Until the TLS socket is handed to us we
      // can only reach the raw one, so it moves to `handshaking`.
      const key = addrKey(raw);
      this.untrack(raw);
      this.handshaking.set(key, raw);
      this.node.handshakes++;
      raw.once('close', () => this.handshakeEnded(key, raw));
      this.engines.accept(raw, cert, this.certs.rootsPem);
    } catch (err) {
      this.log.warn({ err, peer }, 'cannot serve HBONE connection; closing it');
      raw.destroy();
    }
  }

  /** mTLS done, the client chain verified: check its identity, then hand it to HTTP/2. */
  private onSecure(sock: tls.TLSSocket, localIdentity: string): void {
    this.handshakeEnded(addrKey(sock));
    this.track(sock);
    const peerAddr: HostPort = { ip: normalizeIp(sock.remoteAddress), port: sock.remotePort ?? 0 };
    const peer = formatHostPort(peerAddr.ip, peerAddr.port);
    sock.on('error', (err) => this.log.debug({ err, peer }, 'HBONE TLS error'));
    let peerIdentity: string;
    try {
      if (sock.alpnProtocol !== 'h2') throw new Error(`ALPN ${String(sock.alpnProtocol)} instead of h2`);
      peerIdentity = verifyClientIdentity(sock, this.state.trustDomain);
    } catch (err) {
      this.logLimiter.log(this.log, 'warn', 'client', { err, peer }, 'refused HBONE client');
      sock.destroy();
      return;
    }
    const peerIp = peerAddr.ip;
    if (!this.node.peerSessions.tryAdd(peerIp)) {
      this.refusedPeerSessions({ peer, peerIdentity });
      sock.destroy();
      return;
    }
    sock.once('close', () => this.node.peerSessions.remove(peerIp));
    this.pending = { localIdentity, peerIdentity, peerAddr, peer };
    try {
      this.h2.emit('connection', sock);
    } finally {
      this.pending = undefined;
    }
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const tunnel = this.pending;
    if (!tunnel) {
      session.destroy();
      return;
    }
    this.sessions.add(session);
    const guard = new SessionGuard(session, this.limits, this.node.budget, (reason, detail) =>
      this.refused(reason, { peer: tunnel.peer, peerIdentity: tunnel.peerIdentity, detail }, 'closing an HBONE session: a limit was exceeded'));
    const ctx: TunnelContext = { ...tunnel, guard };
    applyConnectionWindow(session, this.tuning);
    new Keepalive(session, {
      intervalMs: this.pingIntervalMs,
      timeoutMs: this.pingTimeoutMs,
      onDead: (ms) => {
        this.log.warn({ peer: ctx.peer, unansweredForMs: ms }, 'HBONE peer stopped answering PINGs; closing its tunnel and connections');
        session.destroy();
      },
    });
    session.on('error', (err) => this.log.debug({ err, peer: ctx.peer }, 'HBONE session error'));
    session.once('close', () => this.sessions.delete(session));
    session.on('stream', (stream, headers) => {
      stream.on('error', (err) => this.log.debug({ err, peer: ctx.peer }, 'HBONE stream error'));
      ctx.guard.streamOpened(stream);
      this.onStream(ctx, stream, headers).catch((err: unknown) => {
        this.log.error({ err, peer: ctx.peer }, 'unexpected error serving an HBONE stream; resetting it');
        resetStream(stream);
      });
    });
    // A handshake that finished during a drain gets its GOAWAY at once.
    if (this.acceptStopped) session.close();
  }

  private async onStream(ctx: TunnelContext, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const checked = connectTarget(headers);
    if (!checked.ok) return this.reject(stream, checked.status, checked.reason, ctx, headers);
    const authority = checked.target;
    // A proxy port or this node's own address is never a pod: dialling it would loop.
    const loop = guardDestination(authority, this.guard);
    if (loop) {
      // Counted and logged (rate-limited) like the other listeners' refusals.
      const conn = this.lifecycle.begin({ direction: 'inbound', protocol: 'HBONE', src: { ...ctx.peerAddr, identity: ctx.peerIdentity }, dst: { ...authority } });
      respond(stream, 400);
      this.lifecycle.end(conn, loop);
      return;
    }
    const target = this.state.workloadByAddress(authority.ip);
    if (!target || target.record.node !== this.nodeName || !target.enrolled) {
      return this.reject(stream, 503, `${authority.ip} is not a mesh workload on node ${this.nodeName}`, ctx);
    }
    if (target.identity !== ctx.localIdentity) {
      // The client verified the identity we presented; tunnelling to a workload of
      // another identity would let it skip that check.
      return this.reject(stream, 400, `${authority.ip} runs as ${target.identity}, not ${ctx.localIdentity} which this tunnel authenticated`, ctx);
    }
    const src = clientAddress(this.state, headers.forwarded, ctx.peerIdentity, ctx.peerAddr);
    if (src.ignored) {
      this.metrics?.forwardedIgnored.inc({ reason: src.ignored });
      this.log.debug({ peer: ctx.peer, peerIdentity: ctx.peerIdentity, reason: src.ignored }, 'ignored the forwarded client address: not an address of the peer\'s identity');
    }
    // A dial slot first: refused streams cost no socket. REFUSED_STREAM tells the peer
    // nothing was done, so it may retry.
    const dials = this.node.dials;
    const full = dials.tryTake(ctx.guard, ctx.peerIdentity);
    if (full) {
      this.refused('pending_dials', { peer: ctx.peer, peerIdentity: ctx.peerIdentity, limit: full, node: dials.pending(), session: dials.pending(ctx.guard) },
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

  /** Authorizes, dials (cancellable) and pipes one CONNECT stream; resolves once it is piped or refused. */
  private async serve(ctx: TunnelContext, stream: http2.ServerHttp2Stream, authority: HostPort, target: WorkloadView, src: ClientAddress): Promise<void> {
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
    });
    const decide = (w: WorkloadView): AuthzDecision => authorize(
      { source: { identity: ctx.peerIdentity, ip: src.ip }, destination: { workload: w, ip: authority.ip, port: authority.port } },
      this.state.policiesFor(w), this.state.peerAuthModeFor(w));
    const decision = decide(target);
    if (!decision.allowed) {
      respond(stream, 401);
      this.lifecycle.end(conn, { flag: 'DENY', reason: decision.reason });
      return;
    }
    let upstream: net.Socket;
    // A reset that arrives while the dial is under way cancels it.
    const cancel = new AbortController();
    const onClose = () => cancel.abort();
    stream.once('close', onClose);
    try {
      upstream = await dialTcp(this.socketFactory, authority, this.upstreamTimeoutMs, cancel.signal);
    } catch (err) {
      const cancelled = cancel.signal.aborted;
      respond(stream, 503);
      this.lifecycle.end(conn, { flag: cancelled ? 'DOWNSTREAM_RESET' : flagForError(err), reason: (err as Error).message });
      return;
    } finally {
      stream.off('close', onClose);
    }
    if (stream.closed || stream.destroyed) {
      upstream.destroy();
      this.lifecycle.end(conn, { flag: 'DOWNSTREAM_RESET', reason: 'the peer cancelled the CONNECT before the upstream answered' });
      return;
    }
    stream.respond({ ':status': 200 });
    this.lifecycle.established(conn);
    // A stalled direction may park its writer's queue (the high-water mark) and, when
    // the stream is the reader, whatever is left of its HTTP/2 window.
    const hwm = this.tuning.pipeHighWaterMark;
    const reservation = new StallReservation(ctx.guard.budget, { received: this.tuning.streamWindow + hwm, sent: hwm });
    this.lifecycle.pipeUnderPolicy(conn, stream, upstream, {
      highWaterMark: hwm,
      policies: this.policies,
      stall: (direction, paused) => {
        if (reservation.stall(direction, paused)) return true;
        this.refused('buffer_budget', { peer: ctx.peer, connection: conn.id, parkedOnSession: ctx.guard.budget.used, parkedOnNode: this.node.budget.used },
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

  private reject(stream: http2.ServerHttp2Stream, status: number, reason: string, ctx: TunnelContext, headers?: http2.IncomingHttpHeaders): void {
    const fields: Record<string, unknown> = { status, reason, peer: ctx.peer, peerIdentity: ctx.peerIdentity };
    // Peer-controlled text is cut: a 64 KiB :authority must not become a 64 KiB line.
    if (headers) fields.authority = truncateForLog(headers[':authority'], 128);
    this.logLimiter.log(this.log, 'warn', `connect-${status}`, fields, 'refused HBONE CONNECT');
    respond(stream, status);
  }

  /**
   * Drain: GOAWAY on every tunnel (HTTP/2 graceful close), so peers open new tunnels
   * for new connections while the streams in flight go on until they end.
   */
  protected override onStopAccepting(): void {
    for (const s of this.sessions) s.close();
  }

  protected override async closeResources(why: string): Promise<void> {
    this.state.off('change', this.onStateChange);
    this.state.off('snapshot', this.pruneEngines);
    this.policies.close();
    this.lifecycle.terminateAll(why);
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    for (const [key, raw] of this.handshaking) {
      this.handshakeEnded(key, raw);
      raw.destroy();
    }
  }

  /** A handshake no longer in progress (done, failed or closed): its node-wide slot is freed once. */
  private handshakeEnded(key: string, raw?: net.Socket): void {
    const cur = this.handshaking.get(key);
    if (!cur || (raw && cur !== raw)) return;
    this.handshaking.delete(key);
    this.node.handshakes--;
  }
}

/** A socket's remote address and port: the key of its handshake in progress. */
function addrKey(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}`;
}
