/**
 * TrafficPolicy section `spec.loadShedding`: adaptive concurrency limit and priority shedding.
 *
 * STUB (session 18 skeleton): the admission work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface LoadSheddingSpec {}

/** Validates `spec.loadShedding` at `path`; throws FieldError naming the field. */
export function validateLoadShedding(v: unknown, path: string, unknown: UnknownKeys): LoadSheddingSpec {
  new Obj(v, path, [], unknown);
  return {};
}
