import type { JoinCredential, NodeCredentials } from './client';

/** Certificate states and the shapes the certificate manager hands out. */

export enum CertState {
  /** No certificate yet; the first fetch is under way. */
  Pending = 'Pending',
  /** A valid certificate; refresh scheduled at half-life. */
  Ready = 'Ready',
  /** Still valid, being replaced (or retrying after failed replacements). */
  Refreshing = 'Refreshing',
  /** The certificate expired before a replacement arrived; retrying. */
  Expired = 'Expired',
  /** Never obtained one; retrying with backoff. */
  Failed = 'Failed',
}

/** Legal moves; anything else is a bug and throws. */
export const TRANSITIONS: Record<CertState, readonly CertState[]> = {
  [CertState.Pending]: [CertState.Ready, CertState.Failed],
  [CertState.Ready]: [CertState.Refreshing, CertState.Expired],
  [CertState.Refreshing]: [CertState.Ready, CertState.Expired],
  [CertState.Expired]: [CertState.Ready],
  [CertState.Failed]: [CertState.Ready],
};

export interface WorkloadCert {
  identity: string;
  keyPem: string;
  /** Leaf first, root last. */
  certChainPem: string[];
  notBefore: Date;
  notAfter: Date;
  serial: string;
}

/** What the manager needs from the CA client (CaClient implements it). */
export interface CertificateSource {
  /** The trust anchors (one root, or a bundle during a rotation); may change at run time. */
  readonly rootPem: string;
  readonly trustDomain: string;
  readonly nodeCredentials: NodeCredentials | undefined;
  setNodeCredentials(creds: NodeCredentials): void;
  /** A string is a join token. */
  join(nodeName: string, credential: string | JoinCredential): Promise<NodeCredentials>;
  /** `saToken`: the node's current ServiceAccount token, which a TokenReview CA re-checks on every CSR. */
  createCertificate(csrPem: string, ttlSec: number, impersonatedIdentity?: string, opts?: { saToken?: string }): Promise<string[]>;
  /**
   * A single-identity caller's own certificate (a waypoint): no client certificate, the
   * bearer credential in the call metadata, the identity named in the CSR. Optional: only
   * the single-identity manager calls it.
   */
  createOwnCertificate?(csrPem: string, ttlSec: number, bearerToken: string): Promise<string[]>;
  /**
   * Resolves true once a connection to the CA is up (a cheap probe: no request), false
   * after `timeoutMs`. Optional: without it, only a successful call shows the CA is back.
   */
  waitReachable?(timeoutMs: number): Promise<boolean>;
}

/** One row of the operator's certificate table (istioctl ztunnel-config certificates). */
export interface CertStatus {
  identity: string;
  type: 'node' | 'workload';
  state: CertState;
  serial?: string;
  notBefore?: Date;
  notAfter?: Date;
  failures: number;
  lastError?: string;
}

/** Someone waiting in get() for a certificate. */
export interface CertWaiter {
  resolve(cert: WorkloadCert): void;
  reject(err: Error): void;
}

/** One identity's certificate as the manager keeps it. */
export interface CertEntry {
  identity: string;
  type: 'node' | 'workload';
  state: CertState;
  cert?: WorkloadCert;
  /** Local receive time: half-life counts from here, since notBefore is backdated. */
  receivedAt: number;
  failures: number;
  lastError?: Error;
  fetching: boolean;
  /** Key + CSR of the attempt in progress, reused across retries so an outage costs no key generation. */
  pendingKey?: { keyPem: string; csrPem: string };
  /** Cancels the next fetch (half-life refresh or backoff retry), when one is scheduled. */
  cancelNext?: () => void;
  cancelExpiry?: () => void;
  waiters: Set<CertWaiter>;
}
