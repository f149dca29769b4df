import type { Registry } from 'prom-client';
import { WeftError } from '../lib/errors';
import { parseIdentity } from '../lib/identity';
import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { CertificateManager } from './cert-manager';
import type { CertificateSource } from './cert-state';

/**
 * The certificate source of a single-identity process (a waypoint): the node's
 * CertificateManager in its single-identity mode, so rotation at half-life, backoff
 * with jitter, the state machine, expiry and metrics are the node's, not a second copy.
 * It holds exactly one certificate, for `identity`, which it requests without any node
 * credential: no client certificate, its bearer token in the call metadata (re-read
 * from `tokenFile` at every request: the kubelet rotates a projected token), and a CSR
 * naming the identity. It offers the interface the HBONE pool and server take
 * (`CertSource`: get, current, rootsPem, 'updated'); any other identity is refused.
 */
export interface IdentityCertSourceOptions {
  /** The CA client (CaClient); needs createOwnCertificate. Closed by the caller. */
  client: CertificateSource;
  /** spiffe://<td>/ns/<ns>/sa/<sa>: the one identity, in the client's trust domain. */
  identity: string;
  /** Lab: the identity token from createIdentityToken / `weft ca identity-token`. */
  token?: string;
  /** Cluster: the path of the pod's projected ServiceAccount token (audience weft-ca). */
  tokenFile?: string;
  /** The flag that named `tokenFile`, for error messages. */
  tokenFileFlag?: string;
  logger: Logger;
  /** The process's metrics registry (weft_cert_* as on the node). */
  metrics: Registry;
  clock?: Clock;
  /** Lifetime to ask for, in seconds; 0 (default) takes the CA's default. */
  ttlSec?: number;
  /** How long get() waits for the certificate before WEFT_CERT_UNAVAILABLE (default 10 s). */
  getTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

/** Starts fetching at once; stop() it on shutdown. */
export function identityCertSource(opts: IdentityCertSourceOptions): CertificateManager {
  const id = parseIdentity(opts.identity);
  if (!id) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid identity ${JSON.stringify(opts.identity)}: expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  if (id.trustDomain !== opts.client.trustDomain) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid identity ${opts.identity}: its trust domain is not the CA client's ${opts.client.trustDomain}; check --trust-domain`);
  }
  if (Boolean(opts.token) === Boolean(opts.tokenFile)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid CA credential for ${opts.identity}: give exactly one of an identity token (lab) or a ServiceAccount token file (cluster), got ${opts.token ? 'both' : 'neither'}`);
  }
  if (!opts.client.createOwnCertificate) {
    throw new WeftError('WEFT_CONFIG_INVALID', 'the CA client cannot request a certificate with a bearer credential; use CaClient');
  }
  return new CertificateManager({
    client: opts.client, nodeName: `${id.namespace}/${id.serviceAccount}`, logger: opts.logger, metrics: opts.metrics,
    own: {
      identity: opts.identity,
      credential: opts.token ? { token: opts.token } : { tokenFile: opts.tokenFile!, ...(opts.tokenFileFlag ? { field: opts.tokenFileFlag } : {}) },
    },
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.ttlSec !== undefined ? { ttlSec: opts.ttlSec } : {}),
    ...(opts.getTimeoutMs !== undefined ? { getTimeoutMs: opts.getTimeoutMs } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
  });
}
