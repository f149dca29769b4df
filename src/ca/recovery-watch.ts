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

export class CaRecoveryWatch {
  private running = false;
  private stopped = false;

  constructor(
    private readonly probe: CaProbe | undefined,
    /** Whether any identity still waits in backoff for an unreachable CA. */
    private readonly waiting: () => boolean,
    /** Called once per watch when the CA's channel is READY. */
    private readonly onReachable: () => void,
  ) {}

  /** Starts probing unless a probe runs already; it ends when the CA answers or nobody waits. */
  arm(): void {
    if (this.running || this.stopped || !this.probe) return;
    this.running = true;
    void this.run(this.probe).finally(() => { this.running = false; });
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(probe: CaProbe): Promise<void> {
    while (!this.stopped && this.waiting()) {
      const started = Date.now();
      let ready = false;
      try {
        ready = await probe(PROBE_WINDOW_MS);
      } catch {
        ready = false;
      }
      if (this.stopped) return;
      if (ready) {
        this.onReachable();
        return;
      }
      // Real time, not the manager's clock: this paces network I/O, it decides nothing.
      const left = MIN_PROBE_GAP_MS - (Date.now() - started);
      if (left > 0) await new Promise((r) => setTimeout(r, left).unref());
    }
  }
}
