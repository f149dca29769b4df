/**
 * The spans of one sampled request through the waypoint: a server span for the request
 * as the client sent it (child of the caller's span), and a client span per upstream
 * attempt (child of the server span), so a retry shows as a second attempt under the
 * same request. Each attempt goes upstream with its own span id in `traceparent`, so the
 * next hop's spans are children of the attempt that reached it.
 *
 * Only sampled requests get a RequestSpans; an unsampled one makes no span objects.
 * Attribute names are OpenTelemetry's semantic conventions where one exists, `weft.*`
 * otherwise. No header value and no query string is recorded.
 */
import type { MeshState } from '../registry/state';
import { DESTINATION_SERVICE_ATTRIBUTE } from '../telemetry/span-ring';
import { formatTraceparent } from '../telemetry/trace-context';
import type { RequestTrace, Tracer } from '../telemetry/tracer';
import type { SpanRecord } from '../telemetry/types';
import { requestPeers } from './metrics';
import { HTTP1_METHODS } from './sniff';
import type { DestinationService, RequestRecord, ResponseFlag } from './types';

/** How the waypoint finds workload names by address (the registry view); absent: addresses only. */
export type WorkloadLookup = Pick<MeshState, 'workloadByAddress'>;

/** One attempt's span, as forward() drives it. */
export interface AttemptSpan {
  /** The traceparent the attempt's request carries (this span's id, sampled). */
  readonly traceparent: string;
  /** The upstream answered `status`, or the attempt failed with `flag` (UF, UC, UT, DC). */
  end(outcome: { status: number } | { flag: ResponseFlag }): void;
}

/** What forward() needs to trace attempts. */
export interface AttemptTracing {
  attempt(n: number, upstream: string): AttemptSpan;
}

/** Host of an authority, without the port (IPv6 brackets kept). */
function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

const KNOWN_METHODS: ReadonlySet<string> = new Set(HTTP1_METHODS);

/**
 * The server span's name: `{method} {service host}`, as OpenTelemetry's HTTP conventions
 * name it. Nothing in it is the client's free text: an h2 `:method` may be any token and
 * a request to a workload address has only the client's Host, and span names are what
 * backends group by (each new one an operation, or a series under spanmetrics). So an
 * unknown method is `HTTP` and without a Service there is no host.
 */
function serverSpanName(method: string, service: DestinationService | undefined): string {
  const m = KNOWN_METHODS.has(method) ? method : 'HTTP';
  return service ? `${m} ${service.hostname ?? `${service.name}.${service.namespace}`}` : m;
}

export class RequestSpans implements AttemptTracing {
  readonly server: SpanRecord;

  constructor(private readonly tracer: Tracer, trace: RequestTrace, method: string, service: DestinationService | undefined) {
    this.server = tracer.start(trace.traceId, trace.parentId, serverSpanName(method, service), 'server');
  }

  /** The traceparent for requests made on the server span's behalf (mirrors, a WebSocket handshake). */
  traceparent(): string {
    return formatTraceparent(this.server.traceId, this.server.spanId, true);
  }

  attempt(n: number, upstream: string): AttemptSpan {
    const span = this.tracer.start(this.server.traceId, this.server.spanId, `attempt ${n} ${upstream}`, 'client', { 'weft.attempt': n, 'weft.upstream': upstream });
    const tracer = this.tracer;
    return {
      traceparent: formatTraceparent(span.traceId, span.spanId, true),
      end(outcome) {
        if ('status' in outcome) {
          span.attributes['http.response.status_code'] = outcome.status;
          tracer.end(span, outcome.status >= 500 ? `http ${outcome.status}` : undefined);
        } else {
          span.attributes['weft.response_flags'] = outcome.flag;
          tracer.end(span, outcome.flag);
        }
      },
    };
  }

  /** Ends the server span with the request's facts (the access log's). */
  end(record: RequestRecord, workloads: WorkloadLookup | undefined): void {
    const a = this.server.attributes;
    // OpenTelemetry's conventions: a method outside the known set is `_OTHER`, the original beside it.
    if (KNOWN_METHODS.has(record.method)) a['http.request.method'] = record.method;
    else {
      a['http.request.method'] = '_OTHER';
      a['http.request.method_original'] = record.method;
    }
    a['url.path'] = record.path;
    a['server.address'] = hostOf(record.authority);
    a['network.protocol.name'] = record.grpc ? 'grpc' : 'http';
    if (record.status > 0) a['http.response.status_code'] = record.status;
    if (record.grpcStatus !== undefined) a['rpc.grpc.status_code'] = Number(record.grpcStatus);
    if (record.route !== undefined) a['weft.route'] = record.route;
    a['weft.response_flags'] = record.responseFlag;
    a['weft.attempts'] = record.attempts;
    const svc = record.destinationService;
    if (svc) a[DESTINATION_SERVICE_ATTRIBUTE] = `${svc.namespace}/${svc.name}`;
    if (record.sourceAddress !== undefined) a['client.address'] = record.sourceAddress;
    const peers = workloads ? requestPeers(record, workloads) : undefined;
    if (peers?.source) a['weft.source_workload'] = `${peers.source.record.namespace}/${peers.source.record.name}`;
    if (record.sourceIdentity !== undefined) a['weft.source_principal'] = record.sourceIdentity;
    if (peers?.destination) a['weft.destination_workload'] = `${peers.destination.record.namespace}/${peers.destination.record.name}`;
    if (record.destinationIdentity !== undefined) a['weft.destination_principal'] = record.destinationIdentity;
    const error = record.responseFlag !== '-' && record.responseFlag !== 'DI' ? record.responseFlag : record.status >= 500 ? `http ${record.status}` : undefined;
    this.tracer.end(this.server, error);
  }
}
