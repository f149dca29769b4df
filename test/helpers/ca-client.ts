/** Shared by the CA's gRPC tests: a client torn down with its test, and what a refused call threw. */
import type { Test } from 'tap';
import type { Registry } from 'prom-client';
import { CaClient } from '../../src/ca/client';
import { isWeftError, type WeftError } from '../../src/lib/errors';
import { caught } from './wait';

/** A CaClient trusting `rootPem`, closed when `t` ends. */
export function newCaClient(t: Test, address: string, rootPem: string, trustDomain: string): CaClient {
  const c = new CaClient({ address, rootPem, trustDomain, serverName: 'localhost' });
  t.teardown(() => c.close());
  return c;
}

/** The WeftError `p` rejects with (anything else is rethrown). */
export async function refusal(p: Promise<unknown>): Promise<WeftError> {
  const err = await caught(() => p);
  if (!isWeftError(err)) throw err;
  return err;
}

/** weft_ca_identity_refusals_total{reason}; NaN when never counted. */
export async function identityRefusals(metrics: Registry, reason: string): Promise<number> {
  const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === 'weft_ca_identity_refusals_total');
  return Number(m?.values.find((v) => v.labels.reason === reason)?.value ?? NaN);
}
