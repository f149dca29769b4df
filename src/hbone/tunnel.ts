/**
 * One pooled HBONE connection: TCP → mTLS (the source workload's certificate) →
 * HTTP/2, carrying up to N CONNECT streams. Its life is an explicit state machine
 * changed only through `transition()`, which logs every change:
 *
 *   CONNECTING ──ready──► READY ──goaway / idle / cert rotated──► DRAINING ──► CLOSED
 *        └────────────── failed ──────────────────────────────────────────────┘
 *
 * READY takes new streams while below its stream limit; DRAINING takes none and
 * closes once its last stream ends; CLOSED is final.
 */
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { WeftError } from '../lib/errors';
import type { DialTarget } from './contracts';
import type { ByteCounters } from './pipe';
import { applyConnectionWindow, localSettings, type HboneTuning } from './settings';
import { hboneSendBuffers } from './send-buffer';
import { IdleTimer } from './idle';
import { tcpKeepalive } from '../lib/tcp-keepalive';
import { Keepalive } from './keepalive';
import { clientTlsOptions, verifyServerIdentity } from './tls';

export enum TunnelState {
  Connecting = 'CONNECTING',
  Ready = 'READY',
  Draining = 'DRAINING',
  Closed = 'CLOSED',
}

const ALLOWED: Record<TunnelState, readonly TunnelState[]> = {
  [TunnelState.Connecting]: [TunnelState.Ready, TunnelState.Closed],
  [TunnelState.Ready]: [TunnelState.Draining, TunnelState.Closed],
  [TunnelState.Draining]: [TunnelState.Closed],
  [TunnelState.Closed]: [],
};

export interface TunnelKey {
  sourceIdentity: string;
  destinationIdentity: string;
  nextHop: DialTarget;
}

/**
 * One tunnel as the ztunnel admin API's `/tunnels` serves it (src/ztunnel/admin-types.ts
 * re-exports it): a contract with the CLI, so add fields, never rename.
 */
export interface TunnelInfo {
  /** Stable id of the pooled HTTP/2 connection within this proxy. */
  id: string;
  state: string;
  localAddress: string;
  peerAddress: string;
  sourceIdentity: string;
  destinationIdentity: string;
  /** Node of the destination workload, when the registry knows it. */
  peerNode?: string;
  activeStreams: number;
  totalStreams: number;
  bytesSent: number;
  bytesReceived: number;
  openedAt: string;
  lastActivityAt: string;
}

/** The admin API's `/tunnels` row (TunnelInfo), plus where the tunnel dials. */
export type TunnelStats = TunnelInfo & { nextHop: string };

export interface TunnelTimers {
  idleTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  connectTimeoutMs: number;
  /** Time of the idle timer (the pool's, injectable). */
  clock: Clock;
}

let nextId = 1;

export class Tunnel {
  readonly id = nextId++;
  state = TunnelState.Connecting;
  session: http2.ClientHttp2Session | undefined;
  /** Streams open now, plus slots promised to callers still waiting for the handshake. */
  activeStreams = 0;
  reserved = 0;
  totalStreams = 0;
  readonly openedAt = Date.now();
  lastActivity = Date.now();
  localAddress: string | undefined;
  peerAddress: string | undefined;
  /** Resolves when READY; rejects (with a WeftError) when the connection could not be made. */
  readonly ready: Promise<void>;
  private settleReady!: (err?: Error) => void;
  private closedBytes: ByteCounters = { received: 0, sent: 0 };
  /** Open streams and their byte counters. */
  private readonly live = new Map<http2.ClientHttp2Stream, ByteCounters>();
  /** Streams sent (or queued in nghttp2) that have no response yet. */
  private readonly awaitingResponse = new Set<http2.ClientHttp2Stream>();
  /** Drains the tunnel once READY with no stream open or promised. */
  private readonly idle: IdleTimer;
  private keepalive: Keepalive | undefined;
  private readonly onClosed: (t: Tunnel) => void;
  /** Tears down the half-made connection while CONNECTING. */
  private abortConnect: (() => void) | undefined;

  constructor(
    readonly key: TunnelKey,
    readonly peerNode: string | undefined,
    private readonly log: Logger,
    private readonly timers: TunnelTimers,
    onClosed: (t: Tunnel) => void,
  ) {
    this.onClosed = onClosed;
    this.idle = new IdleTimer(timers.idleTimeoutMs, () => this.state !== TunnelState.Ready || this.activeStreams + this.reserved > 0,
      () => this.drain(`idle for ${timers.idleTimeoutMs} ms`), timers.clock);
    this.ready = new Promise<void>((resolve, reject) => {
      this.settleReady = (err) => (err ? reject(err) : resolve());
    });
    // Callers that gave up waiting must not turn a failed handshake into an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** The one place the state changes. Illegal moves are logged and ignored. */
  transition(to: TunnelState, why: string): boolean {
    const from = this.state;
    if (from === to) return false;
    if (!ALLOWED[from].includes(to)) {
      this.log.warn({ tunnel: this.id, from, to, why }, 'ignored illegal tunnel state change');
      return false;
    }
    this.state = to;
    this.log.debug({ tunnel: this.id, from, to, why }, 'tunnel state');
    return true;
  }

  /** Performs TCP connect + TLS handshake + identity check, then starts HTTP/2. */
  start(raw: net.Socket, context: tls.SecureContext, tuning: HboneTuning): void {
    const hop = `${this.key.nextHop.host}:${this.key.nextHop.port}`;
    raw.setNoDelay(true);
    tcpKeepalive(raw);
    hboneSendBuffers().apply(raw, tuning.sendBuffer, this.log);
    const socket = tls.connect(clientTlsOptions(context, raw));
    const timeout = setTimeout(() => {
      fail(new WeftError('WEFT_HBONE_CONNECT_FAILED',
        `HBONE connection to ${hop} timed out after ${this.timers.connectTimeoutMs / 1000} s; ` +
        `maybe a NetworkPolicy or firewall blocks TCP port ${this.key.nextHop.port}, or the destination node's ztunnel is not running`,
        { details: { nextHop: hop, reason: 'timeout' } }));
    }, this.timers.connectTimeoutMs);
    this.abortConnect = () => {
      clearTimeout(timeout);
      // Only the TLS socket: it owns the raw socket's handle, and destroying both
      // crashes Node (seen in tests).
      socket.destroy();
    };
    const fail = (err: Error) => this.fail('connect failed', err);
    // `on`, not `once`: a second error after the first must not become an uncaught one.
    const onConnectError = (err: NodeJS.ErrnoException) => {
      if (this.state !== TunnelState.Connecting) return;
      fail(err instanceof WeftError ? err : new WeftError('WEFT_HBONE_CONNECT_FAILED',
        `HBONE connection to ${hop} failed: ${err.code ?? err.message}` +
        (err.code === 'ECONNREFUSED' ? '; is the destination node\'s ztunnel running?' : '') +
        (err.code?.startsWith('ERR_TLS') || err.code?.includes('CERT') ? '; the peer\'s certificate is not from this mesh\'s CA' : ''),
        { cause: err, details: { nextHop: hop, reason: err.code ?? 'error' } }));
    };
    raw.on('error', onConnectError);
    socket.on('error', onConnectError);
    socket.once('secureConnect', () => {
      if (this.state !== TunnelState.Connecting) return;
      clearTimeout(timeout);
      try {
        if (socket.alpnProtocol !== 'h2') {
          throw new WeftError('WEFT_HBONE_CONNECT_FAILED', `HBONE peer ${hop} did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)}); is it a Weft or Istio ztunnel?`);
        }
        verifyServerIdentity(socket, this.key.destinationIdentity, hop);
      } catch (err) {
        fail(err as Error);
        return;
      }
      this.abortConnect = undefined;
      this.localAddress = `${socket.localAddress}:${socket.localPort}`;
      this.peerAddress = `${socket.remoteAddress}:${socket.remotePort}`;
      this.attachSession(socket, tuning);
    });
  }

  private attachSession(socket: tls.TLSSocket, tuning: HboneTuning): void {
    const session = http2.connect(`https://${this.key.nextHop.host}:${this.key.nextHop.port}`, {
      createConnection: () => socket,
      settings: localSettings(tuning),
      maxSessionMemory: tuning.maxSessionMemoryMb,
    });
    this.session = session;
    applyConnectionWindow(session, tuning);
    session.on('error', (err) => this.log.debug({ tunnel: this.id, err }, 'tunnel session error'));
    session.on('goaway', () => this.drain('peer sent GOAWAY'));
    // A peer allowing 0 streams takes none on this connection until it says otherwise;
    // new streams go to another tunnel (hasCapacity), and this one is let go. Streams
    // not answered yet would sit queued in nghttp2 until the connect timeout: they are
    // refused here (REFUSED_STREAM: the peer did nothing with them), so the pool's
    // retry moves them elsewhere.
    session.on('remoteSettings', (settings) => {
      if (settings.maxConcurrentStreams !== 0) return;
      this.drain('peer advertises SETTINGS_MAX_CONCURRENT_STREAMS 0');
      for (const stream of [...this.awaitingResponse]) {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      }
    });
    session.once('close', () => {
      this.clearTimers();
      if (this.transition(TunnelState.Closed, 'session closed')) this.onClosed(this);
    });
    this.keepalive = new Keepalive(session, {
      intervalMs: this.timers.pingIntervalMs,
      timeoutMs: this.timers.pingTimeoutMs,
      onDead: (ms) => {
        this.log.warn({ tunnel: this.id, peer: this.peerAddress, unansweredForMs: ms }, 'HBONE peer stopped answering PINGs; closing the tunnel');
        session.destroy(new WeftError('WEFT_HBONE_CONNECT_FAILED', `HBONE peer ${this.peerAddress} did not answer PING within ${this.timers.pingTimeoutMs} ms`));
      },
    });
    this.transition(TunnelState.Ready, 'handshake complete');
    this.settleReady();
    this.armIdle();
  }

  /** The peer advertises SETTINGS_MAX_CONCURRENT_STREAMS 0 (takes no stream now). */
  get acceptsNoStreams(): boolean {
    return this.session?.remoteSettings?.maxConcurrentStreams === 0;
  }

  /** Can this tunnel take one more stream right now (or once ready)? */
  hasCapacity(maxStreams: number): boolean {
    if (this.state !== TunnelState.Ready && this.state !== TunnelState.Connecting) return false;
    const remote = this.session?.remoteSettings?.maxConcurrentStreams;
    const limit = remote !== undefined ? Math.min(maxStreams, remote) : maxStreams;
    return this.activeStreams + this.reserved < limit;
  }

  /** Bookkeeping for a stream that is open: counts, idle timer, bytes. */
  streamOpened(stream: http2.ClientHttp2Stream, counters: ByteCounters): void {
    this.activeStreams++;
    this.totalStreams++;
    this.lastActivity = Date.now();
    this.live.set(stream, counters);
    this.awaitingResponse.add(stream);
    // Shared listeners that find this tunnel on the stream: no closures (and no once()
    // wrappers) per stream, which an idle tunnelled connection would keep for its life.
    (stream as TunnelStream)[kTunnel] = this;
    stream.on('response', onStreamResponse);
    this.idle.disarm();
    stream.on('close', onStreamClose);
  }

  /** @internal onStreamResponse's */
  streamAnswered(stream: http2.ClientHttp2Stream): void {
    this.awaitingResponse.delete(stream);
  }

  /** @internal onStreamClose's: 'close' comes once per stream. */
  streamClosed(stream: http2.ClientHttp2Stream): void {
    const counters = this.live.get(stream);
    if (!counters) return;
    this.activeStreams--;
    this.lastActivity = Date.now();
    this.live.delete(stream);
    this.awaitingResponse.delete(stream);
    this.closedBytes.received += counters.received;
    this.closedBytes.sent += counters.sent;
    if (this.activeStreams + this.reserved === 0) {
      if (this.state === TunnelState.Draining) this.session?.close();
      else this.armIdle();
    }
  }

  /** Stops taking streams; closes once the last one ends. */
  drain(why: string): void {
    if (!this.transition(TunnelState.Draining, why)) return;
    if (this.activeStreams + this.reserved === 0) this.session?.close();
  }

  /** Closes now, resetting any streams. */
  destroy(): void {
    this.clearTimers();
    if (this.session) this.session.destroy();
    else this.fail('destroyed while connecting', new WeftError('WEFT_HBONE_CONNECT_FAILED', 'the HBONE pool was closed while this tunnel was connecting'));
  }

  /** Gives up before the handshake finished: waiters get `err`. */
  fail(why: string, err: Error): void {
    if (!this.transition(TunnelState.Closed, why)) return;
    this.abortConnect?.();
    this.abortConnect = undefined;
    this.settleReady(err);
    this.onClosed(this);
  }

  /** Starts the idle countdown if READY with no stream open or promised. */
  armIdle(): void {
    this.idle.arm();
  }

  private clearTimers(): void {
    this.idle.stop();
    this.keepalive?.stop();
  }

  /**
   * Bytes are payload bytes of all streams, live ones included; `lastActivityAt` is
   * the last stream opened or closed (bytes are not timestamped, to keep the copy
   * loop cheap).
   */
  stats(): TunnelStats {
    let sent = this.closedBytes.received;
    let received = this.closedBytes.sent;
    for (const c of this.live.values()) {
      sent += c.received;
      received += c.sent;
    }
    const out: TunnelStats = {
      id: String(this.id),
      state: this.state,
      localAddress: this.localAddress ?? '',
      peerAddress: this.peerAddress ?? '',
      sourceIdentity: this.key.sourceIdentity,
      destinationIdentity: this.key.destinationIdentity,
      nextHop: `${this.key.nextHop.host}:${this.key.nextHop.port}`,
      activeStreams: this.activeStreams,
      totalStreams: this.totalStreams,
      bytesSent: sent,
      bytesReceived: received,
      openedAt: new Date(this.openedAt).toISOString(),
      lastActivityAt: new Date(this.lastActivity).toISOString(),
    };
    if (this.peerNode) out.peerNode = this.peerNode;
    return out;
  }
}

const kTunnel = Symbol('weft tunnel');
type TunnelStream = http2.ClientHttp2Stream & { [kTunnel]?: Tunnel };

function onStreamResponse(this: TunnelStream): void {
  this[kTunnel]?.streamAnswered(this);
}

function onStreamClose(this: TunnelStream): void {
  this[kTunnel]?.streamClosed(this);
}
