/**
 * What a finished request tells the waypoint's telemetry besides its spans: whether its
 * access-log line is written (telemetry/access-log.ts) and, while someone taps this
 * waypoint, its TapEvent. exchange.ts report() asks both for every request (HTTP/1.1,
 * h2c, WebSocket), so they cost nothing when volume control and the tap are off.
 */
import type { WorkloadView } from '../registry/enrolment';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import type { TapEvent, TapPeer } from '../telemetry/types';
import { requestVerdict } from '../telemetry/verdict';
import { requestPeers } from './metrics';
import type { WorkloadLookup } from './tracing';
import type { RequestRecord } from './types';

/** A request failed for the access log: the waypoint or its upstream did not answer it well. */
function failed(r: RequestRecord): boolean {
  if (r.status === 0 || r.status >= 500) return true;
  const v = requestVerdict(r);
  return v !== 'routed' && v !== 'retried';
}

/** Whether the request's access-log line is written (counted when not). */
export function keepAccessLine(telemetry: ProxyTelemetry, r: RequestRecord, workloads: WorkloadLookup | undefined): boolean {
  const policy = telemetry.accessLog;
  if (!policy.filtering) return true;
  const dst = r.destinationService?.namespace;
  return policy.keep({
    failed: failed(r),
    traceSampled: r.sampled === true,
    destinationNamespace: dst ?? (workloads && r.upstreamTarget ? workloads.workloadByAddress(r.upstreamTarget.host)?.record.namespace : undefined),
    sourceNamespace: () => (workloads && r.sourceAddress !== undefined ? workloads.workloadByAddress(r.sourceAddress)?.record.namespace : undefined),
  });
}

/** The workload's name and namespace onto a TapPeer. */
function named(p: TapPeer, w: WorkloadView | undefined): void {
  if (!w) return;
  p.workload = w.record.name;
  p.namespace = w.record.namespace;
}

/**
 * The request as the tap streams it: path without its query, no header value. Built
 * field by field (no spreads): it runs for every request while someone taps.
 */
export function requestTapEvent(proxy: string, r: RequestRecord, workloads: WorkloadLookup | undefined, now: Date = new Date()): TapEvent {
  const source: TapPeer = {};
  const destination: TapEvent['destination'] = {};
  if (r.sourceAddress !== undefined) source.address = r.sourceAddress;
  if (r.upstreamTarget) destination.address = r.upstreamTarget.host;
  if (workloads) {
    const peers = requestPeers(r, workloads);
    named(source, peers.source);
    named(destination, peers.destination);
  }
  if (r.sourceIdentity) source.identity = r.sourceIdentity;
  if (r.destinationIdentity) destination.identity = r.destinationIdentity;
  const svc = r.destinationService;
  if (svc) destination.service = `${svc.namespace}/${svc.name}`;
  const e: TapEvent = {
    time: now.toISOString(),
    proxy,
    kind: 'request',
    verdict: requestVerdict(r),
    source,
    destination,
    method: r.method,
    authority: r.authority,
    path: r.path,
    status: r.status,
    responseFlag: r.responseFlag,
    durationMs: r.durationMs,
    attempts: r.attempts,
    traceId: r.traceId,
    // Both legs of a waypoint are HBONE: mTLS from the client's ztunnel, mTLS to the endpoint's.
    mtls: true,
  };
  if (r.grpcStatus !== undefined) e.grpcStatus = r.grpcStatus;
  return e;
}

/** Publishes the request to the tap; call only when `telemetry.tap.active`. */
export function tapRequest(telemetry: ProxyTelemetry, r: RequestRecord, workloads: WorkloadLookup | undefined): void {
  telemetry.tap.publish(requestTapEvent(telemetry.proxy, r, workloads));
}
