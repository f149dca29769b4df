/**
 * The HBONE server (port 15008), shared by every mesh proxy that terminates tunnels:
 * the ztunnel (src/ztunnel/inbound.ts, an L4 handler) and the waypoint (an L7
 * handler). It does everything up to a validated CONNECT stream, then hands the stream
 * to the embedder's handler:
 *
 *   accept ──► identityFor(socket) picks the local identity whose certificate is
 *              presented (no SNI is sent: the ztunnel reads it from the connection's
 *              original destination; a waypoint always answers with its own identity)
 *          ──► mTLS: client certificate required, chaining to `certs.rootsPem`, with a
 *              SPIFFE identity of `trustDomain`; ALPN h2
 *          ──► HTTP/2 session under the limits (limits.ts, session-guard.ts) and PING
 *              keepalive (keepalive.ts)
 *          ──► each stream: CONNECT with an `<ip>:<port>` :authority, or 400
 *              (request.ts `connectTarget`)
 *          ──► handler(stream, ctx)
 *
 * The handler owns the stream from there: it answers it exactly once, with
 * `ctx.respond(status)` / `ctx.refuse(status, reason)` for a refusal, or
 * `stream.respond({':status': 200})` and then bytes (or HTTP) both ways. What it
 * throws or rejects with is logged and the stream reset. It gets from `ctx` the target,
 * the peer's identity (from its certificate), the peer's address, the `forwarded`
 * header as sent (untrusted: request.ts `clientAddress` decides what to believe), the
 * identity this tunnel presented, and the session's guard (its share of the memory
 * budget and dial slots, `node`).
 *
 * What a peer may cost before the handler runs (sessions per peer address, TLS
 * handshakes in progress, streams, parked bytes, floods) is bounded here, refusals
 * counted by reason in `metrics.hboneRefused` and logged at a bounded rate.
 *
 * A waypoint, for example:
 *
 *   const server = new HboneServer({
 *     logger: log.child({ component: 'waypoint' }), certs, trustDomain,
 *     identityFor: () => ownIdentity,
 *     handler: (stream, ctx) => l7.serve(stream, ctx),
 *   });
 *   await server.listen('0.0.0.0', HBONE_PORT);
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { formatHostPort, normalizeIp, type HostPort } from '../lib/address';
import { WeftError } from '../lib/errors';
import { TcpListener } from '../lib/listener';
import type { Logger } from '../lib/log';
import { truncateForLog } from '../lib/log-limiter';
import type { CertSource } from './contracts';
import { Keepalive } from './keepalive';
import { HboneNodeLimits, serverSessionOptions, type HboneLimits, type RefusalReason } from './limits';
import { resetStream } from './pipe';
import { connectTarget, respond } from './request';
import { hboneSendBuffers } from './send-buffer';
import { SessionGuard } from './session-guard';
import { applyConnectionWindow, hboneTuning, type HboneTuning } from './settings';
import { ServerTlsEngines, verifyClientIdentity } from './tls';

/** What one accepted tunnel established, shared by all its streams. */
export interface HboneTunnel {
  /** The identity whose certificate this tunnel presented (identityFor's choice). */
  readonly localIdentity: string;
  /** The client's identity, from its verified certificate. */
  readonly peerIdentity: string;
  /** The peer's socket address (normalized), parsed once per tunnel; `peer` is its text. */
  readonly peerAddr: HostPort;
  readonly peer: string;
  /** The session's limits: its share of the memory budget and of the node's dial slots. */
  readonly guard: SessionGuard;
}

/** One validated CONNECT stream, as the handler gets it. */
export interface HboneStreamContext extends HboneTunnel {
  /** The CONNECT target: the `:authority`, an address literal and port. */
  readonly target: HostPort;
  /** The `forwarded` header as the peer sent it (untrusted). */
  readonly forwarded: string | string[] | undefined;
  /** Every request header as sent (untrusted), e.g. `traceparent` or `baggage`. */
  readonly headers: http2.IncomingHttpHeaders;
  /** Answers the CONNECT with `status` and no body, once; later calls do nothing. */
  respond(status: number): void;
  /** respond(status), after logging why at a bounded rate ('refused HBONE CONNECT'). */
  refuse(status: number, reason: string): void;
}

/**
 * Serves one CONNECT stream. Called once per stream, after validation; it answers the
 * stream (see the file header). A rejection is logged and resets the stream.
 */
export type HboneStreamHandler = (stream: http2.ServerHttp2Stream, ctx: HboneStreamContext) => Promise<void> | void;

/** The one metric the server counts itself (the ztunnel's `weft_ztunnel_hbone_refused_total`). */
export interface HboneServerMetrics {
  hboneRefused: { inc(labels: { reason: RefusalReason }): void };
}

export interface HboneServerOptions {
  /** The server's log; its embedder picks the component (the ztunnel's is `inbound`). */
  logger: Logger;
  /** Certificates of the identities presented, and the roots client certificates must chain to. */
  certs: CertSource;
  /** Only clients with an identity of this trust domain may open tunnels. */
  trustDomain: string;
  /**
   * The local identity whose certificate an accepted connection is answered with.
   * `undefined` closes the connection (the callback logs why); a rejection closes it
   * too ('cannot serve HBONE connection'). Called before any TLS work.
   */
  identityFor: (socket: net.Socket, peer: string) => Promise<string | undefined> | string | undefined;
  /** Serves each validated CONNECT stream. */
  handler: HboneStreamHandler;
  tuning?: Partial<HboneTuning>;
  /** TLS handshake deadline for accepted connections. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** PING interval on accepted tunnels. Default 10 s. */
  pingIntervalMs?: number;
  /** A PING unanswered this long closes the tunnel. Default 20 s. */
  pingTimeoutMs?: number;
  /** What one peer may cost (streams, parked bytes, dials, floods, sessions); limits.ts. */
  limits?: Partial<HboneLimits>;
  /**
   * The node-wide limits' state, shared by every HBONE server of the node (one per
   * address family); built from `limits` when absent. Give one or the other.
   */
  nodeLimits?: HboneNodeLimits;
  metrics?: HboneServerMetrics;
}

export class HboneServer extends TcpListener {
  private readonly certs: CertSource;
  private readonly trustDomain: string;
  private readonly identityFor: HboneServerOptions['identityFor'];
  private readonly handler: HboneStreamHandler;
  private readonly engines: ServerTlsEngines;
  readonly tuning: Readonly<HboneTuning>;
  readonly limits: Readonly<HboneLimits>;
  /** Budget, dial slots, sessions per peer and handshakes of the whole node (shared by its HBONE servers). */
  readonly node: HboneNodeLimits;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly metrics: HboneServerMetrics | undefined;
  private readonly h2: http2.Http2Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** Raw sockets whose TLS handshake is running, by remote address (see onConnection). */
  private readonly handshaking = new Map<string, net.Socket>();
  /** Handed from onSecure to the synchronous 'session' event it triggers. */
  private pending: Omit<HboneTunnel, 'guard'> | undefined;

  constructor(opts: HboneServerOptions) {
    super(opts.logger, { pauseOnConnect: true, allowHalfOpen: false });
    this.certs = opts.certs;
    this.trustDomain = opts.trustDomain;
    this.identityFor = opts.identityFor;
    this.handler = opts.handler;
    this.engines = new ServerTlsEngines({
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 10_000,
      onSecure: (sock, identity) => this.onSecure(sock, identity),
      onError: (err, sock) => {
        this.logLimiter.log(this.log, 'warn', 'tls', { err, peer: sock.remoteAddress }, 'HBONE TLS handshake failed (client certificate missing or not from this mesh, or timeout)');
        sock.destroy();
      },
    });
    this.tuning = hboneTuning(opts.tuning);
    if (opts.nodeLimits && opts.limits) {
      throw new WeftError('WEFT_CONFIG_INVALID', 'an HBONE server takes `limits` or the shared `nodeLimits` (built from the limits), not both');
    }
    this.node = opts.nodeLimits ?? new HboneNodeLimits(opts.limits);
    this.limits = this.node.limits;
    this.pingIntervalMs = opts.pingIntervalMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 20_000;
    this.metrics = opts.metrics;
    this.h2 = http2.createServer(serverSessionOptions(this.tuning, this.limits));
    this.h2.on('session', (session: http2.ServerHttp2Session) => this.onSession(session));
  }

  /** Local identities with a TLS engine (certificate loaded for serving). */
  get tlsIdentities(): number {
    return this.engines.size;
  }

  /** Lets go of the TLS engines of identities not in `keep` (no longer served here). */
  retainIdentities(keep: ReadonlySet<string>): void {
    this.engines.retain(keep);
  }

  /** Live HTTP/2 sessions (tunnels from peers). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** TLS handshakes in progress (capped by limits.maxHandshakes). */
  get handshakesInProgress(): number {
    return this.handshaking.size;
  }

  /** A limit refused or closed something: counted, and logged at a bounded rate. Handlers use it for theirs. */
  refused(reason: RefusalReason, fields: Record<string, unknown>, msg: string): void {
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
      const identity = await this.identityFor(raw, peer);
      if (identity === undefined) {
        raw.destroy();
        return;
      }
      if (this.node.handshakes >= this.limits.maxHandshakes) {
        this.refused('handshakes', { peer, limit: this.limits.maxHandshakes }, 'too many HBONE TLS handshakes in progress on this node; closing this connection (the peer retries)');
        raw.destroy();
        return;
      }
      const cert = this.certs.current(identity) ?? await this.certs.get(identity);
      if (raw.destroyed) return;
      raw.setNoDelay(true);
      hboneSendBuffers().apply(raw, this.tuning.sendBuffer, this.log);
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
      peerIdentity = verifyClientIdentity(sock, this.trustDomain);
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
    const established = this.pending;
    if (!established) {
      session.destroy();
      return;
    }
    this.sessions.add(session);
    const guard = new SessionGuard(session, this.limits, this.tuning, this.node.budget, (reason, detail) =>
      this.refused(reason, { peer: established.peer, peerIdentity: established.peerIdentity, detail }, 'closing an HBONE session: a limit was exceeded'));
    const tunnel: HboneTunnel = { ...established, guard };
    applyConnectionWindow(session, this.tuning);
    new Keepalive(session, {
      intervalMs: this.pingIntervalMs,
      timeoutMs: this.pingTimeoutMs,
      onDead: (ms) => {
        this.log.warn({ peer: tunnel.peer, unansweredForMs: ms }, 'HBONE peer stopped answering PINGs; closing its tunnel and connections');
        session.destroy();
      },
    });
    session.on('error', (err) => this.log.debug({ err, peer: tunnel.peer }, 'HBONE session error'));
    session.once('close', () => this.sessions.delete(session));
    // One listener per session for all its streams: a closure per stream would stay for its life.
    const onStreamError = (err: Error) => this.log.debug({ err, peer: tunnel.peer }, 'HBONE stream error');
    session.on('stream', (stream, headers) => {
      stream.on('error', onStreamError);
      tunnel.guard.streamOpened(stream);
      this.onStream(tunnel, stream, headers).catch((err: unknown) => {
        this.log.error({ err, peer: tunnel.peer }, 'unexpected error serving an HBONE stream; resetting it');
        resetStream(stream);
      });
    });
    // A handshake that finished during a drain gets its GOAWAY at once.
    if (this.acceptStopped) session.close();
  }

  private async onStream(tunnel: HboneTunnel, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const checked = connectTarget(headers);
    if (!checked.ok) {
      this.refuseConnect(stream, checked.status, checked.reason, tunnel, headers);
      return;
    }
    await this.handler(stream, new StreamContext(this, stream, tunnel, checked.target, headers));
  }

  /** Logs a refused CONNECT (rate-limited, per status) and answers it. */
  refuseConnect(stream: http2.ServerHttp2Stream, status: number, reason: string, tunnel: HboneTunnel, headers?: http2.IncomingHttpHeaders): void {
    const fields: Record<string, unknown> = { status, reason, peer: tunnel.peer, peerIdentity: tunnel.peerIdentity };
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

  protected override closeResources(): void {
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

/** The handler's view of one stream: the tunnel's facts, the target, and how to answer. */
class StreamContext implements HboneStreamContext {
  readonly localIdentity: string;
  readonly peerIdentity: string;
  readonly peerAddr: HostPort;
  readonly peer: string;
  readonly guard: SessionGuard;

  constructor(
    private readonly server: HboneServer,
    private readonly stream: http2.ServerHttp2Stream,
    tunnel: HboneTunnel,
    readonly target: HostPort,
    readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.localIdentity = tunnel.localIdentity;
    this.peerIdentity = tunnel.peerIdentity;
    this.peerAddr = tunnel.peerAddr;
    this.peer = tunnel.peer;
    this.guard = tunnel.guard;
  }

  get forwarded(): string | string[] | undefined {
    return this.headers.forwarded;
  }

  respond(status: number): void {
    respond(this.stream, status);
  }

  refuse(status: number, reason: string): void {
    this.server.refuseConnect(this.stream, status, reason, this);
  }
}

/** A socket's remote address and port: the key of its handshake in progress. */
function addrKey(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}`;
}
