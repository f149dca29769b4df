/**
 * TrafficPolicy section `spec.outlierDetection`: outlier detection and ejection.
 *
 * STUB (session 18 skeleton): the outlier-and-pool work replaces this file with the section's
 * validated type (defaults filled in), its validator and its pure logic (or imports of
 * it). spec.ts composes every section's validator; keep this file's two exports.
 */
import { Obj, type UnknownKeys } from '../registry/checks';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface OutlierDetectionSpec {}

/** Validates `spec.outlierDetection` at `path`; throws FieldError naming the field. */
export function validateOutlierDetection(v: unknown, path: string, unknown: UnknownKeys): OutlierDetectionSpec {
  new Obj(v, path, [], unknown);
  return {};
}
