import { EventEmitter } from 'node:events';
import { Counter, Gauge, type Registry } from 'prom-client';
import { WeftError, isWeftError } from '../lib/errors';
import { currentJoinCredential } from './join-credential';
import type { Logger } from '../lib/log';
import { nodeIdentity } from './authorize';
import { verifyIssuedChain, type NodeCredentials } from './client';
import { generateKeyAndCsr } from './issuer';
import { CertState, TRANSITIONS, type CertificateSource, type CertStatus, type WorkloadCert } from './cert-state';
import { Limiter } from './limiter';
import { CaRecoveryWatch } from './recovery-watch';
import { backoffDelay } from '../lib/backoff';
import { boundedDelay, realClock, type Clock } from '../lib/clock';

/**
 * Keeps the node's certificates fresh: the node certificate (the CA credential) and
 * one certificate per workload identity running on the node. Modelled on ztunnel's
 * SecretManager: prefetch what the node's workloads need, refresh at half-life, and
 * when the CA fails, back off (0.5 s doubling to 150 s, jittered) while the old
 * certificate stays in use until it really expires. When the CA answers again (any
 * certificate issued, or its channel READY: recovery-watch.ts), every identity waiting
 * in backoff for an unreachable CA retries within `recoveryJitterMs`, once per failure
 * streak, so issuance resumes seconds after the CA's return, not minutes.
 */

export interface CertificateManagerOptions {
  client: CertificateSource;
  nodeName: string;
  logger: Logger;
  metrics: Registry;
  clock?: Clock;
  /** Lifetime to ask for, in seconds; 0 (default) takes the CA's default. */
  ttlSec?: number;
  /** Lets the manager (re)join when it has no valid node certificate. */
  joinToken?: string;
  /**
   * Or: a file holding the ztunnel pod's projected ServiceAccount token, sent instead
   * of a join token. Read at every join, since the kubelet rotates it. `joinToken` wins
   * when both are set.
   */
  joinSaTokenFile?: string;
  /** How long get() waits for a certificate before failing (default 10 s). */
  getTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /**
   * When the CA answers again, identities waiting in backoff retry at a random point
   * within this many ms (default 2000), so the nodes of a cluster do not all send their
   * CSRs in the same instant.
   */
  recoveryJitterMs?: number;
  /**
   * Key generations run at once (default 2). RSA-2048 generation takes 50-300 ms on
   * libuv's small shared thread pool; unbounded, a node starting 100 pods would queue
   * DNS lookups and file I/O behind it for seconds.
   */
  maxConcurrentKeygen?: number;
}

export interface CertificateManagerEvents {
  /** A new certificate for `identity` is in place (also for the node certificate). */
  updated: [identity: string];
  state: [identity: string, from: CertState, to: CertState];
}

interface Waiter {
  resolve(cert: WorkloadCert): void;
  reject(err: Error): void;
}

interface Entry {
  identity: string;
  type: 'node' | 'workload';
  state: CertState;
  cert?: WorkloadCert;
  /** Local receive time: half-life counts from here, since notBefore is backdated. */
  receivedAt: number;
  failures: number;
  lastError?: Error;
  /** When the scheduled retry is due (clock ms), while backing off. */
  retryAt?: number;
  /** Already retried early on a sign of the CA's return during this failure streak. */
  woken?: boolean;
  fetching: boolean;
  /** Key + CSR of the attempt in progress, reused across retries so an outage costs no key generation. */
  pendingKey?: { keyPem: string; csrPem: string };
  cancelNext?: () => void;
  cancelExpiry?: () => void;
  waiters: Set<Waiter>;
}

type FetchResult = 'ok' | 'refused' | 'unreachable' | 'error';

export { CertState, type CertificateSource, type CertStatus, type WorkloadCert };

export class CertificateManager extends EventEmitter<CertificateManagerEvents> {
  private readonly client: CertificateSource;
  private readonly nodeName: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly opts: CertificateManagerOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly node: Entry;
  private readonly fetches: Counter<'type' | 'result'>;
  private stopped = false;
  private readonly keygens: Limiter;
  private readonly recovery: CaRecoveryWatch;

  constructor(opts: CertificateManagerOptions) {
    super();
    this.opts = opts;
    this.client = opts.client;
    this.nodeName = opts.nodeName;
    this.log = opts.logger.child({ component: 'certificates' });
    this.clock = opts.clock ?? realClock;
    this.keygens = new Limiter(opts.maxConcurrentKeygen ?? 2);
    this.recovery = new CaRecoveryWatch(
      opts.client.waitReachable?.bind(opts.client),
      () => this.waitingOnCa().length > 0,
      () => this.caAnswered('the CA channel is ready again'),
    );
    const entries = this.entries;
    const clock = this.clock;
    new Gauge({
      name: 'weft_cert_expiry_seconds',
      help: 'Seconds until the certificate of an identity expires (negative once expired)',
      labelNames: ['identity'] as const,
      registers: [opts.metrics],
      collect() {
        this.reset();
        for (const e of entries.values()) {
          if (e.cert) this.set({ identity: e.identity }, (e.cert.notAfter.getTime() - clock.now()) / 1000);
        }
      },
    });
    new Gauge({
      name: 'weft_certs',
      help: 'Certificates held by this node, by state',
      labelNames: ['state'] as const,
      registers: [opts.metrics],
      collect() {
        this.reset();
        for (const s of Object.values(CertState)) this.set({ state: s }, 0);
        for (const e of entries.values()) this.inc({ state: e.state });
      },
    });
    this.fetches = new Counter({
      name: 'weft_cert_fetches_total',
      help: 'Certificate requests to the CA by certificate type and result',
      labelNames: ['type', 'result'] as const,
      registers: [opts.metrics],
    });

    this.node = this.newEntry(nodeIdentity(this.client.trustDomain), 'node');
    const creds = this.client.nodeCredentials;
    const leaf = creds ? this.tryVerify(creds.certChainPem, this.node.identity) : undefined;
    if (creds && leaf) {
      this.install(this.node, { identity: this.node.identity, keyPem: creds.keyPem, certChainPem: creds.certChainPem, ...leaf }, 'node certificate from join');
    } else {
      void this.fetch(this.node);
    }
  }

  /** The trust anchors (one root, or old and new during a rotation), for verifying peers; follows the trust-anchor file. */
  get rootsPem(): string {
    return this.client.rootPem;
  }

  /** The identity of this node's proxy (its CA credential). */
  get nodeIdentity(): string {
    return this.node.identity;
  }

  /**
   * Declares the workload identities this node needs: new ones are fetched now,
   * ones no longer listed are dropped (also those only ever asked for through get()).
   */
  setWanted(identities: Iterable<string>): void {
    if (this.stopped) return;
    const wanted = new Set(identities);
    wanted.delete(this.node.identity);
    for (const entry of [...this.entries.values()]) {
      if (entry.type === 'workload' && !wanted.has(entry.identity)) this.drop(entry);
    }
    for (const identity of wanted) {
      if (!this.entries.has(identity)) void this.fetch(this.newEntry(identity, 'workload'));
    }
  }

  /** A valid certificate for `identity` now, or undefined (never an expired one). */
  current(identity: string): WorkloadCert | undefined {
    const cert = this.entries.get(identity)?.cert;
    return cert && cert.notAfter.getTime() > this.clock.now() ? cert : undefined;
  }

  /** A valid certificate, fetching it if needed; rejects with WEFT_CERT_UNAVAILABLE after the timeout. */
  get(identity: string, opts: { timeoutMs?: number } = {}): Promise<WorkloadCert> {
    const now = this.current(identity);
    if (now) return Promise.resolve(now);
    if (this.stopped) return Promise.reject(this.unavailable(identity, 'the certificate manager is stopped'));
    let entry = this.entries.get(identity);
    if (!entry) {
      entry = this.newEntry(identity, 'workload');
      void this.fetch(entry);
    }
    const target = entry;
    return new Promise<WorkloadCert>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.opts.getTimeoutMs ?? 10_000;
      const waiter: Waiter = {
        resolve: (cert) => { cancel(); resolve(cert); },
        reject: (err) => { cancel(); reject(err); },
      };
      const cancel = boundedDelay(timeoutMs, () => {
        target.waiters.delete(waiter);
        const last = target.lastError ? `; last error: ${target.lastError.message}` : '';
        reject(this.unavailable(identity, `no certificate after ${timeoutMs} ms (state ${target.state})${last}`));
      }, this.clock);
      target.waiters.add(waiter);
    });
  }

  /** Status of every certificate, node first, for admin views. */
  list(): CertStatus[] {
    return [...this.entries.values()].map((e) => ({
      identity: e.identity, type: e.type, state: e.state, failures: e.failures,
      ...(e.cert ? { serial: e.cert.serial, notBefore: e.cert.notBefore, notAfter: e.cert.notAfter } : {}),
      ...(e.lastError ? { lastError: e.lastError.message } : {}),
    }));
  }

  /** Cancels every timer and rejects pending get()s. Does not close the client (the caller owns it). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.keygens.close();
    this.recovery.stop();
    for (const entry of this.entries.values()) this.clearTimers(entry, this.unavailable(entry.identity, 'the certificate manager stopped'));
  }

  // ---- internals ----

  private newEntry(identity: string, type: Entry['type']): Entry {
    const entry: Entry = { identity, type, state: CertState.Pending, receivedAt: 0, failures: 0, fetching: false, waiters: new Set() };
    this.entries.set(identity, entry);
    return entry;
  }

  private drop(entry: Entry): void {
    this.clearTimers(entry, this.unavailable(entry.identity, 'the identity is no longer wanted on this node'));
    this.entries.delete(entry.identity);
    this.log.info({ identity: entry.identity }, 'certificate dropped');
  }

  private clearTimers(entry: Entry, err: Error): void {
    entry.cancelNext?.();
    entry.cancelExpiry?.();
    entry.cancelNext = entry.cancelExpiry = undefined;
    for (const w of entry.waiters) w.reject(err);
    entry.waiters.clear();
  }

  /** The one place states change; every change is logged and emitted. */
  private transition(entry: Entry, to: CertState, reason: string, err?: unknown): void {
    const from = entry.state;
    if (from === to) return;
    if (!TRANSITIONS[from].includes(to)) throw new Error(`certificate ${entry.identity}: illegal transition ${from} -> ${to} (${reason})`);
    entry.state = to;
    const fields = { identity: entry.identity, type: entry.type, from, to, reason, ...(err ? { err } : {}) };
    if (to === CertState.Expired || to === CertState.Failed) this.log.warn(fields, 'certificate state');
    else this.log.info(fields, 'certificate state');
    this.emit('state', entry.identity, from, to);
  }

  private live(entry: Entry): boolean {
    return !this.stopped && this.entries.get(entry.identity) === entry;
  }

  private async fetch(entry: Entry): Promise<void> {
    if (entry.fetching || !this.live(entry)) return;
    entry.fetching = true;
    entry.cancelNext?.();
    entry.cancelNext = undefined;
    if (entry.state === CertState.Ready) this.transition(entry, CertState.Refreshing, 'half-life reached');
    try {
      entry.pendingKey ??= await this.keygens.run(() => generateKeyAndCsr(entry.type === 'node' ? { commonName: this.nodeName } : {}));
      if (!this.live(entry)) return;
      // Without a node certificate the CA can only refuse; asking anyway would cost a
      // backoff step at every start-up. The node certificate's install resumes us.
      if (entry.type === 'workload' && !this.current(this.node.identity)) {
        const nodeStuck = this.node.state === CertState.Failed || this.node.state === CertState.Expired;
        if (!nodeStuck) return;
        throw this.node.lastError ?? new WeftError('WEFT_CA_UNAUTHENTICATED', `node ${this.nodeName} has no valid node certificate yet`);
      }
      const cert = entry.type === 'node' ? await this.fetchNode(entry.pendingKey) : await this.fetchWorkload(entry.identity, entry.pendingKey);
      entry.pendingKey = undefined;
      if (!this.live(entry)) return;
      this.fetches.inc({ type: entry.type, result: 'ok' });
      this.install(entry, cert, entry.failures > 0 ? `renewed after ${entry.failures} failed attempts` : 'issued');
      this.caAnswered(`the CA issued a ${entry.type} certificate`);
    } catch (err) {
      if (!this.live(entry)) return;
      this.failed(entry, err);
    } finally {
      entry.fetching = false;
      // Here, not in failed(): the watch counts only identities at rest in backoff.
      if (entry.cancelNext && isWeftError(entry.lastError, 'WEFT_CA_UNREACHABLE')) this.recovery.arm();
    }
  }

  /** The ServiceAccount token to send with a CSR (re-read each time: the kubelet rotates it), if configured. */
  private async csrCredential(): Promise<{ saToken?: string }> {
    if (!this.opts.joinSaTokenFile || this.opts.joinToken) return {};
    const cred = await currentJoinCredential({ joinSaTokenFile: this.opts.joinSaTokenFile });
    return cred ? { saToken: cred.token } : {};
  }

  private async fetchWorkload(identity: string, { keyPem, csrPem }: { keyPem: string; csrPem: string }): Promise<WorkloadCert> {
    const chain = await this.client.createCertificate(csrPem, this.opts.ttlSec ?? 0, identity, await this.csrCredential());
    return { identity, keyPem, certChainPem: chain, ...verifyIssuedChain(chain, this.client.rootPem, identity, this.clock.now()) };
  }

  /** Renews with the current node certificate while it is valid, else (re)joins with the token. */
  private async fetchNode(key: { keyPem: string; csrPem: string }): Promise<WorkloadCert> {
    const identity = this.node.identity;
    // Someone may have joined through the client directly: adopt that certificate.
    const external = this.client.nodeCredentials;
    if (external && external.certChainPem[0] !== this.node.cert?.certChainPem[0]) {
      const leaf = this.tryVerify(external.certChainPem, identity);
      if (leaf) return { identity, keyPem: external.keyPem, certChainPem: external.certChainPem, ...leaf };
    }
    const valid = this.node.cert && this.node.cert.notAfter.getTime() > this.clock.now();
    const rejected = isWeftError(this.node.lastError, 'WEFT_CA_UNAUTHENTICATED');
    let creds: NodeCredentials;
    if (valid && !rejected) {
      creds = { keyPem: key.keyPem, certChainPem: await this.client.createCertificate(key.csrPem, 0, undefined, await this.csrCredential()) };
    } else {
      const credential = await currentJoinCredential(this.opts);
      if (!credential) {
        throw new WeftError('WEFT_CA_UNAUTHENTICATED',
          `node ${this.nodeName} has no valid node certificate and no join credential to get one; restart the ztunnel with --join-sa-token-file (Kubernetes) or a fresh token from \`weft ca token --node ${this.nodeName}\``);
      }
      creds = await this.client.join(this.nodeName, credential);
    }
    const leaf = verifyIssuedChain(creds.certChainPem, this.client.rootPem, identity, this.clock.now());
    this.client.setNodeCredentials(creds);
    return { identity, keyPem: creds.keyPem, certChainPem: creds.certChainPem, ...leaf };
  }

  private install(entry: Entry, cert: WorkloadCert, reason: string): void {
    const now = this.clock.now();
    entry.cert = cert;
    entry.receivedAt = now;
    entry.failures = 0;
    entry.lastError = undefined;
    entry.retryAt = undefined;
    entry.woken = false;
    this.transition(entry, CertState.Ready, reason);
    entry.cancelExpiry?.();
    entry.cancelNext?.();
    entry.cancelExpiry = boundedDelay(cert.notAfter.getTime() - now, () => this.expired(entry, cert), this.clock);
    const halfLife = (cert.notAfter.getTime() - now) / 2;
    entry.cancelNext = boundedDelay(halfLife, () => { void this.fetch(entry); }, this.clock);
    this.log.debug({ identity: entry.identity, serial: cert.serial, notAfter: cert.notAfter, refreshInMs: Math.round(halfLife) }, 'certificate installed');
    for (const w of entry.waiters) w.resolve(cert);
    entry.waiters.clear();
    this.emit('updated', entry.identity);
    // A fresh node certificate unblocks workloads waiting for one, or that failed for
    // want of one: fetch them now.
    if (entry.type === 'node') {
      for (const e of this.entries.values()) {
        if (e.type === 'workload' && !e.fetching && e.state !== CertState.Ready) {
          e.failures = 0;
          void this.fetch(e);
        }
      }
    }
  }

  private failed(entry: Entry, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    entry.failures++;
    entry.lastError = error;
    this.fetches.inc({ type: entry.type, result: fetchResult(err) });
    if (entry.state === CertState.Pending) this.transition(entry, CertState.Failed, 'first request failed', error);
    const delay = backoffDelay(entry.failures, this.opts.backoff);
    this.log.warn({ identity: entry.identity, state: entry.state, failures: entry.failures, retryInMs: delay, code: isWeftError(error) ? error.code : undefined, err: error.message },
      entry.cert && entry.state === CertState.Refreshing ? 'certificate refresh failed; keeping the current one' : 'certificate request failed');
    entry.retryAt = this.clock.now() + delay;
    entry.cancelNext = boundedDelay(delay, () => { void this.fetch(entry); }, this.clock);
    // Workloads parked waiting for the node certificate learn that it failed, so their
    // state and error say why (they resume when the node certificate arrives).
    if (entry.type === 'node') {
      for (const e of this.entries.values()) {
        if (e.type === 'workload' && !e.fetching && e.state === CertState.Pending && !e.cancelNext) void this.fetch(e);
      }
    }
  }

  /** Identities backing off because the CA could not be reached, not yet retried early this streak. */
  private waitingOnCa(): Entry[] {
    return [...this.entries.values()].filter((e) =>
      !e.fetching && e.cancelNext && !e.woken && isWeftError(e.lastError, 'WEFT_CA_UNREACHABLE'));
  }

  /**
   * The CA answers again: identities waiting for it retry soon, jittered, instead of
   * when their backoff (up to 150 s) ends. Once per failure streak, so a CA that
   * accepts connections but fails calls still gets the ordinary backoff.
   */
  private caAnswered(reason: string): void {
    const now = this.clock.now();
    const spread = this.opts.recoveryJitterMs ?? 2000;
    let woken = 0;
    for (const e of this.waitingOnCa()) {
      const delay = Math.round(Math.random() * spread);
      if ((e.retryAt ?? 0) - now <= delay) continue; // due sooner anyway
      e.woken = true;
      e.cancelNext?.();
      e.retryAt = now + delay;
      e.cancelNext = boundedDelay(delay, () => { void this.fetch(e); }, this.clock);
      woken++;
    }
    if (woken > 0) this.log.info({ reason, identities: woken, withinMs: spread }, 'the CA answers again; retrying certificates that were backing off');
  }

  private expired(entry: Entry, cert: WorkloadCert): void {
    if (!this.live(entry) || entry.cert !== cert) return;
    this.transition(entry, CertState.Expired, 'not renewed before notAfter', entry.lastError);
    if (!entry.fetching && !entry.cancelNext) void this.fetch(entry);
  }

  private tryVerify(chain: string[], identity: string): ReturnType<typeof verifyIssuedChain> | undefined {
    try {
      return verifyIssuedChain(chain, this.client.rootPem, identity, this.clock.now());
    } catch (err) {
      this.log.warn({ err }, 'the client\'s node certificate is unusable; joining again');
      return undefined;
    }
  }

  private unavailable(identity: string, why: string): WeftError {
    return new WeftError('WEFT_CERT_UNAVAILABLE',
      `no certificate for ${identity}: ${why}; check the CA is reachable and the workload is registered on this node`);
  }
}

function fetchResult(err: unknown): FetchResult {
  if (!isWeftError(err)) return 'error';
  if (err.code === 'WEFT_CA_UNREACHABLE') return 'unreachable';
  return err.code.startsWith('WEFT_CA_') || err.code === 'WEFT_REGISTRY_UNREACHABLE' ? 'refused' : 'error';
}
