/**
 * The waypoint's L7 handler: what the HBONE server runs for each accepted CONNECT
 * stream. It decides the protocol (declared by the Service port, else sniffed), then
 * serves HTTP/1.1 (with WebSocket) or h2c through the router, or hands a stream that is
 * not HTTP to the L4 passthrough the caller supplies (the waypoint never reads it).
 *
 *   const l7 = new WaypointL7({ router, dialer, logger, passthrough });
 *   hboneServer.onStream((stream, ctx) => l7.handle(stream, ctx));
 */
import type { Duplex } from 'node:stream';
import { realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { validateL7Config, type L7Config } from './config';
import type { RequestAuthorizer } from './authorizer';
import type { Admission } from './admission';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import type { WorkloadLookup } from './tracing';
import type { ExchangeDeps } from './exchange';
import { Mirrors } from './forward';
import { Http1Front } from './http1';
import { Http1FastFront } from './http1-serve';
import { H2Front } from './http2';
import { detectProtocol } from './sniff';
import { WriteAhead } from './write-ahead';
import { StreamSocket, type StreamSocketOptions } from './stream-socket';
import { Http1Upstream } from './upstream-http1';
import { H2Upstream } from './upstream-h2';
import type { ExchangeLoad, WaypointLoad } from './load-gauges';
import type { RequestObserver, RequestRouter, StreamContext, UpstreamDialer } from './types';

export interface WaypointL7Options {
  router: RequestRouter;
  /** L7 authorization before routing (authorizer.ts). */
  authorizer?: RequestAuthorizer;
  dialer: UpstreamDialer;
  /** Access log lines go here (info, message `access`); refusals are rate-limited warnings. */
  logger: Logger;
  observer?: RequestObserver;
  /** TrafficPolicy admission (faults, rate limits, load shedding) after the router's plan. */
  admission?: Admission;
  /** Spans, the live tap and access-log volume (src/telemetry); absent: no spans, no tap. */
  telemetry?: ProxyTelemetry;
  /** Workload names for the spans (the registry view); absent: spans name addresses only. */
  workloads?: WorkloadLookup;
  /** Limits; validated here (WEFT_CONFIG_INVALID names a bad field). */
  config?: Partial<L7Config>;
  clock?: Clock;
  /** [0, 1): the retry backoff's jitter; Math.random unless a test pins it. */
  random?: () => number;
  /**
   * A stream that is not HTTP (declared opaque, or sniffed): L4 passthrough under L4
   * policy, the caller's job. Bytes read while sniffing were pushed back into `stream`.
   * Absent: such streams are closed.
   */
  passthrough?: (stream: Duplex, ctx: StreamContext) => void;
}

export class WaypointL7 {
  readonly config: Readonly<L7Config>;
  private readonly http1: Http1Front;
  private readonly fast: Http1FastFront;
  private readonly h2: H2Front;
  private readonly deps: ExchangeDeps;
  private readonly open = new Set<Duplex>();
  private readonly http1Upstream: Http1Upstream;
  private readonly h2Upstream: H2Upstream;
  /** The h2c sessions' writes that run ahead, both ways (write-ahead.ts). */
  private readonly writeAhead = new WriteAhead();
  private readonly exchangeLoad: ExchangeLoad = { inFlight: 0 };

  constructor(private readonly opts: WaypointL7Options) {
    this.config = validateL7Config(opts.config);
    const clock = opts.clock ?? realClock;
    this.http1Upstream = new Http1Upstream({ dialer: opts.dialer, idleMs: this.config.upstreamIdleMs });
    this.h2Upstream = new H2Upstream({ dialer: opts.dialer, idleMs: this.config.upstreamIdleMs, maxHeaderListSize: this.config.maxHeaderBytes, writeAhead: this.writeAhead });
    this.deps = {
      router: opts.router,
      dialer: opts.dialer,
      clients: { http1: this.http1Upstream, h2c: this.h2Upstream },
      load: this.exchangeLoad,
      mirrors: new Mirrors(this.config.maxMirrorsInFlight, clock, opts.logger),
      config: this.config,
      clock,
      logger: opts.logger,
      ...(opts.observer ? { observer: opts.observer } : {}),
      ...(opts.authorizer ? { authorizer: opts.authorizer } : {}),
      ...(opts.random ? { random: opts.random } : {}),
      ...(opts.admission ? { admission: opts.admission } : {}),
      ...(opts.telemetry ? { telemetry: opts.telemetry } : {}),
      ...(opts.workloads ? { workloads: opts.workloads } : {}),
    };
    this.http1 = new Http1Front(this.deps);
    // The common HTTP/1.1 case is served on the stream's bytes directly; the rest (and
    // every refusal) by the Node-based front end, handed the connection with what was read.
    this.fast = new Http1FastFront(this.deps, (stream, prefix, ctx) => this.http1.serve(this.wrap(stream, ctx, { prefix }), ctx));
    this.h2 = new H2Front(this.deps);
  }

  /** Serves one accepted stream; never throws (a failure closes the stream). */
  handle(stream: Duplex, ctx: StreamContext): void {
    stream.on('error', () => {});
    this.open.add(stream);
    stream.once('close', () => this.open.delete(stream));
    detectProtocol(stream, ctx.destination, { timeoutMs: this.config.sniffTimeoutMs, clock: this.deps.clock }).then((r) => {
      if (stream.destroyed) return;
      switch (r.protocol) {
        case 'closed':
          stream.destroy();
          return;
        case 'tcp':
          if (this.opts.passthrough) this.opts.passthrough(stream, ctx);
          else stream.destroy();
          return;
        case 'http1':
          this.fast.serve(stream, ctx);
          return;
        case 'h2c':
          this.h2.serve(this.wrap(stream, ctx, { writeAhead: this.writeAhead }), ctx);
          return;
      }
    }, (err: unknown) => {
      this.opts.logger.error({ err: (err as Error)?.message }, 'protocol detection failed');
      stream.destroy();
    });
  }

  /** `writeAhead` for an HTTP/2 session only: an HTTP/1 connection is not multiplexed, one request's writes wait for nothing else. */
  private wrap(stream: Duplex, ctx: StreamContext, extra: Pick<StreamSocketOptions, 'prefix' | 'writeAhead'> = {}): StreamSocket {
    return new StreamSocket(stream, { ...extra, remoteAddress: ctx.source.address, remotePort: ctx.source.port, localAddress: ctx.destination.address, localPort: ctx.destination.port });
  }

  /** What the saturation gauges show (load-gauges.ts). */
  load(): WaypointLoad {
    return {
      inFlight: this.exchangeLoad.inFlight,
      downstream: this.open.size,
      upstream: { http1: this.http1Upstream.connections, h2c: this.h2Upstream.connections },
    };
  }

  /** Mirror copies not sent (too many in flight, or a body too large to copy). */
  get mirrorsDropped(): number {
    return this.deps.mirrors.dropped;
  }

  /** Closes pooled upstream connections and every stream being served. */
  close(): void {
    this.deps.clients.http1.close();
    this.deps.clients.h2c.close();
    for (const s of this.open) s.destroy();
    this.open.clear();
  }
}
