/**
 * The CA's own serving certificate: issued by the signing root for the CA's identity,
 * DNS names and IPs, renewed at half-life (and at once when the root rotates); new
 * connections get the new one, open ones keep theirs.
 */
import { X509Certificate } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { boundedDelay, realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { caIdentity } from './authorize';
import { generateKeyAndCsr, type Issuer } from './issuer';

/**
 * Server credentials that ask for a client certificate without requiring one: Join
 * callers have none yet, CreateCertificate callers must present a node certificate,
 * which the handler checks (grpc-js only exposes a peer certificate that verified
 * against the root). grpc-js' createSsl cannot express "request but do not require".
 */
class OptionalClientCertCredentials extends grpc.ServerCredentials {
  constructor(context: SecureContextOptions) {
    super({ requestCert: true, rejectUnauthorized: false }, context);
  }
  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
  /** Swaps the serving certificate for new connections; existing ones keep theirs. */
  update(context: SecureContextOptions): void {
    this.updateSecureContextOptions(context);
  }
}

export interface ServingCertOptions {
  trustDomain: string;
  dnsNames: string[];
  ipAddresses: string[];
  servingCertTtlMs: number;
}

export class ServingCertificate {
  private credentials: OptionalClientCertCredentials | undefined;
  private renewInMs = 0;
  private active = false;
  private cancelRotation: (() => void) | undefined;

  /** `roots()`: the current signing root and the earlier roots still trusted (they change on rotation). */
  constructor(
    private readonly roots: () => { issuer: Issuer; trustedRoots: string[] },
    private readonly opts: ServingCertOptions,
    private readonly log: Logger,
    private readonly clock: Clock = realClock,
  ) {}

  /** Issues the first certificate: the credentials to bind with. */
  async serverCredentials(): Promise<grpc.ServerCredentials> {
    const serving = await this.context();
    this.credentials = new OptionalClientCertCredentials(serving.context);
    this.renewInMs = serving.renewInMs;
    return this.credentials;
  }

  /** Renews at half-life from now on (once the server is bound). */
  begin(): void {
    this.active = true;
    this.schedule(this.renewInMs);
  }

  /** Re-issues now (a new signing root), then at half-life again. */
  async renewNow(): Promise<void> {
    if (!this.active) return;
    this.cancelRotation?.();
    this.cancelRotation = undefined;
    await this.rotate();
  }

  stop(): void {
    this.active = false;
    this.cancelRotation?.();
    this.cancelRotation = undefined;
  }

  /** Issues the CA's own serving certificate, to be renewed at half-life. */
  private async context(): Promise<{ context: SecureContextOptions; renewInMs: number }> {
    const { issuer, trustedRoots } = this.roots();
    const { keyPem, csrPem } = await generateKeyAndCsr();
    const chain = issuer.signCsr(csrPem, {
      identity: caIdentity(this.opts.trustDomain), ttlMs: this.opts.servingCertTtlMs,
      dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses,
    });
    const leaf = new X509Certificate(chain[0]!);
    return {
      context: { key: keyPem, cert: chain[0], ca: [issuer.rootPem, ...trustedRoots] },
      renewInMs: (Date.parse(leaf.validTo) - Date.now()) / 2,
    };
  }

  private schedule(ms: number): void {
    if (!this.active) return;
    // Two rotations can overlap (a root change while the timed one is issuing); each
    // schedules the next, and only one timer may be left armed, or they multiply.
    this.cancelRotation?.();
    this.cancelRotation = boundedDelay(ms, () => { void this.rotate(); }, this.clock);
  }

  private async rotate(): Promise<void> {
    try {
      const serving = await this.context();
      if (!this.active) return;
      this.credentials?.update(serving.context);
      this.log.info('CA serving certificate renewed');
      this.schedule(serving.renewInMs);
    } catch (err) {
      this.log.error({ err }, 'CA serving certificate renewal failed; retrying in a minute');
      this.schedule(60_000);
    }
  }
}
