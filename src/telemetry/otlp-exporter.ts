/**
 * STUB (skeleton): the OTLP helper (h-otlp) replaces this file.
 *
 * Exports sampled spans to an OpenTelemetry collector over OTLP/gRPC (@grpc/grpc-js and
 * the vendored opentelemetry-proto files): batched, a bounded queue, drops counted,
 * one log line a minute at most; an unreachable or slow collector never slows the proxy.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log';
import type { SpanRecord, SpanSink } from './types';

export interface OtlpExporterOptions {
  /** http(s)://host:port of the collector's OTLP/gRPC receiver. */
  endpoint: string;
  /** `waypoint demo/waypoint` or `ztunnel node-1` (resource attributes come from it). */
  proxy: string;
  registry: Registry;
  logger: Logger;
}

export class OtlpExporter implements SpanSink {
  constructor(readonly options: OtlpExporterOptions) {}

  onSpan(_span: SpanRecord): void {}

  /** Sends what is queued (bounded wait), then closes the channel. */
  async close(): Promise<void> {}
}
