import { Counter, Histogram, type Registry } from 'prom-client';

/** Outcomes of a CA call: a small fixed set, never error text (cardinality stays bounded). */
export const CA_RESULTS = ['ok', 'unauthenticated', 'permission_denied', 'invalid_argument', 'unavailable', 'internal'] as const;
export type CaResult = (typeof CA_RESULTS)[number];
export type CaMethod = 'CreateCertificate' | 'Join';

export interface CaMetrics {
  requests: Counter<'method' | 'result'>;
  issueSeconds: Histogram<'method'>;
}

export function createCaMetrics(registry: Registry): CaMetrics {
  return {
    requests: new Counter({
      name: 'weft_ca_requests_total',
      help: 'CA requests by method and result',
      labelNames: ['method', 'result'] as const,
      registers: [registry],
    }),
    issueSeconds: new Histogram({
      name: 'weft_ca_issue_duration_seconds',
      help: 'Time from request to signed chain, for issued certificates',
      labelNames: ['method'] as const,
      // Signing is ~1-2 ms; the tail shows queueing behind other requests.
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
  };
}
