/**
 * STUB (skeleton): the dashboard section of test/e2e/observability.test.ts; its helper replaces it.
 */
import type { Test } from 'tap';
import type { ObservabilityLab } from '../helpers/observability-lab';

export async function section(t: Test, _o: ObservabilityLab): Promise<void> {
  t.pass('dashboard on the lab: not built yet (stub)');
}
