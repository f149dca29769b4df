/**
 * TrafficPolicy section `spec.connectionPool`: connection pools and bulkheads (overflow 503 UO).
 *
 * STUB (session 18 skeleton): the outlier-and-pool work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ConnectionPoolSpec {}

/** Validates `spec.connectionPool` at `path`; throws FieldError naming the field. */
export function validateConnectionPool(v: unknown, path: string, unknown: UnknownKeys): ConnectionPoolSpec {
  new Obj(v, path, [], unknown);
  return {};
}
