import type * as grpc from '@grpc/grpc-js';
import { peerFactsFromTls, type PeerFacts } from './authorize';
import { SA_TOKEN_METADATA } from './client';

/**
 * What the CA reads from a gRPC call besides its message: who the TLS layer says the
 * caller is, the address it calls from (rate limits) and the ServiceAccount token a
 * node sends along with its CSRs.
 */

/** The `Bearer` token of the call's authorization metadata, or '' when there is none. */
export function bearerToken(metadata: grpc.Metadata): string {
  const v = metadata.get(SA_TOKEN_METADATA)[0];
  const m = typeof v === 'string' ? /^Bearer (\S+)$/.exec(v) : null;
  return m ? m[1]! : '';
}

/** The caller's IP address without the port (`1.2.3.4:5` or `[::1]:5` from grpc-js). */
export function peerAddress(call: grpc.ServerUnaryCall<unknown, unknown>): string {
  const peer = call.getPeer();
  return /^\[?(.*?)\]?:\d+$/.exec(peer)?.[1] ?? peer;
}

export function callerFacts(call: grpc.ServerUnaryCall<unknown, unknown>): PeerFacts | undefined {
  // Present only when the peer's chain verified against the root (grpc-js checks `authorized`).
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert?.raw) return undefined;
  return peerFactsFromTls(cert);
}
