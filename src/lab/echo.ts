/**
 * The lab's demo app, run in each `run: echo` pod:
 *   HTTP (8080): answers every request with JSON describing the pod and what it saw
 *     (method, path, headers, and the peer address:port: the observable effect of the
 *     mesh, e.g. whether the source IP was preserved). `?status=503` answers with that
 *     status and `?delay=200` waits that many milliseconds first, for retry and timeout
 *     tests.
 *   TCP (9000): echoes bytes back; when the client half-closes, the echo finishes
 *     sending and then half-closes too, so byte-exact round trips can be checked.
 * Only Node builtins, so it starts fast in every pod.
 *
 * Run: node dist/lab/echo.js --pod echo-1 --namespace demo --node node-1
 *   (or the hidden `weft lab echo` with the same flags)
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { parse, parseOptions } from '../lib/options';

export const echoOptionSpecs = {
  pod: { flag: 'pod', env: 'WEFT_POD', default: 'unknown', description: 'pod name reported in answers', parse: parse.string() },
  namespace: { flag: 'namespace', env: 'WEFT_NAMESPACE', default: 'unknown', description: 'namespace reported in answers', parse: parse.string() },
  node: { flag: 'node', env: 'WEFT_NODE', default: 'unknown', description: 'node reported in answers', parse: parse.string() },
  host: { flag: 'host', default: '0.0.0.0', description: 'address to listen on', parse: parse.string() },
  httpPort: { flag: 'http-port', default: 8080, description: 'HTTP port (0: any free port)', parse: parse.port() },
  tcpPort: { flag: 'tcp-port', default: 9000, description: 'TCP echo port (0: any free port)', parse: parse.port() },
};

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
  close(): Promise<void>;
}

function hostPort(address: string | undefined, port: number | undefined): string {
  const a = (address ?? '?').replace(/^::ffff:/, '');
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}

function handle(id: EchoIdentity, req: IncomingMessage, res: ServerResponse): void {
  let bodyBytes = 0;
  req.on('data', (c: Buffer) => { bodyBytes += c.length; });
  req.on('end', () => {
    const url = new URL(req.url ?? '/', 'http://echo');
    const status = Number(url.searchParams.get('status') ?? 200);
    const delay = Math.min(Number(url.searchParams.get('delay') ?? 0) || 0, 60_000);
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
      res.writeHead(Number.isInteger(status) && status >= 200 && status <= 599 ? status : 400, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    }, delay);
  });
}

function echoSocket(sock: Socket): void {
  sock.setNoDelay(true);
  sock.on('error', () => sock.destroy());
  // pipe() ends the writable side once the client's end has been read and everything
  // before it written back: that is the half-close handshake the TCP mode promises.
  sock.pipe(sock);
}

function listen(server: HttpServer | TcpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export async function startEcho(id: EchoIdentity, opts: { host?: string; httpPort?: number; tcpPort?: number } = {}): Promise<EchoServers> {
  const host = opts.host ?? '0.0.0.0';
  const http = createHttpServer((req, res) => handle(id, req, res));
  http.keepAliveTimeout = 30_000;
  const tcp = createTcpServer({ allowHalfOpen: true }, echoSocket);
  const sockets = new Set<Socket>();
  for (const server of [http, tcp]) {
    server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  }
  const httpPort = await listen(http, opts.httpPort ?? 8080, host);
  let tcpPort: number;
  try {
    tcpPort = await listen(tcp, opts.tcpPort ?? 9000, host);
  } catch (err) {
    http.close();
    throw err;
  }
  return {
    httpPort,
    tcpPort,
    close: () => new Promise<void>((resolve) => {
      let open = 2;
      const done = () => { if (--open === 0) resolve(); };
      http.close(done);
      tcp.close(done);
      for (const s of sockets) s.destroy();
    }),
  };
}

/** Entry point: runs until SIGTERM/SIGINT. */
export async function echoMain(argv: string[]): Promise<number> {
  const { values } = parseOptions(echoOptionSpecs, argv);
  const servers = await startEcho({ pod: values.pod, namespace: values.namespace, node: values.node }, values);
  process.stdout.write(JSON.stringify({
    time: new Date().toISOString(), msg: 'echo listening', pod: values.pod, namespace: values.namespace,
    node: values.node, httpPort: servers.httpPort, tcpPort: servers.tcpPort,
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
