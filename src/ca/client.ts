import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { WeftError, ERROR_CATALOGUE, type ErrorCode } from '../lib/errors';
import { nodeIdentity } from './authorize';
import { generateKeyAndCsr } from './issuer';
import { issuingRoot, parseTrustBundle } from './trust-bundle';
import {
  impersonationMetadata, services,
  type CertificateRequest, type CertificateResponse, type JoinRequest, type JoinResponse,
} from './proto';

/**
 * The node side of the CA protocol: Join (server-side TLS only, with a join token)
 * and CreateCertificate (mutual TLS with the node certificate). The CA is trusted
 * only through the mesh root and must present `serverName` (a DNS name or IP SAN).
 */
export interface CaClientOptions {
  /** host:port of the CA, e.g. 198.18.0.1:15012. */
  address: string;
  /** The mesh's SPIFFE trust domain (the node identity is spiffe://<td>/ns/weft-system/sa/ztunnel). */
  trustDomain: string;
  /**
   * The mesh trust anchors (PEM: one root, or during a rotation several) the CA's
   * serving certificate and issued chains must chain to. Replace with setRootPem().
   */
  rootPem: string;
  /** DNS name or IP the CA's serving certificate must carry; defaults to the host of `address`. */
  serverName?: string;
  /** Deadline per call (default 10 s). */
  timeoutMs?: number;
}

/** A private key and the chain the CA issued for it, leaf first, root last. */
export interface NodeCredentials {
  keyPem: string;
  certChainPem: string[];
}

/**
 * What a node proves itself with when it joins: a Weft join token (`weft ca token`),
 * or the projected Kubernetes ServiceAccount token of its ztunnel pod.
 */
export type JoinCredential =
  | { kind: 'joinToken'; token: string }
  | { kind: 'serviceAccountToken'; token: string };

/** What an issued chain says about its leaf, after verification. */
export interface VerifiedLeaf {
  notBefore: Date;
  notAfter: Date;
  serial: string;
}

/** SNI sent when the CA is addressed by IP; it is not used for verification. */
const CA_SNI = 'weft-ca';

type UnaryMethod<Req, Res> = (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => void;
interface CertificateServiceClient extends grpc.Client {
  CreateCertificate(req: CertificateRequest, metadata: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CertificateResponse) => void): void;
}

/** gRPC metadata key of the node's ServiceAccount token on CreateCertificate (`Bearer <token>`). */
export const SA_TOKEN_METADATA = 'authorization';
interface BootstrapClient extends grpc.Client {
  Join: UnaryMethod<JoinRequest, JoinResponse>;
}

/**
 * Checks a chain from the CA: the leaf verifies against one of our trust anchors (not
 * the root the CA sent along), is in its validity window, and carries exactly `identity`.
 */
export function verifyIssuedChain(chain: string[], rootPem: string, identity: string, now = Date.now()): VerifiedLeaf {
  if (!Array.isArray(chain) || chain.length === 0) {
    throw new WeftError('WEFT_CERT_UNAVAILABLE', 'the CA returned an empty certificate chain; check the CA log');
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]!);
  } catch (err) {
    throw new WeftError('WEFT_CERT_UNAVAILABLE', 'the CA returned a leaf that is not a PEM certificate; check the CA log', { cause: err });
  }
  if (!issuingRoot(leaf, parseTrustBundle(rootPem, 'the trust anchors', now))) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      'the certificate from the CA does not chain to any mesh root this node trusts; the CA signs with another root: add that root to the node\'s trust anchors (--trust-anchor-file, ConfigMap weft-root-cert) before the CA switches to it');
  }
  if (leaf.subjectAltName !== `URI:${identity}` && !leaf.subjectAltName?.startsWith(`URI:${identity}, `)) {
    throw new WeftError('WEFT_CERT_UNAVAILABLE',
      `the CA issued ${JSON.stringify(leaf.subjectAltName)} where ${identity} was asked for; check the CA's --trust-domain matches this node's`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) {
    throw new WeftError('WEFT_CERT_UNAVAILABLE', `the CA issued a certificate that expired at ${notAfter.toISOString()}; check the clocks of the CA and this node`);
  }
  return { notBefore, notAfter, serial: leaf.serialNumber };
}

/** Turns a gRPC failure into the WeftError the CA meant, or WEFT_CA_UNREACHABLE. */
export function fromGrpcError(err: grpc.ServiceError, address: string): WeftError {
  const m = /^(WEFT_[A-Z0-9_]+): ([\s\S]*)$/.exec(err.details ?? '');
  if (m && m[1]! in ERROR_CATALOGUE) return new WeftError(m[1] as ErrorCode, m[2]!, { cause: err, details: { grpcCode: err.code } });
  return new WeftError('WEFT_CA_UNREACHABLE',
    `CA ${address} failed: ${grpc.status[err.code] ?? err.code} ${err.details || err.message}; check weft ca runs, that ${address} is reachable, and that the CA certificate matches the mesh root and its name`,
    { cause: err, details: { grpcCode: err.code } });
}

export class CaClient {
  private readonly opts: Required<CaClientOptions>;
  private rootBuffer: Buffer;
  private node: NodeCredentials | undefined;
  private certClient: CertificateServiceClient | undefined;
  /** CreateCertificate without a client certificate (a single-identity caller's bearer token). */
  private tokenCertClient: CertificateServiceClient | undefined;
  private bootstrapClient: BootstrapClient | undefined;
  private closed = false;

  constructor(opts: CaClientOptions) {
    const host = /^\[?([^\]]+?)\]?:\d+$/.exec(opts.address)?.[1];
    if (!host) throw new WeftError('WEFT_CONFIG_INVALID', `invalid CA address ${JSON.stringify(opts.address)}: expected host:port, e.g. 198.18.0.1:15012`);
    this.opts = { serverName: host, timeoutMs: 10_000, ...opts };
    this.rootBuffer = Buffer.from(opts.rootPem);
  }

  get rootPem(): string {
    return this.opts.rootPem;
  }

  /**
   * Replaces the trust anchors (a rotated bundle): later calls verify the CA and issued
   * chains against the new ones; open channels are closed so none keeps the old trust.
   */
  setRootPem(pem: string): void {
    parseTrustBundle(pem, 'the new trust anchors');
    this.opts.rootPem = pem;
    this.rootBuffer = Buffer.from(pem);
    const old = [this.certClient, this.bootstrapClient, this.tokenCertClient];
    this.certClient = undefined;
    this.bootstrapClient = undefined;
    this.tokenCertClient = undefined;
    for (const c of old) c?.close();
  }

  get trustDomain(): string {
    return this.opts.trustDomain;
  }

  /** The node certificate in use for CreateCertificate, if joined. */
  get nodeCredentials(): NodeCredentials | undefined {
    return this.node;
  }

  /** Installs node credentials (after Join or renewal); new calls use them, in-flight calls finish. */
  setNodeCredentials(creds: NodeCredentials): void {
    this.node = { keyPem: creds.keyPem, certChainPem: [...creds.certChainPem] };
    const old = this.certClient;
    this.certClient = undefined;
    old?.close();
  }

  /**
   * Exchanges a credential for a node certificate and installs it. A plain string is a
   * join token (what the lab and `weft ca token` hand out).
   */
  async join(nodeName: string, credential: string | JoinCredential): Promise<NodeCredentials & VerifiedLeaf> {
    const cred: JoinCredential = typeof credential === 'string' ? { kind: 'joinToken', token: credential } : credential;
    const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: nodeName });
    const client = this.bootstrap();
    const req: JoinRequest = cred.kind === 'joinToken'
      ? { nodeName, token: cred.token, csr: csrPem }
      : { nodeName, token: '', serviceAccountToken: cred.token, csr: csrPem };
    const res = await this.unary<JoinRequest, JoinResponse>(client.Join.bind(client), req);
    const leaf = verifyIssuedChain(res.certChain, this.opts.rootPem, nodeIdentity(this.opts.trustDomain));
    this.setNodeCredentials({ keyPem, certChainPem: res.certChain });
    return { keyPem, certChainPem: res.certChain, ...leaf };
  }

  /**
   * Asks for a certificate for `csrPem`: for `impersonatedIdentity` (a workload on
   * this node), or, without it, a renewal of the node's own certificate.
   * `ttlSec` 0 asks for the CA's default.
   */
  async createCertificate(csrPem: string, ttlSec: number, impersonatedIdentity?: string, opts: { saToken?: string } = {}): Promise<string[]> {
    const client = this.certificates();
    const req: CertificateRequest = { csr: csrPem, validityDuration: ttlSec };
    if (impersonatedIdentity !== undefined) req.metadata = impersonationMetadata(impersonatedIdentity);
    // The fresh credential a TokenReview CA re-checks on every CSR, as Istio's ztunnel sends it.
    const metadata = new grpc.Metadata();
    if (opts.saToken) metadata.set(SA_TOKEN_METADATA, `Bearer ${opts.saToken}`);
    const res = await this.unary<CertificateRequest, CertificateResponse>(
      (r, o, cb) => client.CreateCertificate(r, metadata, o, cb), req);
    return res.certChain;
  }

  /**
   * A single-identity caller's own certificate (a waypoint): server-side TLS only (no
   * node certificate), `bearerToken` as `authorization: Bearer` metadata (its identity
   * token, or its pod's projected ServiceAccount token), the identity named as the CSR's
   * one URI SAN. `ttlSec` 0 asks for the CA's default.
   */
  async createOwnCertificate(csrPem: string, ttlSec: number, bearerToken: string): Promise<string[]> {
    this.ensureOpen();
    if (!this.tokenCertClient) {
      const creds = grpc.credentials.createSsl(this.rootBuffer, null, null, this.verifyOptions());
      this.tokenCertClient = new (services().certificateService)(this.opts.address, creds, this.channelOptions()) as unknown as CertificateServiceClient;
    }
    const client = this.tokenCertClient;
    const metadata = new grpc.Metadata();
    metadata.set(SA_TOKEN_METADATA, `Bearer ${bearerToken}`);
    const res = await this.unary<CertificateRequest, CertificateResponse>(
      (r, o, cb) => client.CreateCertificate(r, metadata, o, cb), { csr: csrPem, validityDuration: ttlSec });
    return res.certChain;
  }

  /**
   * Resolves true once the CA's channel is READY (TCP and TLS up: the CA is back), false
   * after `timeoutMs` or when the channel is closed. No request is sent; grpc keeps
   * reconnecting at its own pace meanwhile. The certificate channel once joined (what
   * CreateCertificate uses), else the bootstrap one.
   */
  waitReachable(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const channel = (this.node ? this.certificates() : this.tokenCertClient ?? this.bootstrap()).getChannel();
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(ok);
      };
      // Our own unref'd timer, not a watch deadline: grpc's deadline timer would hold the process open.
      const timer = setTimeout(() => finish(false), timeoutMs).unref();
      const check = () => {
        if (done) return;
        try {
          const state = channel.getConnectivityState(true);
          if (state === grpc.connectivityState.READY) finish(true);
          else if (state === grpc.connectivityState.SHUTDOWN) finish(false);
          else channel.watchConnectivityState(state, Infinity, check);
        } catch {
          finish(false); // the channel was closed (new credentials, or close())
        }
      };
      check();
    });
  }

  close(): void {
    this.closed = true;
    this.certClient?.close();
    this.bootstrapClient?.close();
    this.tokenCertClient?.close();
    this.certClient = undefined;
    this.bootstrapClient = undefined;
    this.tokenCertClient = undefined;
  }

  private unary<Req, Res>(method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method(req, { deadline: Date.now() + this.opts.timeoutMs }, (err, res) => {
        if (err) reject(fromGrpcError(err, this.opts.address));
        else resolve(res!);
      });
    });
  }

  private channelOptions(): grpc.ChannelOptions {
    return {
      // The serving certificate is checked against serverName (verifyOptions), never the
      // dialled host. The override also sets SNI, which the CA ignores; RFC 6066 forbids
      // an IP there (Node warns, and grpc-js would send the IP of an IP target), so an
      // IP serverName sends a fixed DNS-shaped name instead.
      'grpc.ssl_target_name_override': isIP(this.opts.serverName) ? CA_SNI : this.opts.serverName,
      // Certificate calls are rare: no need to hold the connection open forever.
      'grpc.client_idle_timeout_ms': 60_000,
      // The certificate manager runs its own retry backoff; grpc's reconnect backoff
      // (up to 120 s by default) would otherwise hide a CA that is back.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
    };
  }

  private verifyOptions(): grpc.VerifyOptions {
    const serverName = this.opts.serverName;
    return { checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(serverName, cert) };
  }

  private bootstrap(): BootstrapClient {
    this.ensureOpen();
    if (!this.bootstrapClient) {
      const creds = grpc.credentials.createSsl(this.rootBuffer, null, null, this.verifyOptions());
      this.bootstrapClient = new (services().nodeBootstrap)(this.opts.address, creds, this.channelOptions()) as unknown as BootstrapClient;
    }
    return this.bootstrapClient;
  }

  private certificates(): CertificateServiceClient {
    this.ensureOpen();
    if (!this.node) {
      throw new WeftError('WEFT_CA_UNAUTHENTICATED',
        'this node has no node certificate yet; join first (with --join-sa-token-file on Kubernetes, or a token from `weft ca token --node <name>`)');
    }
    if (!this.certClient) {
      const creds = grpc.credentials.createSsl(
        this.rootBuffer, Buffer.from(this.node.keyPem), Buffer.from(this.node.certChainPem.join('\n')), this.verifyOptions());
      this.certClient = new (services().certificateService)(this.opts.address, creds, this.channelOptions()) as unknown as CertificateServiceClient;
    }
    return this.certClient;
  }

  private ensureOpen(): void {
    if (this.closed) throw new WeftError('WEFT_CA_UNREACHABLE', 'the CA client was closed; create a new one');
  }
}
