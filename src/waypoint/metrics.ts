/**
 * The waypoint's Istio-shaped request metrics (reporter `waypoint`), the names and
 * labels Istio's dashboards query: istio_requests_total and the duration, request-size
 * and response-size histograms. Labels never carry error text: failures map to a fixed
 * set of response flags (types.ts ResponseFlag, Envoy's names as Istio's Envoy waypoint reports).
 * Series naming a workload that left the registry are removed, so pod churn does not
 * grow scrapes (lib/metric-series.ts).
 */
import { Counter, type Registry } from 'prom-client';
import { PEER_LABEL_NAMES, WorkloadSeries, seriesKey, workloadKey } from '../lib/metric-series';
import { RequestSeries } from './request-series';
import type { MeshState } from '../registry/state';
import type { WorkloadView } from '../registry/enrolment';
import { sweepGoneWorkloads } from '../mesh/metric-sweep';
import type { RequestObserver, RequestRecord } from './types';

/**
 * Envoy's response flags, the subset a waypoint can raise. `-` none; `NR` no route
 * (404); `UH` no healthy upstream (503); `UF` upstream connection failure; `UT`
 * upstream request timeout (504); `URX` retries exhausted; `UC` upstream connection
 * terminated; `DC` downstream (client) went away; `UO` overflow (a limit refused it);
 * `DI` delayed by fault injection; `FI` aborted by fault injection; `RL` rate limited;
 * `SH` shed by the adaptive concurrency limit (Weft's own: Envoy's filter sets no flag);
 * `UAEX` denied by authorization; `DPE` downstream protocol error (a request the
 * strict parser or a header limit refused: 400/431/501).
 */
export const RESPONSE_FLAGS = ['-', 'NR', 'UH', 'UF', 'UT', 'URX', 'UC', 'DC', 'UO', 'DI', 'FI', 'RL', 'SH', 'UAEX', 'DPE'] as const;
export type HttpResponseFlag = (typeof RESPONSE_FLAGS)[number];

/** Istio's request metrics' labels, in a fixed order. */
export const REQUEST_LABEL_NAMES = [
  ...PEER_LABEL_NAMES,
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;
export type RequestLabelName = (typeof REQUEST_LABEL_NAMES)[number];
export type RequestLabels = Record<RequestLabelName, string>;

const UNKNOWN = 'unknown';
/** Istio's buckets for request durations (ms) and sizes (bytes). */
const DURATION_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

/** Reports every finished request (RequestObserver) as Istio's request metrics. */
export class WaypointMetrics implements RequestObserver {
  /** istio_requests_total and the three histograms, kept per label set (request-series.ts: prom-client's per-call label hashing was ~7 % of the CPU). */
  private readonly perRequest: RequestSeries<RequestLabels>;
  /** Retries made, and retriable answers not retried because of a limit, per addressed Service (bounded by Services). */
  readonly retries: Counter<'destination_service_namespace' | 'destination_service_name' | 'result'>;
  private readonly series = new WorkloadSeries<RequestLabels>();

  constructor(registry: Registry, private readonly state: Pick<MeshState, 'workloadByAddress'>) {
    const registers = [registry];
    this.perRequest = new RequestSeries<RequestLabels>(registry, { name: 'istio_requests_total', help: 'Requests handled by the waypoint.' }, [
      { name: 'istio_request_duration_milliseconds', help: 'Time from the request\'s arrival to the end of its response, retries included.', buckets: DURATION_BUCKETS },
      { name: 'istio_request_bytes', help: 'Request sizes (headers and body).', buckets: SIZE_BUCKETS },
      { name: 'istio_response_bytes', help: 'Response sizes (headers and body).', buckets: SIZE_BUCKETS },
    ]);
    this.retries = new Counter({
      name: 'weft_waypoint_retries_total', registers,
      help: 'Retries the waypoint made (result="retried"), and retriable answers it returned as they were because of a limit (result="budget", "cross_hop", "non_idempotent").',
      labelNames: ['destination_service_namespace', 'destination_service_name', 'result'],
    });
  }

  /** istio_requests_total, as the registry reads it. */
  get requests(): RequestSeries<RequestLabels>['counter'] {
    return this.perRequest.counter;
  }

  onRequest(r: RequestRecord): void {
    const labels = requestLabels(r, this.state);
    // A label set seen before is only counted; a new one is also indexed by its workloads.
    if (this.perRequest.add(seriesKey(labels), labels, [r.durationMs, r.requestBytes, r.responseBytes])) this.series.note(labels);
    if (r.attempts > 1 || r.retryRefused) {
      const svc = { destination_service_namespace: labels.destination_service_namespace, destination_service_name: labels.destination_service_name };
      if (r.attempts > 1) this.retries.inc({ ...svc, result: 'retried' }, r.attempts - 1);
      if (r.retryRefused) this.retries.inc({ ...svc, result: r.retryRefused.replace('-', '_') });
    }
  }

  /** Removes the series of workloads deleted from the registry; returns the unsubscribe function. */
  followState(state: MeshState): () => void {
    return sweepGoneWorkloads(state, () => this.series.workloads(), (namespace, name) => {
      for (const labels of this.series.take(workloadKey(namespace, name))) this.perRequest.remove(seriesKey(labels));
    });
  }
}

/** The workloads at both ends of a request, by address: the client's and the endpoint dialed. */
export function requestPeers(r: Pick<RequestRecord, 'sourceAddress' | 'upstreamTarget'>, state: Pick<MeshState, 'workloadByAddress'>): {
  source: WorkloadView | undefined; destination: WorkloadView | undefined;
} {
  return {
    source: r.sourceAddress !== undefined ? state.workloadByAddress(r.sourceAddress) : undefined,
    destination: r.upstreamTarget !== undefined ? state.workloadByAddress(r.upstreamTarget.host) : undefined,
  };
}

/**
 * gRPC's status codes are 0-16; the header is the upstream's to write, so anything else
 * is `invalid` (a peer must not be able to mint label values: each would be a series).
 */
export function grpcStatusLabel(status: string | undefined): string {
  if (status === undefined) return '';
  return /^(?:[0-9]|1[0-6])$/.test(status) ? status : 'invalid';
}

export function requestLabels(r: RequestRecord, state: Pick<MeshState, 'workloadByAddress'>): RequestLabels {
  const { source, destination } = requestPeers(r, state);
  const svc = r.destinationService;
  return {
    reporter: 'waypoint',
    source_workload: source?.record.name ?? UNKNOWN,
    source_workload_namespace: source?.record.namespace ?? UNKNOWN,
    source_principal: r.sourceIdentity ?? UNKNOWN,
    destination_workload: destination?.record.name ?? UNKNOWN,
    destination_workload_namespace: destination?.record.namespace ?? UNKNOWN,
    destination_principal: r.destinationIdentity ?? destination?.identity ?? UNKNOWN,
    destination_service: svc?.hostname ?? (svc ? `${svc.name}.${svc.namespace}` : UNKNOWN),
    destination_service_name: svc?.name ?? UNKNOWN,
    destination_service_namespace: svc?.namespace ?? UNKNOWN,
    request_protocol: r.grpcStatus !== undefined ? 'grpc' : 'http',
    response_code: String(r.status),
    grpc_response_status: grpcStatusLabel(r.grpcStatus),
    response_flags: r.responseFlag,
    connection_security_policy: 'mutual_tls',
  };
}
