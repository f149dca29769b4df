/**
 * TrafficPolicy section `spec.connectionPool`: bulkheads for one Service at the
 * waypoint (Istio's DestinationRule connectionPool, Envoy's circuit breakers), so a
 * saturated Service refuses its own excess fast instead of queueing without bound and
 * slowing every other Service behind the same waypoint.
 *
 *   connectionPool:
 *     maxConcurrentRequests: 100     # requests in flight to the Service at once (all its endpoints)
 *     maxPendingRequests: 10         # requests waiting for one of those slots; beyond: 503 `UO` at once
 *     maxConnections: 50             # HTTP/1.1 connections held to each endpoint (each carries one request)
 *     maxRequestsPerConnection: 0    # requests per upstream connection before it is replaced; 0 = no limit
 *
 * Every field absent means no limit (Istio's defaults are effectively unlimited too):
 * only the limits written are enforced. Runtime: pool.ts (the Service's slots and
 * queue) and the upstream clients (src/waypoint/upstream-http1.ts, upstream-h2.ts).
 */
import { FieldError, Obj, join, type UnknownKeys } from '../registry/checks';
import { intField } from './spec-fields';

/** Every limit is optional: absent means none (the spec is stored as JSON, so no Infinity). */
export interface ConnectionPoolSpec {
  /** ≥ 1. */
  maxConcurrentRequests?: number;
  /** ≥ 0 (0: nothing waits, overflow is refused at once); only with maxConcurrentRequests. */
  maxPendingRequests?: number;
  /** ≥ 1 per endpoint. */
  maxConnections?: number;
  /** ≥ 1 (written as 0 or left out: no limit). */
  maxRequestsPerConnection?: number;
}

const MAX = 1_000_000;

/** Validates `spec.connectionPool` at `path`; throws FieldError naming the field. */
export function validateConnectionPool(v: unknown, path: string, unknown: UnknownKeys): ConnectionPoolSpec {
  const o = new Obj(v, path, ['maxConcurrentRequests', 'maxPendingRequests', 'maxConnections', 'maxRequestsPerConnection'], unknown);
  const out: ConnectionPoolSpec = {};
  if (o.has('maxConcurrentRequests')) out.maxConcurrentRequests = intField(o, 'maxConcurrentRequests', 1, MAX, 0);
  if (o.has('maxPendingRequests')) out.maxPendingRequests = intField(o, 'maxPendingRequests', 0, MAX, 0);
  // Requests wait only for a maxConcurrentRequests slot (pool.ts): alone, the queue bound
  // would never be reached and its excess never refused. Say so, rather than look in force.
  if (out.maxPendingRequests !== undefined && out.maxConcurrentRequests === undefined) {
    throw new FieldError(join(path, 'maxPendingRequests'), 'applies only with maxConcurrentRequests (requests wait for one of its slots); add maxConcurrentRequests, or remove maxPendingRequests');
  }
  if (o.has('maxConnections')) out.maxConnections = intField(o, 'maxConnections', 1, MAX, 0);
  const perConnection = intField(o, 'maxRequestsPerConnection', 0, MAX, 0);
  if (perConnection > 0) out.maxRequestsPerConnection = perConnection;
  return out;
}
