/**
 * TrafficPolicy section `spec.retry`: retries with backoff, budget and the cross-hop cap.
 *
 * STUB (session 18 skeleton): the retry work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface RetrySpec {}

/** Validates `spec.retry` at `path`; throws FieldError naming the field. */
export function validateRetry(v: unknown, path: string, unknown: UnknownKeys): RetrySpec {
  new Obj(v, path, [], unknown);
  return {};
}
