/**
 * OTLP/gRPC's trace service (opentelemetry.proto.collector.trace.v1.TraceService), loaded
 * by @grpc/proto-loader from the official opentelemetry-proto files vendored with their
 * licence under proto/opentelemetry/ (the same proto/ directory as the CA's, PROTO_DIR).
 * The exporter sends it; the tests' collector serves it from the same files.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../ca/proto';
import type { OtlpResourceSpans, OtlpSpan, OtlpTraces } from './otlp-shape';

export const TRACE_SERVICE_PROTO = 'opentelemetry/proto/collector/trace/v1/trace_service.proto';

/** A span as gRPC carries it: the same object, ids as bytes instead of hex. */
export type OtlpProtoSpan = Omit<OtlpSpan, 'traceId' | 'spanId' | 'parentSpanId'> & { traceId: Buffer; spanId: Buffer; parentSpanId: Buffer };

export interface ExportTraceServiceRequest {
  resourceSpans: (Omit<OtlpResourceSpans, 'scopeSpans'> & { scopeSpans: { scope: OtlpResourceSpans['scopeSpans'][number]['scope']; spans: OtlpProtoSpan[] }[] })[];
}

/** As proto-loader decodes it (defaults: true): partialSuccess is null when the collector took everything. */
export interface ExportTraceServiceResponse {
  partialSuccess?: { rejectedSpans: number; errorMessage: string } | null;
}

let loaded: grpc.ServiceClientConstructor | undefined;

/** The TraceService client/service constructor; parsed once per process (parsing the .proto files is not free). */
export function traceService(): grpc.ServiceClientConstructor {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync(TRACE_SERVICE_PROTO, {
    includeDirs: [PROTO_DIR],
    // Times are fixed64 nanoseconds: decimal strings keep every digit (a double does not).
    longs: String,
    enums: Number,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    opentelemetry: { proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } } };
  };
  loaded = pkg.opentelemetry.proto.collector.trace.v1.TraceService;
  return loaded;
}

const hexBytes = (hex: string) => Buffer.from(hex, 'hex');

/** The OTLP/JSON shape (hex ids) as the gRPC request (byte ids). */
export function exportRequest(traces: OtlpTraces): ExportTraceServiceRequest {
  return {
    resourceSpans: traces.resourceSpans.map((rs) => ({
      resource: rs.resource,
      scopeSpans: rs.scopeSpans.map((ss) => ({
        scope: ss.scope,
        spans: ss.spans.map((s) => ({ ...s, traceId: hexBytes(s.traceId), spanId: hexBytes(s.spanId), parentSpanId: hexBytes(s.parentSpanId) })),
      })),
    })),
  };
}
