/**
 * An OpenTelemetry collector's OTLP/gRPC trace receiver, for tests: a real grpc-js server
 * serving opentelemetry.proto.collector.trace.v1.TraceService from the same vendored
 * proto files as the exporter (src/telemetry/otlp-proto.ts), on loopback. It keeps every
 * span it receives (ids back in hex, with its resource's attributes), and can be told to
 * never answer (a hung collector) or to reject a share of spans (partial success).
 */
import * as grpc from '@grpc/grpc-js';
import { traceService, type ExportTraceServiceRequest, type ExportTraceServiceResponse } from '../../src/telemetry/otlp-proto';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, unknown>;
  status: { code: number; message: string };
  /** Its resource's attributes. */
  resource: Record<string, unknown>;
  scope: { name: string; version: string };
}

export type CollectorMode = 'accept' | 'hang' | { rejectEvery: number };

type Decoded = { key: string; value: Record<string, unknown> & { value?: string } }[];

/** proto-loader's AnyValue (oneofs: true) as a plain value. */
function attrs(kvs: Decoded): Record<string, unknown> {
  return Object.fromEntries(kvs.map((kv) => [kv.key, kv.value.value ? kv.value[kv.value.value] : undefined]));
}

export class OtlpTestCollector {
  readonly spans: ReceivedSpan[] = [];
  /** Export calls received (answered or not). */
  calls = 0;
  mode: CollectorMode = 'accept';
  private readonly server = new grpc.Server();
  private readonly hung: grpc.sendUnaryData<ExportTraceServiceResponse>[] = [];
  port = 0;

  async start(): Promise<string> {
    this.server.addService(traceService().service, {
      Export: (call: grpc.ServerUnaryCall<ExportTraceServiceRequest, ExportTraceServiceResponse>, cb: grpc.sendUnaryData<ExportTraceServiceResponse>) => {
        this.calls++;
        if (this.mode === 'hang') {
          this.hung.push(cb);
          return;
        }
        let rejected = 0;
        let n = 0;
        for (const rs of call.request.resourceSpans) {
          const resource = attrs(rs.resource.attributes as unknown as Decoded);
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans) {
              n++;
              if (typeof this.mode === 'object' && n % this.mode.rejectEvery === 0) {
                rejected++;
                continue;
              }
              this.spans.push({
                traceId: s.traceId.toString('hex'), spanId: s.spanId.toString('hex'), parentSpanId: s.parentSpanId.toString('hex'),
                name: s.name, kind: s.kind, startTimeUnixNano: s.startTimeUnixNano, endTimeUnixNano: s.endTimeUnixNano,
                attributes: attrs(s.attributes as unknown as Decoded), status: { code: s.status.code, message: s.status.message ?? '' },
                resource, scope: ss.scope,
              });
            }
          }
        }
        cb(null, rejected > 0 ? { partialSuccess: { rejectedSpans: rejected, errorMessage: 'test collector rejects some spans' } } : {});
      },
    });
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const cb of this.hung.splice(0)) cb({ code: grpc.status.UNAVAILABLE, details: 'test collector stopping' });
    this.server.forceShutdown();
  }
}

/** A loopback port nothing listens on (bound, then closed): an unreachable collector. */
export async function closedPort(): Promise<number> {
  const net = await import('node:net');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
