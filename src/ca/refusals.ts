import * as grpc from '@grpc/grpc-js';
import { isWeftError, type ErrorCode } from '../lib/errors';
import { identityRefusalReason } from './identity-caller';
import type { CaResult } from './metrics';
import { SA_JOIN_REFUSALS, type SaJoinRefusal } from './sa-token-join';

/**
 * How the CA's refusals go on the wire and into the metrics: the gRPC status and
 * result label of each error code, and which refusal counter (node ServiceAccount
 * checks, or single-identity callers) a refusal's reason belongs to.
 */

/**
 * gRPC status and metric result per code; a code not listed is answered INTERNAL: a bug,
 * or a fault of the CA itself that is not the caller's (WEFT_CA_SIGN_FAILED, logged with its cause).
 */
export const STATUS_FOR: Partial<Record<ErrorCode, [grpc.status, CaResult]>> = {
  WEFT_CA_UNAUTHENTICATED: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_JOIN_TOKEN_INVALID: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_PERMISSION_DENIED: [grpc.status.PERMISSION_DENIED, 'permission_denied'],
  WEFT_CA_SA_TOKEN_INVALID: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_SA_JOIN_DISABLED: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_SA_TOKEN_DENIED: [grpc.status.PERMISSION_DENIED, 'permission_denied'],
  WEFT_CA_CSR_INVALID: [grpc.status.INVALID_ARGUMENT, 'invalid_argument'],
  WEFT_CA_TTL_INVALID: [grpc.status.INVALID_ARGUMENT, 'invalid_argument'],
  WEFT_CA_CSR_KEY_WEAK: [grpc.status.INVALID_ARGUMENT, 'invalid_argument'],
  WEFT_CA_RATE_LIMITED: [grpc.status.RESOURCE_EXHAUSTED, 'resource_exhausted'],
  WEFT_CA_JOIN_TOKEN_DISABLED: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_IDENTITY_TOKEN_INVALID: [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
  WEFT_CA_IDENTITY_DENIED: [grpc.status.PERMISSION_DENIED, 'permission_denied'],
  WEFT_REGISTRY_UNREACHABLE: [grpc.status.UNAVAILABLE, 'unavailable'],
  // The CA could not ask the Kubernetes API about a ServiceAccount token: the node retries.
  WEFT_K8S_UNREACHABLE: [grpc.status.UNAVAILABLE, 'unavailable'],
  WEFT_K8S_FORBIDDEN: [grpc.status.UNAVAILABLE, 'unavailable'],
  WEFT_K8S_REQUEST_FAILED: [grpc.status.UNAVAILABLE, 'unavailable'],
};

/** The counter and reason a refusal is counted under, or undefined when no check refused (e.g. a bad CSR). */
export function refusalReason(err: unknown, singleIdentity: boolean): { of: 'identity' | 'saJoin'; reason: string } | undefined {
  // A waypoint's refusals (and a node's mixed credentials) count apart from the node checks'.
  if (singleIdentity || (isWeftError(err) && err.code.startsWith('WEFT_CA_IDENTITY_'))) {
    const reason = identityRefusalReason(err);
    return reason ? { of: 'identity', reason } : undefined;
  }
  const reason = saJoinReason(err);
  return reason ? { of: 'saJoin', reason } : undefined;
}

/** The token check that refused a Join, or undefined when the token was not the problem (e.g. a bad CSR). */
function saJoinReason(err: unknown): SaJoinRefusal | undefined {
  const reason = isWeftError(err) ? err.details?.reason : undefined;
  return (SA_JOIN_REFUSALS as readonly unknown[]).includes(reason) ? reason as SaJoinRefusal : undefined;
}
