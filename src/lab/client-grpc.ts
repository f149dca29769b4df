/**
 * `weft lab grpc <host:port>`: unary calls to the lab's gRPC echo (src/lab/grpc-echo.ts)
 * from inside a pod with a real gRPC client (@grpc/grpc-js), so h2c and trailers are
 * judged by an implementation other than the one answering. Prints JSON: one call →
 * { code, details, answer, trailers }; with --count N → { requests, codes, pods }.
 * Exit 0 when every call ended with status OK.
 */
import { Client, credentials, Metadata, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { WeftError } from '../lib/errors';
import { parse, parseOptions } from '../lib/options';
import { takeHeaders } from './client';
import { GRPC_ECHO_METHOD, type GrpcEchoAnswer } from './grpc-echo';

const specs = {
  method: { flag: 'method', default: GRPC_ECHO_METHOD, description: 'the method path to call', parse: parse.string({ pattern: /^\/[^/]+\/[^/]+$/, what: 'a gRPC method path /package.Service/Method' }) },
  count: { flag: 'count', default: 1, description: 'make this many calls and print a summary', parse: parse.int({ min: 1, max: 10_000 }) },
  timeout: { flag: 'timeout', default: 5000, description: 'deadline of each call', parse: parse.duration({ min: 1 }) },
};

export interface GrpcCallResult {
  /** The gRPC status code (0 = OK). */
  code: number;
  details: string;
  answer?: GrpcEchoAnswer;
  /** Trailing metadata as received. */
  trailers: Record<string, string>;
}

export interface GrpcSummary {
  requests: number;
  /** Status code → how many. */
  codes: Record<string, number>;
  /** The echo's `pod` → how many. */
  pods: Record<string, number>;
}

const encode = (v: unknown) => Buffer.from(JSON.stringify(v));
const decode = (b: Buffer) => JSON.parse(b.toString('utf8')) as GrpcEchoAnswer;

function call(client: Client, method: string, md: Record<string, string>, timeoutMs: number): Promise<GrpcCallResult> {
  return new Promise((resolve) => {
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(md)) metadata.set(k, v);
    let answer: GrpcEchoAnswer | undefined;
    let status: StatusObject | undefined;
    let done = false;
    const finish = () => {
      if (done || !status) return;
      done = true;
      const trailers: Record<string, string> = {};
      for (const [k, v] of Object.entries(status.metadata.getMap())) trailers[k] = String(v);
      resolve({ code: status.code, details: status.details, ...(answer ? { answer } : {}), trailers });
    };
    const c = client.makeUnaryRequest(method, encode, decode, { hello: 'weft' }, metadata, { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, value?: GrpcEchoAnswer) => {
        if (!err) answer = value;
        finish();
      });
    c.on('status', (s: StatusObject) => { status = s; setImmediate(finish); });
  });
}

export async function grpcMain(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { headers: md, rest } = takeHeaders(argv);
  const { values, positionals } = parseOptions(specs, rest, {});
  if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', 'grpc needs exactly one host:port, e.g. grpc echo:7070');
  // No TXT lookup for a service config: the lab's pods have no DNS server to ask.
  const client = new Client(positionals[0]!, credentials.createInsecure(), { 'grpc.service_config_disable_resolution': 1 });
  try {
    if (values.count === 1) {
      const r = await call(client, values.method, md, values.timeout);
      out.write(JSON.stringify(r) + '\n');
      return r.code === 0 ? 0 : 1;
    }
    const sum: GrpcSummary = { requests: values.count, codes: {}, pods: {} };
    for (let i = 0; i < values.count; i++) {
      const r = await call(client, values.method, md, values.timeout);
      sum.codes[r.code] = (sum.codes[r.code] ?? 0) + 1;
      if (r.answer) sum.pods[r.answer.pod] = (sum.pods[r.answer.pod] ?? 0) + 1;
    }
    out.write(JSON.stringify(sum) + '\n');
    return Object.keys(sum.codes).every((c) => c === '0') ? 0 : 1;
  } finally {
    client.close();
  }
}
