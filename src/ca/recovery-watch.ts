import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';

/**
 * Notices the CA's return while certificates wait in backoff.
 *
 * The certificate manager backs off per identity (0.5 s doubling to 150 s, as Istio's
 * ztunnel), so after a long outage an identity may next retry minutes after the CA is
 * back. While some identity waits because the CA was unreachable, this probes the CA's
 * channel (grpc connectivity: TCP and TLS up, no request, no key) and reports the first
 * READY, so the manager retries them all at once (jittered) instead.
 *
 * Probing costs a connection attempt at grpc's reconnect pace (at most 2 s apart,
 * client.ts) while the CA is away, and nothing while no identity waits.
 */
export type CaProbe = (timeoutMs: number) => Promise<boolean>;

/** How long one probe waits for READY before checking whether anyone still waits. */
const PROBE_WINDOW_MS = 30_000;
/** A probe that ends early (its channel was replaced) is not repeated sooner than this. */
const MIN_PROBE_GAP_MS = 1_000;

export interface CaRecoveryWatchOptions {
  /** Probes the CA's channel; without it only an issued certificate shows the CA is back. */
  probe?: CaProbe;
  /** Early retries land at a random point within this many ms, so the nodes of a cluster do not all send their CSRs at once. */
  jitterMs: number;
  clock: Clock;
  logger: Logger;
  /** Uniform in [0, 1); tests pin it. Default Math.random. */
  random?: () => number;
}

/** One identity in backoff for an unreachable CA. */
interface Waiting {
  retryAt: number;
  /** Moves the identity's retry to `ms` from now. */
  retryIn(ms: number): void;
}

/**
 * The CA-return bookkeeping: which identities wait in backoff for an unreachable CA, and
 * waking them (jittered) when it answers again, once per failure streak, so a CA that
 * accepts connections but fails calls still gets the ordinary backoff.
 */
export class CaRecoveryWatch {
  private running = false;
  private stopped = false;
  /** Keyed by the manager's entry: at rest in backoff, not fetching, not yet woken this streak. */
  private readonly waiting = new Map<object, Waiting>();
  /** Woken early during their current failure streak: not woken again until it ends (settled). */
  private readonly woken = new WeakSet<object>();
  private readonly random: () => number;

  constructor(private readonly opts: CaRecoveryWatchOptions) {
    this.random = opts.random ?? Math.random;
  }

  /**
   * `key` failed because the CA was unreachable and retries at `retryAt` (clock ms);
   * starts probing for the CA's return unless it was already woken this streak.
   */
  backingOff(key: object, retryAt: number, retryIn: (ms: number) => void): void {
    if (this.stopped || this.woken.has(key)) return;
    this.waiting.set(key, { retryAt, retryIn });
    this.arm();
  }

  /** `key` is fetching again, or gone: no longer at rest in backoff. */
  busy(key: object): void {
    this.waiting.delete(key);
  }

  /** `key` got a certificate (or is gone): its failure streak is over. */
  settled(key: object): void {
    this.waiting.delete(key);
    this.woken.delete(key);
  }

  /**
   * The CA answers again: identities waiting for it retry soon, jittered, instead of
   * when their backoff (up to 150 s) ends.
   */
  caAnswered(reason: string): void {
    const now = this.opts.clock.now();
    let woken = 0;
    for (const [key, w] of this.waiting) {
      const delay = Math.round(this.random() * this.opts.jitterMs);
      if (w.retryAt - now <= delay) continue; // due sooner anyway
      this.waiting.delete(key);
      this.woken.add(key);
      w.retryIn(delay);
      woken++;
    }
    if (woken > 0) this.opts.logger.info({ reason, identities: woken, withinMs: this.opts.jitterMs }, 'the CA answers again; retrying certificates that were backing off');
  }

  stop(): void {
    this.stopped = true;
    this.waiting.clear();
  }

  /** Starts probing unless a probe runs already; it ends when the CA answers or nobody waits. */
  private arm(): void {
    if (this.running || this.stopped || !this.opts.probe) return;
    this.running = true;
    void this.run(this.opts.probe).finally(() => { this.running = false; });
  }

  private async run(probe: CaProbe): Promise<void> {
    while (!this.stopped && this.waiting.size > 0) {
      const started = Date.now();
      let ready = false;
      try {
        ready = await probe(PROBE_WINDOW_MS);
      } catch {
        ready = false;
      }
      if (this.stopped) return;
      if (ready) {
        this.caAnswered('the CA channel is ready again');
        return;
      }
      // Real time, not the manager's clock: this paces network I/O, it decides nothing.
      const left = MIN_PROBE_GAP_MS - (Date.now() - started);
      if (left > 0) await new Promise((r) => setTimeout(r, left).unref());
    }
  }
}
