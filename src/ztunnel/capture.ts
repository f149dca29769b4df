import type { Logger } from '../lib/log';
import type { MeshState } from '../registry/state';
import { createCaptureApplier, createGuardApplier, type IptablesApplier } from '../iptables/apply';
import type { IpFamily } from '../iptables/ip';
import { familyOf } from '../lib/address';
import { byFamily, generateCaptureGuardRules, generateCaptureRules } from '../iptables/rules';
import { ExecCommandRunner, type CommandRunner } from '../iptables/runner';
import { capturedServicePorts } from './vip-resolve';

/** One table of one family and its applier. */
interface CaptureTable {
  family: IpFamily;
  what: 'nat' | 'filter';
  applier: IptablesApplier;
}

/** A table the reconciler keeps, with the text last applied to it. */
interface Table extends CaptureTable {
  applied?: string;
}

/** What one pass wants in force, and the enrolled pod addresses it was built from. */
interface Plan {
  texts: Map<Table, string>;
  /** Enrolled pod addresses on this node, by family, canonical. */
  pods: Record<IpFamily, string[]>;
}

/**
 * The four tables capture owns: nat (the capture chains) and filter (the guard), for
 * IPv4 (iptables) and IPv6 (ip6tables).
 */
function captureTables(opts: { runner?: CommandRunner; netns?: string; logger: Logger }): CaptureTable[] {
  const common = { runner: opts.runner ?? new ExecCommandRunner(), netns: opts.netns, logger: opts.logger };
  return ([4, 6] as const).flatMap((family) => [
    { family, what: 'nat' as const, applier: createCaptureApplier({ ...common, family }) },
    { family, what: 'filter' as const, applier: createGuardApplier({ ...common, family }) },
  ]);
}

/**
 * A host without IPv6 netfilter has nothing to guard while no enrolled pod has an IPv6
 * address: its IPv6 tables may fail to apply and are not read back.
 */
function optional(t: Table, plan: Plan): boolean {
  return t.family === 6 && plan.pods[6].length === 0;
}

export interface CaptureReconcilerOptions {
  state: MeshState;
  nodeName: string;
  /**
   * The addresses the ztunnel's listeners are bound to, at most one per family. A
   * family without one is not captured: its enrolled pod addresses are guarded (new TCP
   * to and from them refused) instead, so a dual-stack pod never leaks plaintext.
   */
  listenAddresses: readonly string[];
  logger: Logger;
  runner?: CommandRunner;
  /** Apply in this named network namespace instead of the current one (tests). */
  netns?: string;
  debounceMs?: number;
  /** How often the rules in force are compared with the wanted ones (drift repaired). Default 10 s. */
  verifyIntervalMs?: number;
}

/**
 * Keeps this node's capture rules equal to the set of enrolled pods on it and the
 * service VIP:ports that have an enrolled endpoint on it (so non-mesh clients cannot
 * reach those pods through the VIP uncaptured), for IPv4 (iptables) and IPv6
 * (ip6tables) alike. Registry changes arrive in bursts (a namespace relabel touches
 * every pod), so a reconcile is coalesced into one iptables-restore per table and tick;
 * rules are re-applied only when the generated text changed.
 *
 * Fail closed across restarts: stop() leaves the rules in place. While no ztunnel runs,
 * enrolled pods' traffic is DNAT'ed to ports nobody listens on and is refused, never
 * sent in plaintext; a new ztunnel adopts the chains it finds (each apply replaces
 * their contents in one transaction, no flush window). Only remove() (`weft ztunnel
 * --cleanup`, an uninstall) takes them away.
 */
export class CaptureReconciler {
  private readonly tables: Table[];
  private scheduled: NodeJS.Timeout | undefined;
  private verifier: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly onChange = () => this.schedule();
  /** Number of successful reconciles that changed something (tests and /config_dump read it). */
  applies = 0;
  /** Number of reconcile passes run, changed anything or not (tests). */
  passes = 0;
  /** True once the rules in force were read back and match the wanted ones (readiness). */
  verified = false;
  lastError: string | undefined;

  constructor(private readonly opts: CaptureReconcilerOptions) {
    this.tables = captureTables(opts);
  }

  /** Applies and verifies the current rules once, then follows the state. */
  async start(): Promise<void> {
    await this.reconcile();
    this.opts.state.on('change', this.onChange);
    this.opts.state.on('snapshot', this.onChange);
    this.verifier = setInterval(() => this.enqueue(() => this.verifyAndRepair()), this.opts.verifyIntervalMs ?? 10_000);
    this.verifier.unref();
  }

  enrolledAddresses(): string[] {
    const ips = new Set<string>();
    for (const w of this.opts.state.workloadsOnNode(this.opts.nodeName)) {
      if (w.enrolled) for (const ip of w.record.addresses) ips.add(ip);
    }
    return [...ips].sort();
  }

  private listenAddress(family: IpFamily): string | undefined {
    return this.opts.listenAddresses.find((a) => familyOf(a) === family);
  }

  /** The wanted text of every table (a family without a listen address has no nat text). */
  private wanted(): Plan {
    const pods = byFamily(this.enrolledAddresses());
    const nodeRecord = this.opts.state.node(this.opts.nodeName)?.address;
    const own = byFamily([...this.opts.listenAddresses, ...(nodeRecord ? [nodeRecord] : [])]);
    const services = capturedServicePorts(this.opts.state, this.opts.nodeName);
    const texts = new Map<Table, string>();
    for (const t of this.tables) {
      const node = this.listenAddress(t.family);
      const podIps = pods[t.family];
      if (t.what === 'filter') {
        texts.set(t, generateCaptureGuardRules({ family: t.family, enrolledPodIps: podIps, captured: node !== undefined }));
      } else if (node !== undefined) {
        const taken = new Set([...podIps, ...own[t.family]]);
        // A VIP equal to a pod or node address is bad registry data; skipping it keeps
        // the rest of the rules applying instead of failing validation as a whole.
        const capturedServices = services.filter((s) => familyOf(s.vip) === t.family && !taken.has(s.vip));
        texts.set(t, generateCaptureRules({ nodeAddress: node, nodeAddresses: own[t.family], enrolledPodIps: podIps, capturedServices }));
      }
    }
    return { texts, pods };
  }

  private schedule(): void {
    if (this.stopped || this.scheduled) return;
    this.scheduled = setTimeout(() => {
      this.scheduled = undefined;
      this.enqueue(() => this.reconcile());
    }, this.opts.debounceMs ?? 20);
  }

  private enqueue(fn: () => Promise<void>): void {
    this.running = this.running.then(fn).catch(() => undefined);
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    this.passes++;
    let changed = false;
    try {
      const wanted = this.wanted();
      for (const [t, text] of wanted.texts) {
        if (text === t.applied) continue;
        await this.applyTable(t, text, optional(t, wanted));
        changed = true;
      }
      if (changed) {
        this.applies++;
        this.opts.logger.info({ enrolledPods: { ipv4: wanted.pods[4].length, ipv6: wanted.pods[6].length } }, 'capture rules applied');
      }
      // Registry changes anywhere in the cluster land here; most change no rule text of
      // this node, and reading back 2-4 tables for each would cost a process per table.
      // The periodic check (verifyAndRepair) still catches drift.
      if (changed || !this.verified) await this.verify(wanted);
    } catch (err) {
      // The last good rules stay in force; the next registry change or check retries.
      this.failed(err, 'capture rules rejected; keeping the previous rules');
      throw err;
    }
  }

  /** Readiness goes down with the reason; the queue's next pass (change or check) retries. */
  private failed(err: unknown, msg: string): void {
    this.verified = false;
    this.lastError = `${msg}: ${err instanceof Error ? err.message : String(err)}`;
    this.opts.logger.error({ err }, msg);
  }

  private async applyTable(t: Table, text: string, isOptional: boolean): Promise<void> {
    try {
      await t.applier.apply(text);
      t.applied = text;
    } catch (err) {
      // Anything but an optional table (see optional()) fails and keeps readiness down.
      if (isOptional) {
        this.opts.logger.warn({ err }, 'ip6tables unusable here and no enrolled pod has an IPv6 address; IPv6 capture skipped');
        t.applied = text;
        return;
      }
      throw err;
    }
  }

  /**
   * Reads the rules back; ready only when every table holds what was applied. Undefined
   * when they could not be read (iptables-save failed): not known to be in force is not
   * ready either, but nothing to repair from.
   */
  private async verify(wanted: Plan): Promise<string[] | undefined> {
    const problems: string[] = [];
    try {
      for (const [t, text] of wanted.texts) {
        if (optional(t, wanted)) continue;
        for (const p of await t.applier.check(text)) problems.push(`IPv${t.family} ${p}`);
      }
    } catch (err) {
      this.failed(err, 'capture rules could not be read back');
      return undefined;
    }
    this.verified = problems.length === 0;
    this.lastError = problems.length ? `capture rules not in force: ${problems.join('; ')}` : undefined;
    return problems;
  }

  /** Periodic: someone flushed or reordered our rules (an iptables restart, kube-proxy)? Put them back. */
  private async verifyAndRepair(): Promise<void> {
    if (this.stopped) return;
    let wanted: Plan;
    try {
      wanted = this.wanted();
    } catch (err) {
      this.failed(err, 'capture rules rejected; keeping the previous rules');
      return;
    }
    const problems = await this.verify(wanted);
    if (!problems?.length) return;
    this.opts.logger.warn({ problems }, 'capture rules drifted; re-applying them');
    for (const t of this.tables) t.applied = undefined;
    await this.reconcile();
  }

  /**
   * Stops following the registry and leaves the rules in force (fail closed: until a
   * ztunnel runs again, enrolled traffic is refused rather than sent in plaintext).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scheduled) clearTimeout(this.scheduled);
    if (this.verifier) clearInterval(this.verifier);
    this.opts.state.off('change', this.onChange);
    this.opts.state.off('snapshot', this.onChange);
    await this.running;
  }

  /** Uninstall: stops following and removes every capture chain and jump of both families. */
  async remove(): Promise<void> {
    await this.stop();
    await removeCaptureRules({ runner: this.opts.runner, netns: this.opts.netns, logger: this.opts.logger });
  }
}

/**
 * Removes the capture chains and jumps (nat and filter, IPv4 and IPv6) from the current
 * network namespace: `weft ztunnel --cleanup`, for uninstalling. A ztunnel never does
 * this on its own, not even when stopping.
 */
export async function removeCaptureRules(opts: { runner?: CommandRunner; netns?: string; logger: Logger }): Promise<void> {
  for (const { family, applier } of captureTables(opts)) {
    try {
      await applier.remove();
    } catch (err) {
      if (family !== 6) throw err;
      opts.logger.warn({ err }, 'ip6tables unusable here; no IPv6 capture rules to remove');
    }
  }
}
