/**
 * The HBONE client pool. Tunnels are shared per key {source identity, destination
 * identity, next hop} (Istio's key): a tunnel authenticates as one workload to one
 * identity at one address, so only connections with all three equal may share it.
 * Each tunnel carries at most `maxStreamsPerConnection` CONNECT streams; past that
 * another is opened. Concurrent first requests for a key share one handshake (slots
 * are reserved on a CONNECTING tunnel), so a burst of N connections costs
 * ceil(N / 100) handshakes, not N.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { realClock, type Clock } from '../lib/clock';
import { isWeftError, WeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { formatTraceparent, newSpanId, newTraceId } from '../telemetry/trace-context';
import { formatForwarded, formatHostPort, type HostPort } from '../lib/address';
import type { CertSource, DialTarget, OriginalDst, SocketFactory } from './contracts';
import { hboneTuning, type HboneTuning } from './settings';
import { resetStream, type ByteCounters } from './pipe';
import { SecureContextCache } from './tls';
import { Tunnel, TunnelState, type TunnelKey, type TunnelStats, type TunnelTimers } from './tunnel';

export interface HbonePoolOptions {
  certs: CertSource;
  logger: Logger;
  /** Shared with the inbound server so each certificate is parsed once per node. */
  contexts?: SecureContextCache;
  socketFactory?: SocketFactory;
  tuning?: Partial<HboneTuning>;
  /** Default 100 (Istio). */
  maxStreamsPerConnection?: number;
  /** Default 5 min. */
  idleTimeoutMs?: number;
  /** Default 10 s. */
  pingIntervalMs?: number;
  /** Default 20 s. */
  pingTimeoutMs?: number;
  /** TCP connect + TLS handshake, and separately the CONNECT answer. Default 10 s. */
  connectTimeoutMs?: number;
  /** Time of the tunnels' idle timers; tests inject a manual one. */
  clock?: Clock;
}

export interface OpenStreamRequest {
  sourceIdentity: string;
  /** The identity the server must present (the destination workload's). */
  destinationIdentity: string;
  /** Where the TCP connection goes (`<pod IP>:15008`, or the waypoint). */
  nextHop: DialTarget;
  /** What the destination's DNAT sees; passed to the socket factory. Defaults to nextHop. */
  originalDst?: OriginalDst;
  /** Name of the node the destination runs on, for `/tunnels`. */
  peerNode?: string;
  /** Destination pod IP and target port: the CONNECT `:authority`. */
  authority: HostPort;
  /** The captured client's address (`forwarded: for=`). */
  forwardedFor: HostPort;
  /** W3C baggage describing the source (`k8s.namespace.name=…,k8s.pod.name=…`). */
  baggage?: string;
  /** W3C traceparent: the outbound connection's trace, sampled or not (lifecycle.ts); a fresh unsampled one is made when absent. */
  traceparent?: string;
  /** Updated by the pipe; the pool reads it for per-tunnel byte totals. */
  counters: ByteCounters;
}

export interface OpenedStream {
  stream: http2.ClientHttp2Stream;
  tunnelId: number;
  /** Local address of the tunnel's TCP connection (for the connections table). */
  tunnelLocal?: string;
}

const defaultSocketFactory: SocketFactory = (t) => net.connect({ host: t.host, port: t.port, noDelay: true });

export class HbonePool {
  private readonly certs: CertSource;
  private readonly log: Logger;
  readonly contexts: SecureContextCache;
  private readonly socketFactory: SocketFactory;
  private readonly tuning: HboneTuning;
  private readonly maxStreams: number;
  private readonly timers: TunnelTimers;
  private readonly connectTimeoutMs: number;
  private readonly byKey = new Map<string, Tunnel[]>();
  private readonly onCertUpdated = (identity: string) => this.drainSource(identity, 'source certificate rotated');
  private closed = false;

  constructor(opts: HbonePoolOptions) {
    this.certs = opts.certs;
    this.log = opts.logger.child({ component: 'hbone-pool' });
    this.contexts = opts.contexts ?? new SecureContextCache();
    this.socketFactory = opts.socketFactory ?? defaultSocketFactory;
    this.tuning = hboneTuning(opts.tuning);
    this.maxStreams = positive('maxStreamsPerConnection', opts.maxStreamsPerConnection ?? 100);
    this.connectTimeoutMs = positive('connectTimeoutMs', opts.connectTimeoutMs ?? 10_000);
    this.timers = {
      idleTimeoutMs: positive('idleTimeoutMs', opts.idleTimeoutMs ?? 300_000),
      pingIntervalMs: positive('pingIntervalMs', opts.pingIntervalMs ?? 10_000),
      pingTimeoutMs: positive('pingTimeoutMs', opts.pingTimeoutMs ?? 20_000),
      connectTimeoutMs: this.connectTimeoutMs,
      clock: opts.clock ?? realClock,
    };
    this.certs.on('updated', this.onCertUpdated);
  }

  /**
   * Opens a CONNECT stream to `authority` through a pooled tunnel and waits for the
   * 200. Rejects with WEFT_HBONE_CONNECT_FAILED / _IDENTITY_MISMATCH (tunnel), or
   * WEFT_HBONE_DENIED (401) / _UPSTREAM_UNREACHABLE (503) / _BAD_REQUEST (400).
   */
  async open(req: OpenStreamRequest): Promise<OpenedStream> {
    if (this.closed) throw new WeftError('WEFT_HBONE_CONNECT_FAILED', 'the HBONE pool is closed (ztunnel shutting down)');
    // A tunnel that turns DRAINING between our pick and its handshake is skipped once.
    for (let attempt = 0; ; attempt++) {
      const tunnel = this.acquire(req);
      tunnel.reserved++;
      try {
        if (tunnel.state === TunnelState.Connecting) await tunnel.ready;
      } catch (err) {
        tunnel.reserved--;
        throw err;
      }
      tunnel.reserved--;
      const session = tunnel.session;
      if (tunnel.state !== TunnelState.Ready || !session || session.destroyed || session.closed) {
        tunnel.armIdle();
        if (attempt < 2) continue;
        throw new WeftError('WEFT_HBONE_CONNECT_FAILED', tunnel.acceptsNoStreams
          ? noStreamsMessage(req.nextHop)
          : `HBONE tunnel to ${hopText(req.nextHop)} closed before the stream could open; retry`);
      }
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(this.headers(req), { endStream: false });
      } catch (err) {
        // E.g. ERR_HTTP2_OUT_OF_STREAMS: a long-lived tunnel used up its 2^30 stream
        // ids. The tunnel can serve no new stream; let it finish and use another.
        tunnel.drain(`cannot open streams: ${(err as Error).message}`);
        if (attempt < 2) continue;
        throw new WeftError('WEFT_HBONE_CONNECT_FAILED', `cannot open a stream on the HBONE tunnel to ${hopText(req.nextHop)}: ${(err as Error).message}`, { cause: err });
      }
      // For the stream's whole life: resets surface as 'error', and the pipe reads
      // them from 'close' (rstCode); an unheard 'error' would crash the process.
      stream.on('error', ignore);
      tunnel.streamOpened(stream, req.counters);
      try {
        await this.awaitResponse(stream, req);
      } catch (err) {
        // REFUSED_STREAM means the peer did nothing with it (RFC 9113 §8.7): safe to try
        // again, and by now the peer's stream limit is known, so elsewhere if need be.
        // (A tunnel whose peer advertises 0 streams refuses its waiting streams itself.)
        const refused = isWeftError(err) && err.details?.reason === 'refused_stream';
        if (attempt < 2 && refused) continue;
        if (refused && tunnel.acceptsNoStreams) {
          throw new WeftError('WEFT_HBONE_CONNECT_FAILED', noStreamsMessage(req.nextHop), { cause: err, details: { nextHop: hopText(req.nextHop), reason: 'no_streams' } });
        }
        throw err;
      }
      const opened: OpenedStream = { stream, tunnelId: tunnel.id };
      if (tunnel.localAddress) opened.tunnelLocal = tunnel.localAddress;
      return opened;
    }
  }

  /** A READY or CONNECTING tunnel of this key with a free slot, or a new one. */
  private acquire(req: OpenStreamRequest): Tunnel {
    const k = keyText(req);
    let list = this.byKey.get(k);
    if (list) {
      for (const t of list) if (t.hasCapacity(this.maxStreams)) return t;
    } else {
      list = [];
      this.byKey.set(k, list);
    }
    const key: TunnelKey = { sourceIdentity: req.sourceIdentity, destinationIdentity: req.destinationIdentity, nextHop: req.nextHop };
    const tunnel = new Tunnel(key, req.peerNode, this.log, this.timers, (t) => this.forget(k, t));
    list.push(tunnel);
    void this.connect(tunnel, req);
    return tunnel;
  }

  private async connect(tunnel: Tunnel, req: OpenStreamRequest): Promise<void> {
    let context;
    try {
      const cert = this.certs.current(req.sourceIdentity) ?? await this.certs.get(req.sourceIdentity);
      context = this.contexts.get(cert, this.certs.rootsPem);
    } catch (err) {
      tunnel.fail('no client certificate', err instanceof WeftError ? err
        : new WeftError('WEFT_CERT_UNAVAILABLE', `no certificate for ${req.sourceIdentity}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    if (tunnel.state !== TunnelState.Connecting) return;
    // A throwing socket factory or TLS set-up must fail this tunnel (and the streams
    // waiting on it) now; left alone it would sit in Connecting until the timeout.
    try {
      const raw = this.socketFactory(req.nextHop, { kind: 'hbone', originalDst: req.originalDst ?? { ip: req.nextHop.host, port: req.nextHop.port } });
      tunnel.start(raw, context, this.tuning);
    } catch (err) {
      tunnel.fail('connect failed', err instanceof WeftError ? err
        : new WeftError('WEFT_HBONE_CONNECT_FAILED', `could not open the HBONE connection to ${hopText(req.nextHop)}: ${(err as Error).message}`, { cause: err }));
    }
  }

  private headers(req: OpenStreamRequest): http2.OutgoingHttpHeaders {
    const h: http2.OutgoingHttpHeaders = {
      ':method': 'CONNECT',
      ':authority': formatHostPort(req.authority.ip, req.authority.port),
      forwarded: formatForwarded(req.forwardedFor.ip, req.forwardedFor.port),
      traceparent: req.traceparent ?? formatTraceparent(newTraceId(), newSpanId(), false),
    };
    if (req.baggage) h.baggage = req.baggage;
    return h;
  }

  private awaitResponse(stream: http2.ClientHttp2Stream, req: OpenStreamRequest): Promise<void> {
    const target = formatHostPort(req.authority.ip, req.authority.port);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        done(new WeftError('WEFT_HBONE_CONNECT_FAILED',
          `no answer to CONNECT ${target} from ${hopText(req.nextHop)} within ${this.connectTimeoutMs / 1000} s; the destination node may be overloaded`));
        resetStream(stream);
      }, this.connectTimeoutMs);
      const done = (err?: Error) => {
        clearTimeout(timer);
        stream.off('response', onResponse);
        stream.off('close', onClose);
        stream.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      const onResponse = (headers: http2.IncomingHttpHeaders) => {
        const status = Number(headers[':status']);
        if (status === 200) return done();
        done(statusError(status, target, req));
        if (!stream.closed) resetStream(stream);
      };
      let lastError: Error | undefined;
      const onError = (err: Error) => { lastError = err; };
      const onClose = () => done(new WeftError('WEFT_HBONE_CONNECT_FAILED', stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM
        ? `the destination ztunnel ${hopText(req.nextHop)} refused the CONNECT stream to ${target} without processing it (REFUSED_STREAM: over its stream or dial limits); retry`
        : `the CONNECT stream to ${target} via ${hopText(req.nextHop)} was reset before an answer (${lastError?.message ?? `code ${stream.rstCode}`})`,
        { cause: lastError, details: { nextHop: hopText(req.nextHop), reason: stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'refused_stream' : 'reset' } }));
      stream.on('response', onResponse);
      stream.on('close', onClose);
      stream.on('error', onError);
    });
  }

  private forget(k: string, t: Tunnel): void {
    const list = this.byKey.get(k);
    if (!list) return;
    const i = list.indexOf(t);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.byKey.delete(k);
  }

  private drainSource(identity: string, why: string): void {
    for (const list of this.byKey.values()) {
      for (const t of list) if (t.key.sourceIdentity === identity) t.drain(why);
    }
  }

  /** Every tunnel, for the admin API's `/tunnels`. */
  stats(): TunnelStats[] {
    const out: TunnelStats[] = [];
    for (const list of this.byKey.values()) for (const t of list) out.push(t.stats());
    return out.sort((a, b) => Number(a.id) - Number(b.id));
  }

  /** Number of tunnels in any state but CLOSED. */
  get size(): number {
    let n = 0;
    for (const list of this.byKey.values()) n += list.length;
    return n;
  }

  /** Closes every tunnel now (streams are reset). Resolves when all are closed. */
  async close(): Promise<void> {
    this.closed = true;
    this.certs.off?.('updated', this.onCertUpdated);
    const all: Tunnel[] = [];
    for (const list of this.byKey.values()) all.push(...list);
    await Promise.all(all.map((t) => new Promise<void>((resolve) => {
      if (t.state === TunnelState.Closed) return resolve();
      if (t.session && !t.session.destroyed) t.session.once('close', () => resolve());
      else t.ready.then(() => t.session?.once('close', () => resolve()), () => resolve());
      t.destroy();
    })));
  }
}

function keyText(req: OpenStreamRequest): string {
  return `${req.sourceIdentity}\u0000${req.destinationIdentity}\u0000${req.nextHop.host}\u0000${req.nextHop.port}`;
}

function hopText(h: DialTarget): string {
  return formatHostPort(h.host, h.port);
}

function noStreamsMessage(hop: DialTarget): string {
  return `the HBONE peer ${hopText(hop)} advertises SETTINGS_MAX_CONCURRENT_STREAMS 0: it accepts no streams now (overloaded or shutting down); retry later`;
}

function positive(field: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid HBONE pool option ${field}=${v}: must be a positive number`);
  }
  return v;
}


function statusError(status: number, target: string, req: OpenStreamRequest): WeftError {
  const via = hopText(req.nextHop);
  const details = { status, target, nextHop: via };
  switch (status) {
    case 401:
      return new WeftError('WEFT_HBONE_DENIED',
        `connection to ${target} denied by an authorization policy at the destination (HTTP 401 from ${via}); ` +
        'run `weft explain` for this source and destination to see which policy', { details });
    case 503:
      return new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE',
        `the destination ${target} did not accept the connection (HTTP 503 from ${via}); check the application listens on that port`, { details });
    case 400:
      return new WeftError('WEFT_HBONE_BAD_REQUEST',
        `the destination ztunnel ${via} rejected CONNECT ${target} as invalid (HTTP 400): a proxy port, or a workload it does not host`, { details });
    default:
      return new WeftError('WEFT_HBONE_CONNECT_FAILED', `CONNECT ${target} via ${via} answered HTTP ${status}`, { details });
  }
}

function ignore(): void {}
