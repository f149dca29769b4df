/**
 * A CertSource backed directly by the real Issuer, for in-process tests and
 * benchmarks: real keys, real X.509, real chains — only the CA's network hop and
 * rotation schedule are left out. Not used in production.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../../ca/issuer';
import { WeftError } from '../../lib/errors';
import type { CertSource, WorkloadCert } from '../../hbone/contracts';

export class IssuerCertSource extends EventEmitter implements CertSource {
  private readonly certs = new Map<string, WorkloadCert>();
  private readonly inflight = new Map<string, Promise<WorkloadCert>>();
  /** Identities this source refuses to issue (to test WEFT_CERT_UNAVAILABLE paths). */
  readonly refuse = new Set<string>();

  constructor(readonly issuer: Issuer, readonly rootsPem: string, private readonly ttlMs = 3_600_000) {
    super();
  }

  /** A fresh root CA for `trustDomain` and a source issuing from it. */
  static async create(trustDomain = 'cluster.local'): Promise<IssuerCertSource> {
    const root = await generateRootCa({ trustDomain });
    return new IssuerCertSource(new Issuer(root, { trustDomain }), root.certPem);
  }

  /** Another source sharing this one's CA (a second node's certificate manager). */
  sibling(): IssuerCertSource {
    return new IssuerCertSource(this.issuer, this.rootsPem, this.ttlMs);
  }

  current(identity: string): WorkloadCert | undefined {
    const c = this.certs.get(identity);
    return c && c.notAfter.getTime() > Date.now() ? c : undefined;
  }

  get(identity: string): Promise<WorkloadCert> {
    const c = this.current(identity);
    if (c) return Promise.resolve(c);
    let p = this.inflight.get(identity);
    if (!p) {
      p = this.issue(identity).finally(() => this.inflight.delete(identity));
      this.inflight.set(identity, p);
    }
    return p;
  }

  /** Issues a new certificate for `identity` and emits 'updated'. */
  async rotate(identity: string): Promise<WorkloadCert> {
    const c = await this.issue(identity);
    this.emit('updated', identity);
    return c;
  }

  private async issue(identity: string): Promise<WorkloadCert> {
    if (this.refuse.has(identity)) {
      throw new WeftError('WEFT_CERT_UNAVAILABLE', `test source refuses to issue ${identity}`);
    }
    const { keyPem, csrPem } = await generateKeyAndCsr();
    const chain = this.issuer.signCsr(csrPem, { identity, ttlMs: this.ttlMs });
    const x = new X509Certificate(chain[0]!);
    const cert: WorkloadCert = {
      identity, keyPem, certChainPem: chain,
      notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo), serial: x.serialNumber,
    };
    this.certs.set(identity, cert);
    return cert;
  }
}
