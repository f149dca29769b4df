import { Counter, Histogram, type Registry } from 'prom-client';
import { SA_JOIN_REFUSALS, type SaJoinRefusal } from './sa-token-join';

/** Outcomes of a CA call: a small fixed set, never error text (cardinality stays bounded). */
export const CA_RESULTS = ['ok', 'unauthenticated', 'permission_denied', 'invalid_argument', 'unavailable', 'resource_exhausted', 'internal'] as const;
export type CaResult = (typeof CA_RESULTS)[number];
export type CaMethod = 'CreateCertificate' | 'Join';

export interface CaMetrics {
  requests: Counter<'method' | 'result'>;
  issueSeconds: Histogram<'method'>;
  /** ServiceAccount-token joins refused, by the check that refused them (SA_JOIN_REFUSALS). */
  saJoinRefusals: Counter<'reason'>;
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
    saJoinRefusals: (() => {
      const c = new Counter({
        name: 'weft_ca_sa_join_refusals_total',
        help: 'Node joins and node CSRs refused by the ServiceAccount token check (TokenReview, pod, node), by reason',
        labelNames: ['reason'] as const,
        registers: [registry],
      });
      // Every reason shows from the start, so a rate() sees the first refusal.
      for (const reason of SA_JOIN_REFUSALS) c.inc({ reason: reason satisfies SaJoinRefusal }, 0);
      return c;
    })(),
  };
}
