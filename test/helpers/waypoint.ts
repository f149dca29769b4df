/**
 * A waypoint L7 handler on loopback for tests: a plain TCP listener (or an h2c CONNECT
 * listener, the shape of HBONE without TLS) stands in for the HBONE server and hands
 * each stream to WaypointL7 with a fixed context; a test RequestRouter decides per
 * request; a TCP dialer reaches real node http/http2 servers as upstreams.
 */
import type { Test } from 'tap';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import type { RequestAuthorizer } from '../../src/waypoint/authorizer';
import { WaypointL7 } from '../../src/waypoint/handler';
import type { Admission } from '../../src/waypoint/admission';
import type { L7Config } from '../../src/waypoint/config';
import type { Clock } from '../../src/lib/clock';
import type { WorkloadLookup } from '../../src/waypoint/tracing';
import type { ProxyTelemetry } from '../../src/telemetry/proxy-telemetry';
import type {
  ForwardPlan, RequestFacts, RequestRecord, RequestRouter, RouteDecision, StreamContext, UpstreamDialer, UpstreamTarget,
} from '../../src/waypoint/types';
import { LogLines } from './log-lines';

export const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';
export const ECHO_ID = 'spiffe://cluster.local/ns/demo/sa/echo';

/** A router that answers with a function of the facts and keeps what it saw. */
export class TestRouter implements RequestRouter {
  readonly seen: RequestFacts[] = [];
  constructor(public decide: (facts: RequestFacts) => RouteDecision) {}
  route(facts: RequestFacts): RouteDecision {
    this.seen.push(facts);
    return this.decide(facts);
  }
}

/** Dials TCP on loopback; counts dials per port; ports in `refuse` fail as a closed port would. */
export class TcpDialer implements UpstreamDialer {
  readonly dials = new Map<number, number>();
  /** Per port: how many of the next dials fail (as a refused connection would). */
  readonly failNext = new Map<number, number>();
  dial(t: UpstreamTarget): Promise<Duplex> {
    this.dials.set(t.port, (this.dials.get(t.port) ?? 0) + 1);
    const fail = this.failNext.get(t.port) ?? 0;
    if (fail > 0) {
      this.failNext.set(t.port, fail - 1);
      return Promise.reject(Object.assign(new Error(`connect ECONNREFUSED 127.0.0.1:${t.port}`), { code: 'ECONNREFUSED' }));
    }
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: t.host, port: t.port });
      s.once('connect', () => { s.off('error', reject); resolve(s); });
      s.once('error', reject);
    });
  }
  count(port: number): number {
    return this.dials.get(port) ?? 0;
  }
}

/** A plan to one loopback port, plain TCP, with `extra` fields. */
export function plan(port: number, extra: Partial<ForwardPlan> = {}): ForwardPlan {
  return { kind: 'forward', upstream: { host: '127.0.0.1', port, transport: 'tcp', identity: ECHO_ID }, route: 'demo/echo', backend: 'demo/echo-v1:8080', ...extra };
}

export interface WaypointHarness {
  port: number;
  l7: WaypointL7;
  router: TestRouter;
  dialer: TcpDialer;
  records: RequestRecord[];
  log: LogLines;
  /** Streams handed over so far. */
  streams: number;
}

export interface HarnessOptions {
  config?: Partial<L7Config>;
  destination?: Partial<StreamContext['destination']>;
  passthrough?: (stream: Duplex, ctx: StreamContext) => void;
  clock?: Clock;
  /** The retry backoff's jitter. */
  random?: () => number;
  /** Hand over HTTP/2 CONNECT streams (as HBONE does) instead of TCP sockets. */
  viaConnect?: boolean;
  authorizer?: RequestAuthorizer;
  /** TrafficPolicy admission (faults, rate limits, shedding). */
  admission?: Admission;
  /** Spans and tap (src/telemetry). */
  telemetry?: ProxyTelemetry;
  /** Workload names by address (the registry view). */
  workloads?: WorkloadLookup;
  /** How upstreams are reached; a TcpDialer (loopback TCP) by default. */
  dialer?: UpstreamDialer;
}

export async function startWaypoint(t: Test, decide: (f: RequestFacts) => RouteDecision, opts: HarnessOptions = {}): Promise<WaypointHarness> {
  const log = new LogLines();
  const records: RequestRecord[] = [];
  const router = new TestRouter(decide);
  const dialer = new TcpDialer();
  const l7 = new WaypointL7({
    router, dialer: opts.dialer ?? dialer, logger: pino({ level: 'debug' }, log), observer: { onRequest: (r) => records.push(r) },
    ...(opts.config ? { config: opts.config } : {}), ...(opts.passthrough ? { passthrough: opts.passthrough } : {}), ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.authorizer ? { authorizer: opts.authorizer } : {}),
    ...(opts.random ? { random: opts.random } : {}),
    ...(opts.admission ? { admission: opts.admission } : {}),
    ...(opts.telemetry ? { telemetry: opts.telemetry } : {}),
    ...(opts.workloads ? { workloads: opts.workloads } : {}),
  });
  const h: WaypointHarness = { port: 0, l7, router, dialer, records, log, streams: 0 };
  const ctxFor = (address: string, port: number): StreamContext => ({
    source: { address, port, identity: CLIENT_ID },
    destination: { address: '10.96.0.10', port: 80, service: { namespace: 'demo', name: 'echo' }, ...opts.destination },
  });
  let server: net.Server | http2.Http2Server;
  if (opts.viaConnect) {
    const s = http2.createServer();
    s.on('stream', (stream, headers) => {
      if (headers[':method'] !== 'CONNECT') return stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      stream.respond({ ':status': 200 });
      h.streams++;
      const sock = stream.session?.socket;
      l7.handle(stream, ctxFor(sock?.remoteAddress ?? '127.0.0.1', sock?.remotePort ?? 0));
    });
    server = s;
  } else {
    server = net.createServer({ allowHalfOpen: true }, (sock) => {
      h.streams++;
      l7.handle(sock, ctxFor(sock.remoteAddress!, sock.remotePort!));
    });
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  h.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => {
    l7.close();
    server.close();
    if ('closeAllConnections' in server) (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
  return h;
}

/** Opens an h2c CONNECT stream to a `viaConnect` harness (the HBONE tunnel, minus TLS). */
export async function connectStream(t: Test, port: number): Promise<http2.ClientHttp2Stream> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const stream = session.request({ ':method': 'CONNECT', ':authority': '10.96.0.10:80' });
  await new Promise<void>((resolve, reject) => {
    stream.once('response', (hd) => (hd[':status'] === 200 ? resolve() : reject(new Error(`CONNECT ${hd[':status']}`))));
    stream.once('error', reject);
  });
  return stream;
}

/** A raw TCP upstream on loopback: `onSocket` speaks for it (HTTP/1.1 by hand, HTTP/2 frames); its port. */
export async function tcpUpstream(t: Test, onSocket: (sock: net.Socket) => void): Promise<number> {
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    onSocket(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/2 (h2c) upstream on loopback with Node's default settings: `onStream` answers each stream; its port. */
export async function h2Upstream(t: Test, onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void): Promise<number> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  server.on('stream', onStream);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { sessions.forEach((s) => s.destroy()); server.close(); });
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/1.1 upstream on loopback. */
export async function httpUpstream(t: Test, handler: http.RequestListener): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  return { port: (server.address() as net.AddressInfo).port, server };
}

/** An upstream that answers with what it received, as JSON. */
export function echoHandler(name = 'echo-v1'): http.RequestListener {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(JSON.stringify({ backend: name, method: req.method, url: req.url, headers: req.headers, bodyLength: body.length, body: body.toString('utf8').slice(0, 200) }));
    });
  };
}

export interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string; socket?: unknown }

/** One HTTP/1.1 request to the harness; `agent` for keep-alive reuse. */
export function request(port: number, opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; agent?: http.Agent | false } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: { host: 'echo.demo', ...opts.headers }, agent: opts.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), socket: res.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Writes raw bytes on a new connection and collects everything until it closes (or `ms`). */
export function raw(port: number, data: string | Buffer, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
    s.write(data);
  });
}
