/**
 * gRPC status codes and their HTTP equivalents, for answers the waypoint makes itself
 * (fault aborts, rate limits, shedding) to gRPC requests: those get a trailers-only
 * response (HTTP 200 with `grpc-status` in the head), as a gRPC server would send, since
 * gRPC clients read the status from there and treat a bare HTTP 503 as a transport error.
 */

export const GRPC = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
} as const;

/** HTTP status → gRPC status, as gRPC's own mapping (doc/http-grpc-status-mapping.md) reads it. */
export function grpcFromHttp(status: number): number {
  switch (status) {
    case 400: return GRPC.INTERNAL;
    case 401: return GRPC.UNAUTHENTICATED;
    case 403: return GRPC.PERMISSION_DENIED;
    case 404: return GRPC.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC.UNAVAILABLE;
    default: return status >= 200 && status < 300 ? GRPC.OK : GRPC.UNKNOWN;
  }
}

/** gRPC status → HTTP status, google.rpc.Code's documented HTTP mapping, for plain HTTP clients. */
export function httpFromGrpc(code: number): number {
  switch (code) {
    case GRPC.OK: return 200;
    case GRPC.CANCELLED: return 499;
    case GRPC.INVALID_ARGUMENT: case GRPC.FAILED_PRECONDITION: case GRPC.OUT_OF_RANGE: return 400;
    case GRPC.DEADLINE_EXCEEDED: return 504;
    case GRPC.NOT_FOUND: return 404;
    case GRPC.ALREADY_EXISTS: case GRPC.ABORTED: return 409;
    case GRPC.PERMISSION_DENIED: return 403;
    case GRPC.RESOURCE_EXHAUSTED: return 429;
    case GRPC.UNIMPLEMENTED: return 501;
    case GRPC.UNAVAILABLE: return 503;
    case GRPC.UNAUTHENTICATED: return 401;
    default: return 500;
  }
}

/** The head of a trailers-only gRPC answer: HTTP 200, the status and message in it, no body. */
export function grpcTrailersOnly(code: number, message: string): Record<string, string> {
  // grpc-message is percent-encoded (gRPC spec): keep printable ASCII but '%', encode the rest.
  const encoded = message.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
  return { 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encoded };
}
