/**
 * The CA's gRPC server: CreateCertificate (node certificates, impersonation for the
 * node's own workloads, single-identity callers) and Join (node bootstrap), each
 * authenticated, authorized, rate limited, logged and counted. Its options are in
 * server-options.ts, its own serving certificate in serving-cert.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { WeftError, isWeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { realClock } from '../lib/clock';
import { LogLimiter } from '../lib/log-limiter';
import { authenticateNode, authorizeRequest, isValidNodeName, nodeIdentity } from './authorize';
import type { Issuer } from './issuer';
import type { JoinedPod } from './sa-token-join';
import { createCaMetrics, type CaMethod, type CaMetrics } from './metrics';
import {
  readImpersonatedIdentity, services,
  type CertificateRequest, type CertificateResponse, type JoinRequest, type JoinResponse,
} from './proto';
import { DEFAULT_CSR_RATE, DEFAULT_JOIN_RATE, MethodRateLimiter, limitsFor } from './rate-limit';
import { bearerToken, callerFacts, peerAddress } from './call-facts';
import { ownIdentityFor, verifyIdentityCredential } from './identity-caller';
import { STATUS_FOR, refusalReason } from './refusals';
import { identityRefusal } from './identity-grant';
import { isIdentityToken } from './identity-tokens';
import { resolveCaOptions, type CaServerOptions, type ResolvedCaOptions } from './server-options';
import { ServingCertificate } from './serving-cert';

export class CaServer {
  private readonly opts: ResolvedCaOptions;
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
  private readonly serving: ServingCertificate;
  private boundPort = 0;

  constructor(opts: CaServerOptions) {
    this.opts = resolveCaOptions(opts);
    const clock = opts.clock ?? realClock;
    this.joinLimiter = new MethodRateLimiter('Join', opts.joinLimits ?? limitsFor(DEFAULT_JOIN_RATE), clock);
    this.csrLimiter = new MethodRateLimiter('CreateCertificate', opts.csrLimits ?? limitsFor(DEFAULT_CSR_RATE), clock);
    this.metrics = createCaMetrics(opts.metrics);
    this.log = opts.logger;
    this.refusalLog = new LogLimiter({ clock });
    this.serving = new ServingCertificate(() => ({ issuer: this.opts.issuer, trustedRoots: this.opts.trustedRoots }), this.opts, this.log);
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
    await this.serving.renewNow();
  }

  /** Binds and serves; resolves with the bound port (useful with port 0). */
  async start(listen: { host: string; port: number }): Promise<number> {
    if (this.server) throw new Error('CaServer already started');
    const credentials = await this.serving.serverCredentials();
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
    this.serving.begin();
    this.log.info({ address: `${listen.host}:${this.boundPort}`, dnsNames: this.opts.dnsNames, ipAddresses: this.opts.ipAddresses }, 'CA serving');
    return this.boundPort;
  }

  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, then cuts the rest. */
  async stop(graceMs = 5000): Promise<void> {
    this.serving.stop();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
      server.tryShutdown(() => { clearTimeout(force); resolve(); });
    });
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
      const chain = await this.opts.issuer.issue(call.request.csr ?? '', {
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
    const chain = await this.opts.issuer.issue(call.request.csr ?? '', { identity, ttlMs });
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
      const chain = await this.opts.issuer.issue(call.request.csr ?? '', {
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
