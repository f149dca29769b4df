/**
 * What an HBONE server believes of a CONNECT request a peer sent: its target, and the
 * client address it claims in `forwarded`. Both are untrusted input from another
 * node; the checks are pure so they are tested without sockets.
 */
import type * as http2 from 'node:http2';
import type { WorkloadView } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import { parseForwardedFor, parseHostPort, type HostPort } from '../lib/address';

/**
 * Longest `:authority` accepted. `[ipv6]:port` is at most 47 characters; anything
 * longer is not an address and is refused before it reaches a log line in full.
 */
export const MAX_AUTHORITY_LENGTH = 64;

/** Longest `forwarded` header read; the one `for=` we need fits in ~60 characters. */
export const MAX_FORWARDED_LENGTH = 256;

export type ConnectTarget = { ok: true; target: HostPort } | { ok: false; status: 400; reason: string };

/** The CONNECT target, or why the request is refused (400). */
export function connectTarget(headers: http2.IncomingHttpHeaders): ConnectTarget {
  const method = headers[':method'];
  if (method !== 'CONNECT') return { ok: false, status: 400, reason: `method ${String(method)} is not CONNECT` };
  const authority = headers[':authority'];
  if (typeof authority === 'string' && authority.length > MAX_AUTHORITY_LENGTH) {
    return { ok: false, status: 400, reason: `:authority is ${authority.length} characters long; an HBONE authority is <ip>:<port> (at most ${MAX_AUTHORITY_LENGTH})` };
  }
  const target = parseHostPort(authority);
  if (!target) return { ok: false, status: 400, reason: `:authority ${JSON.stringify(authority)} is not <ip>:<port>` };
  return { ok: true, target };
}

/** Why a `forwarded: for=` address was not believed (a metric label: fixed set). */
export type ForwardedIgnored = 'malformed' | 'unknown_workload' | 'other_identity';

export interface ClientAddress {
  ip: string;
  port: number;
  /** Set when the peer sent a `forwarded` address that was not believed. */
  ignored?: ForwardedIgnored;
  /** The workload at a believed `forwarded` address (looked up to believe it). */
  workload?: WorkloadView;
}

/**
 * The client address of a stream. `forwarded: for=` is believed only when it is the
 * address of a workload whose identity is the one the peer authenticated with: a
 * peer may speak for its own workloads, never claim another workload's address
 * (which would let it pass `sourceIps` rules written for that workload). Otherwise
 * the peer's own socket address is the source.
 *
 * `forwardsFor` widens that for a proxy that legitimately forwards for other
 * identities (a waypoint bound to the destination, decided by the caller — see
 * src/ztunnel/waypoint-peer.ts): then any address of a registry workload is believed.
 */
export function clientAddress(
  state: Pick<MeshState, 'workloadByAddress'>, forwarded: string | string[] | undefined, peerIdentity: string, peerAddr: HostPort | undefined,
  forwardsFor?: () => boolean,
): ClientAddress {
  const fallback: ClientAddress = { ip: peerAddr?.ip ?? '', port: peerAddr?.port ?? 0 };
  if (forwarded === undefined) return fallback;
  const text = Array.isArray(forwarded) ? forwarded[0] : forwarded;
  const fwd = text !== undefined && text.length <= MAX_FORWARDED_LENGTH ? parseForwardedFor(text) : undefined;
  if (!fwd) return { ...fallback, ignored: 'malformed' };
  const w = state.workloadByAddress(fwd.ip);
  if (!w) return { ...fallback, ignored: 'unknown_workload' };
  // Asked only now: finding a bound waypoint costs a registry scan, an own address a comparison.
  if (w.identity !== peerIdentity && !forwardsFor?.()) return { ...fallback, ignored: 'other_identity' };
  return { ip: fwd.ip, port: fwd.port ?? 0, workload: w };
}

/** Answers a CONNECT with `status` and no body (a refusal), once. */
export function respond(stream: http2.ServerHttp2Stream, status: number): void {
  if (stream.closed || stream.destroyed || stream.headersSent) return;
  stream.respond({ ':status': status }, { endStream: true });
  // Discard anything the client already sent; the stream ends once it is read.
  stream.resume();
}
