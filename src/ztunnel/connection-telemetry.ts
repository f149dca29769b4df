/**
 * What a finished connection tells the ztunnel's telemetry besides its span: whether its
 * `connection complete` line is written (telemetry/access-log.ts) and, while someone taps
 * this ztunnel, its TapEvent. lifecycle.ts end() asks both for every connection, so they
 * cost nothing when volume control and the tap are off.
 */
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import type { TapEvent, TapPeer } from '../telemetry/types';
import { connectionVerdict } from '../telemetry/verdict';
import type { ConnectionDestination, ConnectionSource, TrackedConnection } from './connections';

/** Whether the connection's access-log line is written (counted when not). */
export function keepConnectionLine(telemetry: ProxyTelemetry, c: TrackedConnection, flag: string, traceSampled: boolean): boolean {
  const policy = telemetry.accessLog;
  if (!policy.filtering) return true;
  return policy.keep({
    failed: flag !== '-',
    traceSampled,
    destinationNamespace: c.dst.workload?.record.namespace ?? serviceNamespace(c.dst.service),
    sourceNamespace: () => c.src.workload?.record.namespace,
  });
}

function serviceNamespace(service: string | undefined): string | undefined {
  return service === undefined ? undefined : service.slice(0, service.indexOf('/'));
}

function peer(p: ConnectionSource | ConnectionDestination): TapPeer & { service?: string } {
  const out: TapPeer & { service?: string } = { address: p.ip };
  if (p.workload) {
    out.workload = p.workload.record.name;
    out.namespace = p.workload.record.namespace;
  }
  if (p.identity) out.identity = p.identity;
  return out;
}

/** The connection as the tap streams it. */
export function connectionTapEvent(proxy: string, c: TrackedConnection, flag: string, now: number = Date.now()): TapEvent {
  const destination = peer(c.dst);
  if (c.dst.service) destination.service = c.dst.service;
  return {
    time: new Date(now).toISOString(),
    proxy,
    kind: 'connection',
    verdict: connectionVerdict(flag),
    source: peer(c.src),
    destination,
    responseFlag: flag,
    durationMs: now - c.startedAt,
    direction: c.direction,
    bytesSent: c.counters.sent,
    bytesReceived: c.counters.received,
    // As connection_security_policy: the connection rides (or arrived by) an HBONE tunnel.
    mtls: c.protocol === 'HBONE',
    // Every connection has a trace (lifecycle.ts begin()), sampled or not.
    traceId: c.traceId,
  };
}

/** Publishes the connection to the tap; call only when `telemetry.tap.active`. */
export function tapConnection(telemetry: ProxyTelemetry, c: TrackedConnection, flag: string): void {
  telemetry.tap.publish(connectionTapEvent(telemetry.proxy, c, flag));
}
