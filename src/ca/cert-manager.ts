import { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import { WeftError, isWeftError } from '../lib/errors';
import { backoffDelay } from '../lib/backoff';
import { boundedDelay, realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { nodeIdentity } from './authorize';
import { CertFetcher } from './cert-fetch';
import type { BearerCredentialConfig } from './join-credential';
import { generateKeyAndCsr } from './issuer';
import { CertState, TRANSITIONS, type CertEntry, type CertificateSource, type CertStatus, type CertWaiter, type WorkloadCert } from './cert-state';
import { Limiter } from './limiter';
import { createCertMetrics, type CertMetrics } from './metrics';
import { CaRecoveryWatch } from './recovery-watch';

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
  /**
   * Single-identity mode (a waypoint; see identity-certs.ts): the manager holds exactly
   * `identity`, requested with `credential` (a bearer token, no node certificate, no
   * join); there is no node certificate and any other identity is refused. `nodeName`,
   * `joinToken` and `joinSaTokenFile` are then unused.
   */
  own?: { identity: string; credential: BearerCredentialConfig };
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
   * Key generations run at once (default 2), on libuv's small shared thread pool.
   * ECDSA P-256 keys take well under 1 ms, but an RSA-2048 one takes 50-300 ms:
   * unbounded, a burst of those would queue DNS lookups and file I/O for seconds.
   */
  maxConcurrentKeygen?: number;
}

export interface CertificateManagerEvents {
  /** A new certificate for `identity` is in place (also for the node certificate). */
  updated: [identity: string];
  state: [identity: string, from: CertState, to: CertState];
}

export { CertState, type CertificateSource, type CertStatus, type WorkloadCert };

export class CertificateManager extends EventEmitter<CertificateManagerEvents> {
  private readonly client: CertificateSource;
  private readonly nodeName: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly opts: CertificateManagerOptions;
  private readonly entries = new Map<string, CertEntry>();
  /** The node certificate's entry; undefined in single-identity mode. */
  private readonly node: CertEntry | undefined;
  private readonly metrics: CertMetrics;
  private readonly fetcher: CertFetcher;
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
    this.recovery = new CaRecoveryWatch({
      ...(opts.client.waitReachable ? { probe: opts.client.waitReachable.bind(opts.client) } : {}),
      jitterMs: opts.recoveryJitterMs ?? 2000, clock: this.clock, logger: this.log,
    });
    this.metrics = createCertMetrics(opts.metrics, () => this.entries.values(), () => this.clock.now());
    this.fetcher = new CertFetcher({
      client: opts.client, nodeName: opts.nodeName, ttlSec: opts.ttlSec ?? 0, clock: this.clock, logger: this.log,
      join: opts, own: opts.own?.credential,
    });

    if (opts.own) {
      this.node = undefined;
      void this.fetch(this.newEntry(opts.own.identity, 'workload'));
      return;
    }
    const node = this.newEntry(nodeIdentity(this.client.trustDomain), 'node');
    this.node = node;
    const joined = this.fetcher.clientNodeCert(node.identity);
    if (joined) this.install(node, joined, 'node certificate from join');
    else void this.fetch(node);
  }

  /** The trust anchors (one root, or old and new during a rotation), for verifying peers; follows the trust-anchor file. */
  get rootsPem(): string {
    return this.client.rootPem;
  }

  /** The identity of this node's proxy (its CA credential); in single-identity mode, that identity. */
  get nodeIdentity(): string {
    return this.node?.identity ?? this.opts.own!.identity;
  }

  /**
   * Declares the workload identities this node needs: new ones are fetched now,
   * ones no longer listed are dropped (also those only ever asked for through get()).
   */
  setWanted(identities: Iterable<string>): void {
    if (this.stopped || this.opts.own) return;
    const wanted = new Set(identities);
    wanted.delete(this.nodeIdentity);
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
    if (this.opts.own && identity !== this.opts.own.identity) {
      return Promise.reject(this.unavailable(identity, `this process holds only its own identity ${this.opts.own.identity}`));
    }
    let entry = this.entries.get(identity);
    if (!entry) {
      entry = this.newEntry(identity, 'workload');
      void this.fetch(entry);
    }
    const target = entry;
    return new Promise<WorkloadCert>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.opts.getTimeoutMs ?? 10_000;
      const waiter: CertWaiter = {
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

  private newEntry(identity: string, type: CertEntry['type']): CertEntry {
    const entry: CertEntry = { identity, type, state: CertState.Pending, receivedAt: 0, failures: 0, fetching: false, waiters: new Set() };
    this.entries.set(identity, entry);
    return entry;
  }

  private drop(entry: CertEntry): void {
    this.clearTimers(entry, this.unavailable(entry.identity, 'the identity is no longer wanted on this node'));
    this.entries.delete(entry.identity);
    this.log.info({ identity: entry.identity }, 'certificate dropped');
  }

  private clearTimers(entry: CertEntry, err: Error): void {
    entry.cancelNext?.();
    entry.cancelExpiry?.();
    entry.cancelNext = entry.cancelExpiry = undefined;
    this.recovery.settled(entry);
    for (const w of entry.waiters) w.reject(err);
    entry.waiters.clear();
  }

  /** The one place states change; every change is logged and emitted. */
  private transition(entry: CertEntry, to: CertState, reason: string, err?: unknown): void {
    const from = entry.state;
    if (from === to) return;
    if (!TRANSITIONS[from].includes(to)) throw new Error(`certificate ${entry.identity}: illegal transition ${from} -> ${to} (${reason})`);
    entry.state = to;
    const fields = { identity: entry.identity, type: entry.type, from, to, reason, ...(err ? { err } : {}) };
    if (to === CertState.Expired || to === CertState.Failed) this.log.warn(fields, 'certificate state');
    else this.log.info(fields, 'certificate state');
    this.emit('state', entry.identity, from, to);
  }

  private live(entry: CertEntry): boolean {
    return !this.stopped && this.entries.get(entry.identity) === entry;
  }

  private async fetch(entry: CertEntry): Promise<void> {
    if (entry.fetching || !this.live(entry)) return;
    entry.fetching = true;
    entry.cancelNext?.();
    entry.cancelNext = undefined;
    this.recovery.busy(entry);
    if (entry.state === CertState.Ready) this.transition(entry, CertState.Refreshing, 'half-life reached');
    try {
      // A node's CSRs name nothing (the CA decides); a single-identity caller names its one identity.
      const names = entry.type === 'node' ? { commonName: this.nodeName } : this.opts.own ? { uri: entry.identity } : {};
      entry.pendingKey ??= await this.keygens.run(() => generateKeyAndCsr(names));
      if (!this.live(entry)) return;
      // Without a node certificate the CA can only refuse; asking anyway would cost a
      // backoff step at every start-up. The node certificate's install resumes us.
      const node = this.node;
      if (node && entry.type === 'workload' && !this.current(node.identity)) {
        const nodeStuck = node.state === CertState.Failed || node.state === CertState.Expired;
        if (!nodeStuck) return;
        throw node.lastError ?? new WeftError('WEFT_CA_UNAUTHENTICATED', `node ${this.nodeName} has no valid node certificate yet`);
      }
      const cert = entry.type === 'node'
        ? await this.fetcher.node(entry.identity, entry.pendingKey, entry)
        : await this.fetcher.workload(entry.identity, entry.pendingKey);
      entry.pendingKey = undefined;
      if (!this.live(entry)) return;
      this.metrics.issued(entry.type);
      this.install(entry, cert, entry.failures > 0 ? `renewed after ${entry.failures} failed attempts` : 'issued');
      this.recovery.caAnswered(`the CA issued a ${entry.type} certificate`);
    } catch (err) {
      if (!this.live(entry)) return;
      this.failed(entry, err);
    } finally {
      entry.fetching = false;
    }
  }

  private install(entry: CertEntry, cert: WorkloadCert, reason: string): void {
    const now = this.clock.now();
    entry.cert = cert;
    entry.receivedAt = now;
    entry.failures = 0;
    entry.lastError = undefined;
    this.recovery.settled(entry);
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

  private failed(entry: CertEntry, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    entry.failures++;
    entry.lastError = error;
    this.metrics.failed(entry.type, err);
    if (entry.state === CertState.Pending) this.transition(entry, CertState.Failed, 'first request failed', error);
    const delay = backoffDelay(entry.failures, this.opts.backoff);
    this.log.warn({ identity: entry.identity, state: entry.state, failures: entry.failures, retryInMs: delay, code: isWeftError(error) ? error.code : undefined, err: error.message },
      entry.cert && entry.state === CertState.Refreshing ? 'certificate refresh failed; keeping the current one' : 'certificate request failed');
    this.retryIn(entry, delay);
    // At rest in backoff for an unreachable CA: retried early when it answers again.
    if (isWeftError(error, 'WEFT_CA_UNREACHABLE')) this.recovery.backingOff(entry, this.clock.now() + delay, (ms) => this.retryIn(entry, ms));
    // Workloads parked waiting for the node certificate learn that it failed, so their
    // state and error say why (they resume when the node certificate arrives).
    if (entry.type === 'node') {
      for (const e of this.entries.values()) {
        if (e.type === 'workload' && !e.fetching && e.state === CertState.Pending && !e.cancelNext) void this.fetch(e);
      }
    }
  }

  /** (Re)schedules the entry's next fetch `ms` from now. */
  private retryIn(entry: CertEntry, ms: number): void {
    entry.cancelNext?.();
    entry.cancelNext = boundedDelay(ms, () => { void this.fetch(entry); }, this.clock);
  }

  private expired(entry: CertEntry, cert: WorkloadCert): void {
    if (!this.live(entry) || entry.cert !== cert) return;
    this.transition(entry, CertState.Expired, 'not renewed before notAfter', entry.lastError);
    if (!entry.fetching && !entry.cancelNext) void this.fetch(entry);
  }

  private unavailable(identity: string, why: string): WeftError {
    return new WeftError('WEFT_CERT_UNAVAILABLE',
      `no certificate for ${identity}: ${why}; check the CA is reachable and the workload is registered on this node`);
  }
}
