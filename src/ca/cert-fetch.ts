import { WeftError, isWeftError } from '../lib/errors';
import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { verifyIssuedChain, type NodeCredentials } from './client';
import type { CertificateSource, WorkloadCert } from './cert-state';
import { currentBearerToken, currentJoinCredential, type BearerCredentialConfig, type JoinCredentialConfig } from './join-credential';

/**
 * Getting one certificate from the CA, for the certificate manager (which decides when):
 * a workload certificate by CSR, the node certificate by renewal while the current one
 * is valid or else by (re)joining, each issued chain verified against the trust anchors.
 */

export interface CertFetcherOptions {
  client: CertificateSource;
  nodeName: string;
  /** Lifetime to ask for workload certificates, in seconds; 0 takes the CA's default. */
  ttlSec: number;
  /** How the node (re)joins: join token or ServiceAccount token file. */
  join: JoinCredentialConfig;
  /** Single-identity mode: workload certificates come with this bearer credential, without a node certificate. */
  own?: BearerCredentialConfig | undefined;
  clock: Clock;
  logger: Logger;
}

export type KeyAndCsr = { keyPem: string; csrPem: string };

export class CertFetcher {
  constructor(private readonly opts: CertFetcherOptions) {}

  /** The node certificate the client holds (from a join), if it verifies; an unusable one is logged. */
  clientNodeCert(identity: string): WorkloadCert | undefined {
    const creds = this.opts.client.nodeCredentials;
    if (!creds) return undefined;
    try {
      const leaf = verifyIssuedChain(creds.certChainPem, this.opts.client.rootPem, identity, this.opts.clock.now());
      return { identity, keyPem: creds.keyPem, certChainPem: creds.certChainPem, ...leaf };
    } catch (err) {
      this.opts.logger.warn({ err }, 'the client\'s node certificate is unusable; joining again');
      return undefined;
    }
  }

  async workload(identity: string, { keyPem, csrPem }: KeyAndCsr): Promise<WorkloadCert> {
    const { client, own } = this.opts;
    let chain: string[];
    if (own) {
      if (!client.createOwnCertificate) throw new Error('the CA client cannot request a certificate with a bearer credential');
      chain = await client.createOwnCertificate(csrPem, this.opts.ttlSec, await currentBearerToken(own));
    } else {
      chain = await client.createCertificate(csrPem, this.opts.ttlSec, identity, await this.csrCredential());
    }
    return { identity, keyPem, certChainPem: chain, ...verifyIssuedChain(chain, client.rootPem, identity, this.opts.clock.now()) };
  }

  /**
   * Renews with the current node certificate while it is valid and the CA has not
   * refused it, else (re)joins with the configured credential.
   */
  async node(identity: string, key: KeyAndCsr, current: { cert?: WorkloadCert; lastError?: Error }): Promise<WorkloadCert> {
    const { client, clock, nodeName } = this.opts;
    // Someone may have joined through the client directly: adopt that certificate.
    const external = client.nodeCredentials;
    if (external && external.certChainPem[0] !== current.cert?.certChainPem[0]) {
      const adopted = this.clientNodeCert(identity);
      if (adopted) return adopted;
    }
    const valid = current.cert && current.cert.notAfter.getTime() > clock.now();
    const rejected = isWeftError(current.lastError, 'WEFT_CA_UNAUTHENTICATED');
    let creds: NodeCredentials;
    if (valid && !rejected) {
      creds = { keyPem: key.keyPem, certChainPem: await client.createCertificate(key.csrPem, 0, undefined, await this.csrCredential()) };
    } else {
      const credential = await currentJoinCredential(this.opts.join);
      if (!credential) {
        throw new WeftError('WEFT_CA_UNAUTHENTICATED',
          `node ${nodeName} has no valid node certificate and no join credential to get one; restart the ztunnel with --join-sa-token-file (Kubernetes) or a fresh token from \`weft ca token --node ${nodeName}\``);
      }
      creds = await client.join(nodeName, credential);
    }
    const leaf = verifyIssuedChain(creds.certChainPem, client.rootPem, identity, clock.now());
    client.setNodeCredentials(creds);
    return { identity, keyPem: creds.keyPem, certChainPem: creds.certChainPem, ...leaf };
  }

  /**
   * The ServiceAccount token to send with a CSR, when the node joins by one (a
   * TokenReview CA re-checks it on every CSR); re-read each time, the kubelet rotates it.
   * currentJoinCredential alone decides which credential is configured (a join token wins).
   */
  private async csrCredential(): Promise<{ saToken?: string }> {
    const cred = await currentJoinCredential(this.opts.join);
    return cred?.kind === 'serviceAccountToken' ? { saToken: cred.token } : {};
  }
}
