/**
 * Authorization is not only checked when a connection opens: Istio re-evaluates live
 * connections when policies change and closes the ones now denied. Both inbound
 * listeners register their live connections here; a registry change that can alter
 * a decision (a policy, a PeerAuthentication, a workload or namespace — labels move
 * workloads in and out of selectors) triggers one pass over them.
 */
import type { Logger } from '../lib/log';
import type { MeshState } from '../registry/state';
import type { Change, Kind } from '../registry/types';
import type { AuthzDecision } from './authorization';

const RELEVANT: ReadonlySet<Kind> = new Set<Kind>(['policy', 'peerauth', 'workload', 'namespace']);

export interface Revocable {
  /** Re-runs authorization against the current state; undefined when it no longer applies (workload gone). */
  recheck(): AuthzDecision | undefined;
  /** Closes the connection (reset both sides) because `decision` denies it. */
  revoke(decision: AuthzDecision): void;
}

export class PolicyWatcher {
  private readonly live = new Set<Revocable>();
  private readonly log: Logger;
  private readonly onChange = (changes: Change[]) => {
    if (changes.some((c) => RELEVANT.has(c.kind))) this.recheckAll('registry change');
  };
  private readonly onSnapshot = () => this.recheckAll('registry reloaded');
  /** Connections closed because a change denied them, since start. */
  revoked = 0;

  /** `onRevoked(n)` is told how many connections a pass closed (for a metric). */
  constructor(private readonly state: MeshState, logger: Logger, private readonly onRevoked?: (n: number) => void) {
    this.log = logger;
    state.on('change', this.onChange);
    state.on('snapshot', this.onSnapshot);
  }

  /** Registers a live connection; call the returned function when it ends. */
  add(r: Revocable): () => void {
    this.live.add(r);
    return () => { this.live.delete(r); };
  }

  get size(): number {
    return this.live.size;
  }

  /** Returns how many connections were closed. Synchronous, so tests and callers see the effect at once. */
  recheckAll(why: string): number {
    let closed = 0;
    for (const r of [...this.live]) {
      let decision: AuthzDecision | undefined;
      try {
        decision = r.recheck();
      } catch (err) {
        this.log.error({ err }, 'authorization re-check failed; keeping the connection');
        continue;
      }
      if (!decision || decision.allowed) continue;
      this.live.delete(r);
      closed++;
      r.revoke(decision);
    }
    if (closed > 0) {
      this.revoked += closed;
      this.onRevoked?.(closed);
      this.log.warn({ closed, why }, 'closed live connections that the changed authorization now denies');
    }
    return closed;
  }

  close(): void {
    this.state.off('change', this.onChange);
    this.state.off('snapshot', this.onSnapshot);
    this.live.clear();
  }
}
