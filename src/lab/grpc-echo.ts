/**
 * gRPC in the lab, to prove gRPC (h2c, trailers) crosses the mesh and the waypoint:
 *
 *   server (in every `run: echo` pod, port 7070): a unary gRPC service written on
 *     node:http2 alone, so the echo app still starts with Node builtins only. Any method
 *     path is answered; the reply describes the pod and what it saw (method, authority,
 *     metadata, peer), like the HTTP echo. Metadata `x-echo-grpc-status: N` makes it end
 *     with that grpc-status instead; every reply ends with trailers carrying
 *     `x-echo-trailer: <pod>`, so a client sees whether trailers survived the path.
 *   client (`weft lab grpc <host:port>`): a real gRPC client (@grpc/grpc-js), so what
 *     the server answers is checked by an independent implementation.
 *
 * Messages are JSON rather than protobuf: gRPC's framing (a 5-byte length prefix per
 * message) does not care, and neither does the mesh.
 */
import { createServer, constants as h2, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { EchoIdentity } from './echo';

/** The method every test calls (upstream's echo service has one of this shape). */
export const GRPC_ECHO_METHOD = '/weft.lab.Echo/Echo';
/** Cap on one request message; the echo never needs more. */
const MAX_MESSAGE_BYTES = 1 << 20;

/** What the gRPC echo answers. */
export interface GrpcEchoAnswer extends EchoIdentity {
  /** The :path of the call, e.g. /weft.lab.Echo/Echo. */
  method: string;
  authority: string;
  /** Request metadata (headers without the pseudo-headers). */
  metadata: Record<string, string | string[] | undefined>;
  peer: string;
  /** The request message, as received. */
  request: unknown;
}

/** One gRPC message frame: compressed flag 0, 4-byte length, the bytes. */
export function grpcFrame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

function answerStream(id: EchoIdentity, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  stream.on('error', () => {});
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_MESSAGE_BYTES + 5) return void stream.close(h2.NGHTTP2_REFUSED_STREAM);
    chunks.push(c);
  });
  stream.on('end', () => {
    if (stream.destroyed) return;
    const body = Buffer.concat(chunks);
    let request: unknown = null;
    try {
      if (body.length >= 5) request = JSON.parse(body.subarray(5, 5 + body.readUInt32BE(1)).toString('utf8'));
    } catch { request = body.subarray(5).toString('utf8'); }
    const metadata: GrpcEchoAnswer['metadata'] = {};
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) metadata[k] = v;
    const sock = stream.session?.socket;
    const answer: GrpcEchoAnswer = {
      ...id, method: String(headers[':path'] ?? ''), authority: String(headers[':authority'] ?? ''), metadata,
      peer: `${(sock?.remoteAddress ?? '?').replace(/^::ffff:/, '')}:${sock?.remotePort ?? 0}`, request,
    };
    const asked = Number(headers['x-echo-grpc-status'] ?? 0);
    const status = Number.isInteger(asked) && asked >= 0 && asked <= 16 ? asked : 2;
    const trailers = { 'grpc-status': String(status), ...(status ? { 'grpc-message': `asked for status ${status}` } : {}), 'x-echo-trailer': id.pod };
    if (status && headers['x-echo-trailers-only'] === '1') {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end(status ? undefined : grpcFrame(Buffer.from(JSON.stringify(answer))));
  });
}

/** The gRPC echo on h2c (prior knowledge, as gRPC without TLS is). */
export function createGrpcEcho(id: EchoIdentity): Http2Server {
  const server = createServer();
  server.on('stream', (stream, headers) => answerStream(id, stream, headers));
  server.on('sessionError', () => {});
  return server;
}
