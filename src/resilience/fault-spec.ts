/**
 * TrafficPolicy section `spec.faults`: fault injection (delay, abort).
 *
 * STUB (session 18 skeleton): the admission work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface FaultSpec {}

/** Validates `spec.faults` at `path`; throws FieldError naming the field. */
export function validateFaults(v: unknown, path: string, unknown: UnknownKeys): FaultSpec {
  new Obj(v, path, [], unknown);
  return {};
}
