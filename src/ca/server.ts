import { X509Certificate } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { WeftError, isWeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { boundedDelay, realClock, type Clock } from '../lib/clock';
import { LogLimiter } from '../lib/log-limiter';
import { formatDuration } from '../lib/options';
import {
  authenticateNode, authorizeRequest, caIdentity, isValidNodeName, nodeIdentity, type NodeAuthorizer,
} from './authorize';
import { generateKeyAndCsr, type Issuer } from './issuer';
import type { JoinTokenVerifier } from './join-tokens';
import { disabledSaJoin, type JoinedPod, type ServiceAccountJoinVerifier } from './sa-token-join';
import { createCaMetrics, type CaMethod, type CaMetrics } from './metrics';
import {
  readImpersonatedIdentity, services,
  type CertificateRequest, type CertificateResponse, type JoinRequest, type JoinResponse,
} from './proto';
import { DEFAULT_CSR_RATE, DEFAULT_JOIN_RATE, MethodRateLimiter, limitsFor, type MethodLimits } from './rate-limit';
import { bearerToken, callerFacts, peerAddress } from './call-facts';
import { ownIdentityFor, verifyIdentityCredential } from './identity-caller';
import { STATUS_FOR, refusalReason } from './refusals';
import { identityRefusal } from './identity-grant';
import { isIdentityToken, type IdentityTokenVerifier } from './identity-tokens';
import type { WaypointTokenVerifier } from './waypoint-sa';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_CERT_TTL_MS = DAY_MS;
export const DEFAULT_MAX_CERT_TTL_MS = 90 * DAY_MS;
export const DEFAULT_MIN_CERT_TTL_MS = 60_000;
export const DEFAULT_NODE_CERT_TTL_MS = HOUR_MS;
export const DEFAULT_SERVING_CERT_TTL_MS = 30 * DAY_MS;

export interface CaServerOptions {
  issuer: Issuer;
  trustDomain: string;
  /** The registry question for impersonation; MeshState implements it. */
  authorizer: NodeAuthorizer;
  /**
   * Checks Redis join tokens; absent = join tokens are refused. Never together with an
   * enabled `saJoin`: whoever can write Redis could mint join tokens, which would undo
   * what the TokenReview checks prove.
   */
  joinTokens?: JoinTokenVerifier;
  /**
   * Checks Joins that carry a ServiceAccount token, and, when enabled, every node CSR
   * (which must then carry the node's current token); absent = such joins are refused
   * (no --kube-token-review).
   */
  saJoin?: ServiceAccountJoinVerifier;
  /**
   * Single-identity callers (waypoints) in the lab: identity-scoped tokens in Redis.
   * Never together with an enabled `saJoin`, for the join tokens' reason.
   */
  identityTokens?: IdentityTokenVerifier;
  /** Single-identity callers on a cluster: waypoint pods' ServiceAccount tokens (TokenReview). */
  waypointTokens?: WaypointTokenVerifier;
  /** Earlier roots (PEM) whose node certificates are still accepted: the rotation overlap. */
  trustedRoots?: string[];
  /** Rate limits (defaults limitsFor(DEFAULT_JOIN_RATE) and limitsFor(DEFAULT_CSR_RATE)). */
  joinLimits?: MethodLimits;
  csrLimits?: MethodLimits;
  /** Clock of the rate limiters and the refusal-log limits (tests). */
  clock?: Clock;
  logger: Logger;
  /** Metrics go here, never to prom-client's global registry. */
  metrics: Registry;
  /** Lifetime when a request asks for 0 (the default). */
  certTtlMs?: number;
  /** Longest lifetime a request may ask for. */
  maxCertTtlMs?: number;
  /** Shortest lifetime a request may ask for. Tests lower it to exercise rotation. */
  minCertTtlMs?: number;
  /** Lifetime of node certificates (Join and renewal); short, so a removed node falls out soon. */
  nodeCertTtlMs?: number;
  /** DNS names and IPs the CA's own serving certificate carries; clients check one of them. */
  dnsNames?: string[];
  ipAddresses?: string[];
  servingCertTtlMs?: number;
  /** False while the registry is not loaded: impersonation requests then get UNAVAILABLE. */
  isReady?: () => boolean;
}

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

type Optional = 'isReady' | 'joinTokens' | 'identityTokens' | 'waypointTokens' | 'clock' | 'joinLimits' | 'csrLimits';

export class CaServer {
  private readonly opts: Required<Omit<CaServerOptions, Optional>> & Pick<CaServerOptions, Optional>;
  private readonly metrics: CaMetrics;
  private readonly joinLimiter: MethodRateLimiter;
  private readonly csrLimiter: MethodRateLimiter;
  /**
   * Refusals are logged at a bounded rate per method and error code: any address can
   * send Joins, so a flood of refusals must not become a flood of log lines.
   */
  private readonly refusalLog: LogLimiter;
  private readonly log: Logger;
  private server: grpc.Server | undefined;
  private credentials: OptionalClientCertCredentials | undefined;
  private cancelRotation: (() => void) | undefined;
  private boundPort = 0;

  constructor(opts: CaServerOptions) {
    this.opts = {
      certTtlMs: DEFAULT_CERT_TTL_MS,
      maxCertTtlMs: DEFAULT_MAX_CERT_TTL_MS,
      minCertTtlMs: DEFAULT_MIN_CERT_TTL_MS,
      nodeCertTtlMs: DEFAULT_NODE_CERT_TTL_MS,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      servingCertTtlMs: DEFAULT_SERVING_CERT_TTL_MS,
      saJoin: disabledSaJoin,
      trustedRoots: [] as string[],
      // An option passed as undefined means "the default", not "unset".
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as CaServer['opts'];
    const { minCertTtlMs: min, maxCertTtlMs: max } = this.opts;
    const inBounds = (field: string, value: number) => {
      if (!(value >= min && value <= max)) {
        throw new WeftError('WEFT_CONFIG_INVALID',
          `invalid ${field}=${formatDuration(value)}: expected between ${formatDuration(min)} and the max certificate TTL ${formatDuration(max)}`);
      }
    };
    if (!(min > 0 && min <= max)) {
      throw new WeftError('WEFT_CONFIG_INVALID', `invalid --max-cert-ttl=${formatDuration(max)}: expected at least ${formatDuration(min)}`);
    }
    inBounds('--cert-ttl', this.opts.certTtlMs);
    inBounds('--node-cert-ttl', this.opts.nodeCertTtlMs);
    if (this.opts.saJoin.enabled && this.opts.identityTokens) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        'identity tokens cannot be accepted together with --kube-token-review: anyone who can write Redis could mint them; waypoints send their ServiceAccount token');
    }
    if (this.opts.saJoin.enabled && this.opts.joinTokens) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        'join tokens cannot be accepted together with --kube-token-review: anyone who can write Redis could mint them; nodes join with their ServiceAccount token');
    }
    const clock = opts.clock ?? realClock;
    this.joinLimiter = new MethodRateLimiter('Join', opts.joinLimits ?? limitsFor(DEFAULT_JOIN_RATE), clock);
    this.csrLimiter = new MethodRateLimiter('CreateCertificate', opts.csrLimits ?? limitsFor(DEFAULT_CSR_RATE), clock);
    this.metrics = createCaMetrics(opts.metrics);
    this.log = opts.logger;
    this.refusalLog = new LogLimiter({ clock });
  }

  get port(): number {
    return this.boundPort;
  }

  get rootPem(): string {
    return this.opts.issuer.rootPem;
  }

  /**
   * Switches to a new signing root (rotation), keeping `trusted` earlier roots for
   * callers' node certificates. The serving certificate is re-issued by the new root
   * at once; connections already open keep theirs.
   */
  async updateRoot(issuer: Issuer, trusted: string[]): Promise<void> {
    this.opts.issuer = issuer;
    this.opts.trustedRoots = trusted;
    if (!this.server) return;
    this.cancelRotation?.();
    this.cancelRotation = undefined;
    await this.rotateServingCert();
  }

  /** Binds and serves; resolves with the bound port (useful with port 0). */
  async start(listen: { host: string; port: number }): Promise<number> {
    if (this.server) throw new Error('CaServer already started');
    const serving = await this.servingContext();
    const credentials = new OptionalClientCertCredentials(serving.context);
    const server = new grpc.Server({
      // CSRs are ~1 KiB; a small limit keeps junk from costing the CA memory.
      'grpc.max_receive_message_length': 64 * 1024,
    });
    const { certificateService, nodeBootstrap } = services();
    server.addService(certificateService.service, { CreateCertificate: this.createCertificate });
    server.addService(nodeBootstrap.service, { Join: this.join });
    const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${listen.port}`, credentials, (err, port) => {
        if (err) {
          reject(new WeftError('WEFT_CONFIG_INVALID',
            `invalid --listen=${listen.host}:${listen.port}: cannot bind (${err.message}); pick a free port or a local address`, { cause: err }));
        } else resolve(port);
      });
    });
    this.server = server;
    this.credentials = credentials;
    this.scheduleRotation(serving.renewInMs);
    this.log.info({ address: `${listen.host}:${this.boundPort}`, dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses }, 'CA serving');
    return this.boundPort;
  }

  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, then cuts the rest. */
  async stop(graceMs = 5000): Promise<void> {
    this.cancelRotation?.();
    this.cancelRotation = undefined;
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
      server.tryShutdown(() => { clearTimeout(force); resolve(); });
    });
  }

  /** Issues the CA's own serving certificate, to be renewed at half-life. */
  private async servingContext(): Promise<{ context: SecureContextOptions; renewInMs: number }> {
    const { keyPem, csrPem } = await generateKeyAndCsr();
    const chain = this.opts.issuer.signCsr(csrPem, {
      identity: caIdentity(this.opts.trustDomain), ttlMs: this.opts.servingCertTtlMs,
      dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses,
    });
    const leaf = new X509Certificate(chain[0]!);
    return {
      context: { key: keyPem, cert: chain[0], ca: [this.opts.issuer.rootPem, ...this.opts.trustedRoots] },
      renewInMs: (Date.parse(leaf.validTo) - Date.now()) / 2,
    };
  }

  private scheduleRotation(ms: number): void {
    if (!this.server) return;
    this.cancelRotation = boundedDelay(ms, () => { void this.rotateServingCert(); });
  }

  private async rotateServingCert(): Promise<void> {
    try {
      const serving = await this.servingContext();
      if (!this.server) return;
      this.credentials?.update(serving.context);
      this.log.info('CA serving certificate renewed');
      this.scheduleRotation(serving.renewInMs);
    } catch (err) {
      this.log.error({ err }, 'CA serving certificate renewal failed; retrying in a minute');
      this.scheduleRotation(60_000);
    }
  }

  /** The lifetime to issue: 0 means the default; otherwise within [min, max] or refused. */
  private lifetime(requestedSec: number, forNode: boolean): number {
    const { minCertTtlMs: min, maxCertTtlMs: max } = this.opts;
    const fallback = forNode ? this.opts.nodeCertTtlMs : this.opts.certTtlMs;
    if (!requestedSec) return fallback;
    const ms = requestedSec * 1000;
    if (!Number.isFinite(ms) || ms < min || ms > max) {
      throw new WeftError('WEFT_CA_TTL_INVALID',
        `validity_duration ${requestedSec}s is out of bounds; ask for between ${min / 1000}s and ${max / 1000}s, or 0 for the default ${fallback / 1000}s`);
    }
    // Node certificates stay short whatever is asked: they are the node's credential.
    return forNode ? Math.min(ms, this.opts.nodeCertTtlMs) : ms;
  }

  private readonly createCertificate: grpc.handleUnaryCall<CertificateRequest, CertificateResponse> = (call, callback) => {
    const started = process.hrtime.bigint();
    let node: string | undefined;
    let requested: string | undefined;
    const peer = callerFacts(call);
    const bearer = bearerToken(call.metadata);
    // No client certificate but a bearer credential: a single-identity caller (a waypoint).
    if (!peer && bearer) {
      this.reply('CreateCertificate', this.ownIdentity(call, bearer, started), callback, () => ({ caller: 'single-identity', address: peerAddress(call) }), true);
      return;
    }
    const run = async (): Promise<string[]> => {
      node = authenticateNode(peer, this.opts.trustDomain);
      if (isIdentityToken(bearer)) {
        throw identityRefusal('mixed', `node ${node} sent an identity token with its node certificate; a node calls with its node certificate (and on a cluster its own ServiceAccount token), a waypoint with its identity token and no client certificate`);
      }
      this.csrLimiter.check(`node ${node}`);
      try {
        requested = readImpersonatedIdentity(call.request.metadata);
      } catch (err) {
        throw new WeftError('WEFT_CA_PERMISSION_DENIED', `${(err as Error).message}; send ImpersonatedIdentity as a string spiffe:// id`);
      }
      // With TokenReview, a node certificate alone is not enough: every CSR carries the
      // node's current ServiceAccount token, re-checked (TokenReview, pod, node; a
      // positive answer is reused briefly), so a deleted pod or node stops getting
      // certificates even though its node certificate has not expired yet.
      if (this.opts.saJoin.enabled) {
        await this.opts.saJoin.verify(node, bearerToken(call.metadata), { cached: true, what: 'CreateCertificate' });
      }
      if (requested !== undefined && this.opts.isReady && !this.opts.isReady()) {
        throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
          'the CA has not loaded the registry yet, so it cannot check which workloads run on the node; retry in a few seconds');
      }
      const decision = authorizeRequest(node, requested, this.opts.trustDomain, this.opts.authorizer);
      const forNode = decision.node !== undefined;
      const ttlMs = this.lifetime(Number(call.request.validityDuration ?? 0), forNode);
      const chain = this.opts.issuer.signCsr(call.request.csr ?? '', {
        identity: decision.identity, ttlMs,
        ...(forNode ? { commonName: decision.node, serverAuth: false } : {}),
      });
      this.succeed('CreateCertificate', started, { node, identity: decision.identity, ttlMs });
      return chain;
    };
    this.reply('CreateCertificate', run(), callback, () => ({ node, requested }));
  };

  /**
   * A waypoint's own certificate: no node certificate, a bearer credential naming one
   * identity (identity-caller.ts), a CSR asking for exactly that identity. Rate-limited
   * per source address before any Redis or API call, as Joins are.
   */
  private async ownIdentity(call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>, token: string, started: bigint): Promise<string[]> {
    this.csrLimiter.check(`address ${peerAddress(call)}`);
    const granted = await verifyIdentityCredential(token, { identityTokens: this.opts.identityTokens, waypointTokens: this.opts.waypointTokens });
    const identity = ownIdentityFor(granted, call.request, this.opts.trustDomain);
    const ttlMs = this.lifetime(Number(call.request.validityDuration ?? 0), false);
    const chain = this.opts.issuer.signCsr(call.request.csr ?? '', { identity, ttlMs });
    this.succeed('CreateCertificate', started, { identity, ttlMs, via: granted.via, ...(granted.pod ? { pod: granted.pod } : {}) });
    return chain;
  }

  private readonly join: grpc.handleUnaryCall<JoinRequest, JoinResponse> = (call, callback) => {
    const started = process.hrtime.bigint();
    const node = call.request.nodeName ?? '';
    const token = call.request.token ?? '';
    const saToken = call.request.serviceAccountToken ?? '';
    const via = saToken ? 'serviceAccountToken' : 'joinToken';
    const run = async () => {
      this.joinLimiter.check(`address ${peerAddress(call)}`);
      if (!isValidNodeName(node)) {
        throw new WeftError('WEFT_CA_JOIN_TOKEN_INVALID',
          `node_name ${JSON.stringify(node)} is not a node name; send the node's registry name`);
      }
      if (token && saToken) {
        throw new WeftError('WEFT_CA_JOIN_TOKEN_INVALID',
          'the Join carries both a join token and a ServiceAccount token; send exactly one (--join-token or --join-sa-token-file)');
      }
      let pod: JoinedPod | undefined;
      if (saToken || !this.opts.joinTokens) {
        if (token) {
          throw new WeftError('WEFT_CA_JOIN_TOKEN_DISABLED',
            'this CA admits nodes by ServiceAccount token only (--kube-token-review) and accepts no join tokens, which anyone able to write Redis could mint; run the ztunnel with --join-sa-token-file (its projected token, daemonset/ztunnel.yaml)');
        }
        pod = await this.opts.saJoin.verify(node, saToken);
      } else {
        await this.opts.joinTokens.verify(node, token);
      }
      const identity = nodeIdentity(this.opts.trustDomain);
      const chain = this.opts.issuer.signCsr(call.request.csr ?? '', {
        identity, ttlMs: this.opts.nodeCertTtlMs, commonName: node, serverAuth: false,
      });
      this.succeed('Join', started, { node, identity, ttlMs: this.opts.nodeCertTtlMs, via, ...(pod ? { pod: `${pod.namespace}/${pod.pod}` } : {}) });
      return chain;
    };
    this.reply('Join', run(), callback, () => ({ node, via }));
  };

  /**
   * Answers a call with the chain its handler made, or with its refusal; a refusal by
   * a ServiceAccount-token check is also counted by reason. `facts` is read only on
   * failure, so it sees what the handler learnt before it failed.
   */
  private reply(method: CaMethod, chain: Promise<string[]>, callback: grpc.sendUnaryData<{ certChain: string[] }>,
    facts: () => Record<string, unknown>, singleIdentity = false): void {
    chain.then(
      (certChain) => callback(null, { certChain }),
      (err: unknown) => {
        const refusal = refusalReason(err, singleIdentity);
        if (refusal) (refusal.of === 'identity' ? this.metrics.identityRefusals : this.metrics.saJoinRefusals).inc({ reason: refusal.reason });
        callback(this.fail(method, err, facts()));
      },
    );
  }

  private succeed(method: CaMethod, started: bigint, facts: Record<string, unknown>): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.requests.inc({ method, result: 'ok' });
    this.metrics.issueSeconds.observe({ method }, seconds);
    this.log.info({ method, ...facts }, 'certificate issued');
  }

  /** Maps an error to a status whose message starts with the WeftError code, counts and logs it. */
  private fail(method: CaMethod, err: unknown, facts: Record<string, unknown>): Partial<grpc.StatusObject> {
    const mapped = isWeftError(err) ? STATUS_FOR[err.code] : undefined;
    if (!mapped || !isWeftError(err)) {
      this.metrics.requests.inc({ method, result: 'internal' });
      this.refusalLog.log(this.log, 'error', `${method} internal`, { method, err, ...facts }, 'CA request failed unexpectedly');
      return { code: grpc.status.INTERNAL, details: 'internal CA error; see the CA log' };
    }
    const [code, result] = mapped;
    this.metrics.requests.inc({ method, result });
    // Keyed by method and code, both fixed sets; the metrics count every refusal.
    this.refusalLog.log(this.log, 'warn', `${method} ${err.code}`, { method, code: err.code, reason: err.message, ...facts }, 'CA request refused');
    return { code, details: `${err.code}: ${err.message}` };
  }
}
