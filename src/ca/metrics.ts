import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { isWeftError } from '../lib/errors';
import { CertState, type CertEntry } from './cert-state';
import { SA_JOIN_REFUSALS, type SaJoinRefusal } from './sa-token-join';
import { IDENTITY_REFUSALS } from './identity-grant';

/** The CA server's metrics (createCaMetrics) and the node's certificate metrics (createCertMetrics). */

/** Outcomes of a CA call: a small fixed set, never error text (cardinality stays bounded). */
export const CA_RESULTS = ['ok', 'unauthenticated', 'permission_denied', 'invalid_argument', 'unavailable', 'resource_exhausted', 'internal'] as const;
export type CaResult = (typeof CA_RESULTS)[number];
export type CaMethod = 'CreateCertificate' | 'Join';

export interface CaMetrics {
  requests: Counter<'method' | 'result'>;
  issueSeconds: Histogram<'method'>;
  /** ServiceAccount-token joins refused, by the check that refused them (SA_JOIN_REFUSALS). */
  saJoinRefusals: Counter<'reason'>;
  /** Single-identity callers (waypoints) refused, by the check that refused them (IDENTITY_REFUSALS). */
  identityRefusals: Counter<'reason'>;
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
    identityRefusals: (() => {
      const c = new Counter({
        name: 'weft_ca_identity_refusals_total',
        help: 'Certificate requests of single-identity callers (waypoints) refused by the credential or identity check, by reason',
        labelNames: ['reason'] as const,
        registers: [registry],
      });
      for (const reason of IDENTITY_REFUSALS) c.inc({ reason }, 0);
      return c;
    })(),
  };
}

/** What a certificate request to the CA came to: a small fixed set, never error text. */
export type CertFetchResult = 'ok' | 'refused' | 'unreachable' | 'error';

export function certFetchResult(err: unknown): CertFetchResult {
  if (!isWeftError(err)) return 'error';
  if (err.code === 'WEFT_CA_UNREACHABLE') return 'unreachable';
  return err.code.startsWith('WEFT_CA_') || err.code === 'WEFT_REGISTRY_UNREACHABLE' ? 'refused' : 'error';
}

export interface CertMetrics {
  /** Counts a certificate request to the CA that got a certificate. */
  issued(type: CertEntry['type']): void;
  /** Counts a certificate request to the CA that failed with `err`. */
  failed(type: CertEntry['type'], err: unknown): void;
}

/**
 * The node's certificate metrics on `registry`: expiry per identity and counts per state
 * (read from `entries` at scrape time) and requests by result.
 */
export function createCertMetrics(registry: Registry, entries: () => Iterable<CertEntry>, now: () => number): CertMetrics {
  new Gauge({
    name: 'weft_cert_expiry_seconds',
    help: 'Seconds until the certificate of an identity expires (negative once expired)',
    labelNames: ['identity'] as const,
    registers: [registry],
    // Across `ztunnel --workers` (each holds the node's certificates): the soonest expiry.
    aggregator: 'min',
    collect() {
      this.reset();
      for (const e of entries()) {
        if (e.cert) this.set({ identity: e.identity }, (e.cert.notAfter.getTime() - now()) / 1000);
      }
    },
  });
  new Gauge({
    name: 'weft_certs',
    help: 'Certificates held by this node, by state',
    labelNames: ['state'] as const,
    registers: [registry],
    // Across `ztunnel --workers` (each holds the same certificates): once, not once per worker.
    aggregator: 'max',
    collect() {
      this.reset();
      for (const s of Object.values(CertState)) this.set({ state: s }, 0);
      for (const e of entries()) this.inc({ state: e.state });
    },
  });
  const fetches = new Counter({
    name: 'weft_cert_fetches_total',
    help: 'Certificate requests to the CA by certificate type and result',
    labelNames: ['type', 'result'] as const,
    registers: [registry],
  });
  return {
    issued: (type) => fetches.inc({ type, result: 'ok' }),
    failed: (type, err) => fetches.inc({ type, result: certFetchResult(err) }),
  };
}
