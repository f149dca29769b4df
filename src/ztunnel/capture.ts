import type { Logger } from '../lib/log';
import type { MeshState } from '../registry/state';
import { createCaptureApplier, type IptablesApplier } from '../iptables/apply';
import { generateCaptureRules } from '../iptables/rules';
import { ExecCommandRunner, type CommandRunner } from '../iptables/runner';
import { capturedServicePorts } from './vip-resolve';

/**
 * Keeps this node's capture rules equal to the set of enrolled pods on it and the
 * service VIP:ports that have an enrolled endpoint on it (so non-mesh clients cannot
 * reach those pods through the VIP uncaptured). Registry changes arrive in bursts (a
 * namespace relabel touches every pod), so a reconcile is coalesced into one
 * iptables-restore per tick; rules are re-applied only when the generated text changed.
 */
export class CaptureReconciler {
  private readonly applier: IptablesApplier;
  private applied: string | undefined;
  private scheduled: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly onChange = () => this.schedule();
  /** Number of successful applies (tests and /config_dump read it). */
  applies = 0;
  lastError: string | undefined;

  constructor(private readonly opts: {
    state: MeshState; nodeName: string; nodeAddress: string; logger: Logger; runner?: CommandRunner; debounceMs?: number;
  }) {
    this.applier = createCaptureApplier({ runner: opts.runner ?? new ExecCommandRunner(), logger: opts.logger });
  }

  /** Applies the current rules once and then follows the state. */
  async start(): Promise<void> {
    await this.reconcile();
    this.opts.state.on('change', this.onChange);
    this.opts.state.on('snapshot', this.onChange);
  }

  enrolledAddresses(): string[] {
    const ips = new Set<string>();
    for (const w of this.opts.state.workloadsOnNode(this.opts.nodeName)) {
      if (w.enrolled) for (const ip of w.record.addresses) ips.add(ip);
    }
    return [...ips].sort();
  }

  private schedule(): void {
    if (this.stopped || this.scheduled) return;
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined;
      this.running = this.running.then(() => this.reconcile()).catch(() => undefined);
    }, this.opts.debounceMs ?? 20);
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    const enrolledPodIps = this.enrolledAddresses();
    const pods = new Set(enrolledPodIps);
    // A VIP equal to a pod or the node address is bad registry data; skipping it keeps
    // the rest of the rules applying instead of failing validation as a whole.
    const capturedServices = capturedServicePorts(this.opts.state, this.opts.nodeName)
      .filter((s) => s.vip !== this.opts.nodeAddress && !pods.has(s.vip));
    const text = generateCaptureRules({ nodeAddress: this.opts.nodeAddress, enrolledPodIps, capturedServices });
    if (text === this.applied) return;
    try {
      await this.applier.apply(text);
      this.applied = text;
      this.applies++;
      this.lastError = undefined;
      this.opts.logger.info({ enrolledPods: enrolledPodIps.length, capturedServicePorts: capturedServices.length }, 'capture rules applied');
    } catch (err) {
      // The last good rules stay in force; the next registry change retries.
      this.lastError = err instanceof Error ? err.message : String(err);
      this.opts.logger.error({ err }, 'capture rules rejected; keeping the previous rules');
      throw err;
    }
  }

  /** Stops following and removes every rule it installed. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scheduled) clearTimeout(this.scheduled);
    this.opts.state.off('change', this.onChange);
    this.opts.state.off('snapshot', this.onChange);
    await this.running;
    await this.applier.remove();
  }
}
