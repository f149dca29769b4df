/**
 * Leader election on a coordination.k8s.io/v1 Lease, like client-go's: a candidate
 * takes the lease when it is free or when nobody renewed it for leaseDurationSeconds
 * as measured on OUR clock since we last saw it change (no cross-node clock trust).
 * Every write is a PUT carrying the resourceVersion we read, so two candidates racing
 * for it get one 200 and one 409. The leader renews every renewIntervalMs and steps
 * down when it could not renew for renewDeadlineMs, which is shorter than the lease,
 * so it stops writing before anyone else may start.
 */
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../lib/log';
import { k8sStatus, type KubeClient, type KubeObject } from '../k8s/client';

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}
export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

export interface LeaderElectorOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds?: number;
  /** Leader: renew this often. Default leaseDuration / 3. */
  renewIntervalMs?: number;
  /** Leader: step down after failing to renew for this long. Default 2/3 of the lease. */
  renewDeadlineMs?: number;
  /** Candidate: try to acquire this often. Default renewIntervalMs. */
  retryIntervalMs?: number;
  logger?: Logger;
  now?: () => number;
}

export interface LeaderEvents {
  started: [];
  stopped: [];
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector extends EventEmitter<LeaderEvents> {
  private leader = false;
  private stopping = false;
  private timer?: NodeJS.Timeout;
  private lastRenew = 0;
  private observed?: { key: string; at: number };
  private readonly duration: number;
  private readonly renewMs: number;
  private readonly deadlineMs: number;
  private readonly retryMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly path: string;
  private inFlight?: Promise<void>;

  constructor(private readonly client: KubeClient, private readonly opts: LeaderElectorOptions) {
    super();
    this.duration = opts.leaseDurationSeconds ?? 15;
    this.renewMs = opts.renewIntervalMs ?? Math.round((this.duration * 1000) / 3);
    this.deadlineMs = opts.renewDeadlineMs ?? Math.round((this.duration * 1000 * 2) / 3);
    this.retryMs = opts.retryIntervalMs ?? this.renewMs;
    this.logger = (opts.logger ?? silentLogger()).child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.now = opts.now ?? Date.now;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${opts.namespace}/leases`;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    this.stopping = false;
    this.schedule(0);
  }

  /** Stops campaigning; a leader releases the lease so a successor need not wait it out. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.inFlight;
    if (this.leader && opts.release !== false) await this.release();
    this.setLeader(false);
  }

  private schedule(ms: number): void {
    if (this.stopping) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.inFlight = this.round().finally(() => {
        this.inFlight = undefined;
      });
    }, ms);
  }

  private async round(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, this.leader ? 'lease renewal failed' : 'lease acquisition failed');
    }
    if (this.stopping) return;
    if (ok) {
      this.lastRenew = this.now();
      this.setLeader(true);
    } else if (this.leader && (this.lostForSure || this.now() - this.lastRenew >= this.deadlineMs)) {
      // A 409 or a lease held by someone else means it is lost for sure; a plain
      // failure (API unreachable) is retried until the renew deadline.
      this.setLeader(false);
    }
    this.lostForSure = false;
    this.schedule(this.leader ? this.renewMs : this.retryMs);
  }

  private lostForSure = false;

  private setLeader(v: boolean): void {
    if (v === this.leader) return;
    this.leader = v;
    this.logger.info(v ? 'became leader' : 'stepped down');
    this.emit(v ? 'started' : 'stopped');
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.now();
    let lease: Lease | undefined;
    try {
      lease = await this.client.get<Lease>(`${this.path}/${this.opts.name}`);
    } catch (err) {
      if (k8sStatus(err) !== 404) throw err;
    }
    const spec: LeaseSpec = {
      holderIdentity: this.opts.identity, leaseDurationSeconds: this.duration, renewTime: microTime(now),
    };
    if (!lease) {
      try {
        await this.client.create(this.path, {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
          metadata: { name: this.opts.name, namespace: this.opts.namespace },
          spec: { ...spec, acquireTime: microTime(now), leaseTransitions: 0 },
        });
        return true;
      } catch (err) {
        if (k8sStatus(err) === 409) return false;
        throw err;
      }
    }
    const cur = lease.spec ?? {};
    const holder = cur.holderIdentity ?? '';
    const key = `${holder}|${cur.renewTime ?? ''}|${lease.metadata.resourceVersion}`;
    if (this.observed?.key !== key) this.observed = { key, at: now };
    const ours = holder === this.opts.identity;
    const expired = holder === '' || now - this.observed.at >= (cur.leaseDurationSeconds ?? this.duration) * 1000;
    if (!ours && !expired) {
      if (this.leader) this.lostForSure = true;
      return false;
    }
    const next: Lease = {
      ...lease,
      spec: {
        ...cur, ...spec,
        acquireTime: ours ? cur.acquireTime ?? microTime(now) : microTime(now),
        leaseTransitions: ours ? cur.leaseTransitions ?? 0 : (cur.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      await this.client.update(`${this.path}/${this.opts.name}`, next);
      return true;
    } catch (err) {
      if (k8sStatus(err) === 409) {
        if (this.leader) this.lostForSure = true;
        return false;
      }
      throw err;
    }
  }

  private async release(): Promise<void> {
    try {
      const lease = await this.client.get<Lease>(`${this.path}/${this.opts.name}`);
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      await this.client.update(`${this.path}/${this.opts.name}`, {
        ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.now()) },
      });
      this.logger.info('released the lease');
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not release the lease; a successor takes over when it expires');
    }
  }
}
