/**
 * TrafficPolicy section `spec.loadBalancer`: endpoint choice (round robin, least request, EWMA, consistent hash).
 *
 * STUB (session 18 skeleton): the balance work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface LoadBalancerSpec {}

/** Validates `spec.loadBalancer` at `path`; throws FieldError naming the field. */
export function validateLoadBalancer(v: unknown, path: string, unknown: UnknownKeys): LoadBalancerSpec {
  new Obj(v, path, [], unknown);
  return {};
}
