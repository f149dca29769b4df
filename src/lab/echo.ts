/**
 * The lab's demo app, run in each `run: echo` pod:
 *   HTTP (8080): answers every request with JSON describing the pod and what it saw
 *     (method, path, headers incl. the Host it was sent, and the peer address:port: the
 *     observable effect of the mesh, e.g. whether the source IP was preserved).
 *     `?status=503` answers with that status and `?delay=200` (ms, or `1s`, `300ms`)
 *     waits first, for retry and timeout tests. The Gateway API conformance retry
 *     simulation: `?uuid=U&succeedAfter=N[&responseCode=500][&delayRetry=300ms]` fails
 *     the first N requests carrying U (with that status, or without one by resetting
 *     the connection: a connection error), each after delayRetry, then answers 200.
 *     A request carrying upstream's `gateway-api-conformance-request-id` query parameter
 *     is logged (one JSON line on stdout, the pod's log), as upstream's echo logs every
 *     request: that is how a mirror's copies are counted. Others are not, so the lab's
 *     benchmarks do not measure log writes.
 *     A WebSocket upgrade on the same port echoes every data frame back.
 *     Per-pod behaviour (echo-behaviour.ts: a failing share, a service time, a
 *     concurrency limit) from flags, changed live with GET /_echo/behaviour?....
 *     `?via=b.demo,c.demo` makes the pod one hop of a call chain (echo-chain.ts): the
 *     request goes on to the next hop, trace and retry headers propagated.
 *   TCP (9000): echoes bytes back; when the client half-closes, the echo finishes
 *     sending and then half-closes too, so byte-exact round trips can be checked.
 *   gRPC (7070, h2c): a unary echo (src/lab/grpc-echo.ts).
 * Only Node builtins, so it starts fast in every pod.
 *
 * Run: node dist/lab/echo.js --pod echo-1 --namespace demo --node node-1
 *   (or the hidden `weft lab echo` with the same flags)
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Http2Server } from 'node:http2';
import { parse, parseOptions } from '../lib/options';
import { callNext, nextHop } from './echo-chain';
import { BEHAVIOUR_PATH, BehaviourGate, PROBER_USER_AGENT, DEFAULT_ECHO_BEHAVIOUR, parseBehaviour, type EchoBehaviour } from './echo-behaviour';
import { createGrpcEcho } from './grpc-echo';
import { acceptKey, encodeFrame, FrameReader, OP } from './websocket';

export const echoOptionSpecs = {
  pod: { flag: 'pod', env: 'WEFT_POD', default: 'unknown', description: 'pod name reported in answers', parse: parse.string() },
  namespace: { flag: 'namespace', env: 'WEFT_NAMESPACE', default: 'unknown', description: 'namespace reported in answers', parse: parse.string() },
  node: { flag: 'node', env: 'WEFT_NODE', default: 'unknown', description: 'node reported in answers', parse: parse.string() },
  host: { flag: 'host', default: '0.0.0.0', description: 'address to listen on', parse: parse.string() },
  httpPort: { flag: 'http-port', default: 8080, description: 'HTTP port (0: any free port)', parse: parse.port() },
  tcpPort: { flag: 'tcp-port', default: 9000, description: 'TCP echo port (0: any free port)', parse: parse.port() },
  grpcPort: { flag: 'grpc-port', default: 7070, description: 'gRPC echo port, h2c (0: any free port)', parse: parse.port() },
  failStatus: { flag: 'fail-status', default: DEFAULT_ECHO_BEHAVIOUR.failStatus, description: 'status of the requests this pod fails (echo-behaviour.ts)', parse: behaviourField('failStatus') },
  failRatio: { flag: 'fail-ratio', default: DEFAULT_ECHO_BEHAVIOUR.failRatio, description: 'share of requests failed with --fail-status, 0..1', parse: behaviourField('failRatio') },
  serviceTime: { flag: 'service-time', default: DEFAULT_ECHO_BEHAVIOUR.serviceTimeMs, description: 'time each request takes, ms (or 1s, 300ms)', parse: behaviourField('serviceTime') },
  concurrency: { flag: 'concurrency', default: DEFAULT_ECHO_BEHAVIOUR.concurrency, description: 'requests served at once, the rest queue (0: no limit)', parse: behaviourField('concurrency') },
};

function behaviourField(key: string): (raw: string) => number {
  return (raw) => {
    const b = parseBehaviour([[key, raw]]);
    return key === 'serviceTime' ? b.serviceTimeMs : b[key as Exclude<keyof EchoBehaviour, 'serviceTimeMs'>];
  };
}

export interface EchoIdentity {
  pod: string;
  namespace: string;
  node: string;
}

/** What the echo app answers over HTTP. */
export interface EchoAnswer extends EchoIdentity {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Address and port the app saw the connection come from. */
  peer: string;
  /** Address and port the connection arrived at. */
  local: string;
  /** Bytes of request body received. */
  bodyBytes: number;
}

export interface EchoServers {
  httpPort: number;
  tcpPort: number;
  grpcPort: number;
  close(): Promise<void>;
}

function hostPort(address: string | undefined, port: number | undefined): string {
  const a = (address ?? '?').replace(/^::ffff:/, '');
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}

/** The query parameter upstream's conformance tests tag mirrored requests with. */
export const REQUEST_ID_PARAM = 'gateway-api-conformance-request-id';

/** `200`, `1s`, `300ms` → milliseconds (capped at a minute); anything else → 0. */
function millis(v: string | null): number {
  const m = v === null ? null : /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(v);
  if (!m) return 0;
  return Math.min(Number(m[1]) * (m[2] === 's' ? 1000 : 1), 60_000);
}

/** Requests seen per retry-simulation uuid; bounded, oldest forgotten first. */
class RetryCounts {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 10_000) {}
  next(uuid: string): number {
    const n = (this.seen.get(uuid) ?? 0) + 1;
    this.seen.delete(uuid);
    this.seen.set(uuid, n);
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value!);
    return n;
  }
}

/** `GET /_echo/behaviour?failRatio=1&...`: changes the pod's behaviour; answers the one in force. */
function control(gate: BehaviourGate, q: URLSearchParams, res: ServerResponse): void {
  let status = 200;
  let body: unknown;
  try {
    gate.set(parseBehaviour(q.entries(), gate.behaviour));
    body = { ...gate.behaviour, ...gate.load };
  } catch (err) {
    status = 400;
    body = { error: (err as Error).message };
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function handle(id: EchoIdentity, retries: RetryCounts, gate: BehaviourGate, req: IncomingMessage, res: ServerResponse): void {
  let bodyBytes = 0;
  req.on('data', (c: Buffer) => { bodyBytes += c.length; });
  req.on('end', () => {
    const url = new URL(req.url ?? '/', 'http://echo');
    if (url.pathname === BEHAVIOUR_PATH) return control(gate, url.searchParams, res);
    const hop = nextHop(url, req.headers);
    if (hop) return callNext(hop, req.method ?? 'GET', res);
    // The lab's readiness probe is answered as is: the pod stays Ready while it fails or
    // queues requests, so what takes it out of rotation is the mesh's doing, not the prober's.
    if (req.headers['user-agent'] === PROBER_USER_AGENT) return reply(id, retries, req, res, url, bodyBytes, undefined);
    gate.run((failStatus) => reply(id, retries, req, res, url, bodyBytes, failStatus));
  });
}

function reply(id: EchoIdentity, retries: RetryCounts, req: IncomingMessage, res: ServerResponse, url: URL, bodyBytes: number, failStatus: number | undefined): void {
  const q = url.searchParams;
  let status = failStatus ?? Number(q.get('status') ?? 200);
  let delay = millis(q.get('delay'));
  if (q.has(REQUEST_ID_PARAM)) {
    process.stdout.write(JSON.stringify({ time: new Date().toISOString(), msg: `Echoing back request made to ${req.url} to client`, pod: id.pod, method: req.method, host: req.headers.host }) + '\n');
  }
  const uuid = q.get('uuid');
  if (uuid !== null && q.has('succeedAfter') && retries.next(uuid) <= Number(q.get('succeedAfter'))) {
    delay = millis(q.get('delayRetry'));
    if (!q.has('responseCode')) {
      // No status to fail with: fail as a crashed backend does, by resetting the connection.
      setTimeout(() => req.socket.resetAndDestroy(), delay);
      return;
    }
    status = Number(q.get('responseCode'));
  }
  const answer: EchoAnswer = {
    pod: id.pod,
    namespace: id.namespace,
    node: id.node,
    method: req.method ?? '',
    path: req.url ?? '/',
    headers: req.headers,
    peer: hostPort(req.socket.remoteAddress, req.socket.remotePort),
    local: hostPort(req.socket.localAddress, req.socket.localPort),
    bodyBytes,
  };
  const body = JSON.stringify(answer) + '\n';
  setTimeout(() => {
    if (res.destroyed) return;
    res.writeHead(Number.isInteger(status) && status >= 200 && status <= 599 ? status : 400, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }, delay);
}

/**
 * WebSocket (RFC 6455) on the HTTP port: accept the handshake (naming the pod in
 * `x-echo-pod`), then send every data frame back as it came, answer pings, and
 * close when the client closes.
 */
function upgrade(id: EchoIdentity, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const key = req.headers['sec-websocket-key'];
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || typeof key !== 'string') {
    socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  socket.write(['HTTP/1.1 101 Switching Protocols', 'upgrade: websocket', 'connection: Upgrade',
    `sec-websocket-accept: ${acceptKey(key)}`, `x-echo-pod: ${id.pod}`, `x-echo-namespace: ${id.namespace}`, '', ''].join('\r\n'));
  const reader = new FrameReader();
  const onData = (chunk: Buffer) => {
    let frames;
    try {
      frames = reader.push(chunk);
    } catch {
      return void socket.destroy();
    }
    for (const f of frames) {
      if (f.opcode === OP.close) return void socket.end(encodeFrame(OP.close, f.payload.subarray(0, 2), false));
      if (f.opcode === OP.ping) socket.write(encodeFrame(OP.pong, f.payload, false));
      else if (f.opcode !== OP.pong) socket.write(encodeFrame(f.opcode, f.payload, false));
    }
  };
  socket.on('data', onData);
  if (head.length) onData(head);
}

function echoSocket(sock: Socket): void {
  sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  // pipe() ends the writable side once the client's end has been read and everything
  // before it written back: that is the half-close handshake the TCP mode promises.
  sock.pipe(sock);
}

function listen(server: HttpServer | TcpServer | Http2Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export async function startEcho(id: EchoIdentity, opts: { host?: string; httpPort?: number; tcpPort?: number; grpcPort?: number; behaviour?: EchoBehaviour } = {}): Promise<EchoServers> {
  const host = opts.host ?? '0.0.0.0';
  const retries = new RetryCounts();
  const gate = new BehaviourGate(opts.behaviour);
  const http = createHttpServer((req, res) => handle(id, retries, gate, req, res));
  http.keepAliveTimeout = 30_000;
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => upgrade(id, req, socket, head));
  const tcp = createTcpServer({ allowHalfOpen: true }, echoSocket);
  const grpc = createGrpcEcho(id);
  const servers = [http, tcp, grpc];
  const sockets = new Set<Socket>();
  for (const server of servers) {
    server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  }
  const close = () => new Promise<void>((resolve) => {
    let open = servers.length;
    const done = () => { if (--open === 0) resolve(); };
    for (const server of servers) server.close(done);
    for (const s of sockets) s.destroy();
  });
  try {
    const httpPort = await listen(http, opts.httpPort ?? 8080, host);
    const tcpPort = await listen(tcp, opts.tcpPort ?? 9000, host);
    const grpcPort = await listen(grpc, opts.grpcPort ?? 7070, host);
    return { httpPort, tcpPort, grpcPort, close };
  } catch (err) {
    for (const server of servers) if (server.listening) server.close();
    throw err;
  }
}

/** Entry point: runs until SIGTERM/SIGINT. */
export async function echoMain(argv: string[]): Promise<number> {
  const { values } = parseOptions(echoOptionSpecs, argv);
  const behaviour: EchoBehaviour = { failStatus: values.failStatus, failRatio: values.failRatio, serviceTimeMs: values.serviceTime, concurrency: values.concurrency };
  const servers = await startEcho({ pod: values.pod, namespace: values.namespace, node: values.node }, { ...values, behaviour });
  process.stdout.write(JSON.stringify({
    time: new Date().toISOString(), msg: 'echo listening', pod: values.pod, namespace: values.namespace,
    node: values.node, httpPort: servers.httpPort, tcpPort: servers.tcpPort, grpcPort: servers.grpcPort,
  }) + '\n');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await servers.close();
  return 0;
}

if (require.main === module) {
  echoMain(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`echo: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
