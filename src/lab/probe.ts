/**
 * Readiness probes as the kubelet runs them, for the lab's pods and waypoints: each
 * target is checked every period; `failureThreshold` failures in a row make it
 * Unhealthy, `successThreshold` successes in a row Healthy again. The result is the
 * workload's status in the registry (src/lab/prober.ts writes it), which is what the
 * ztunnels' load balancers go by. Pure decision logic with an injectable clock and
 * check function, so it is tested without waiting (test/lab-probe.test.ts).
 */
import { realClock, type Clock } from '../lib/clock';
import { READINESS_PORT } from '../mesh/ports';
import type { WorkloadStatus } from '../registry/types';

/** What a probe checks: an HTTP GET answering 200-399, or a TCP connect. */
export type ProbeCheck =
  | { kind: 'http'; path: string; port: number }
  | { kind: 'tcp'; port: number };

/** A validated readiness probe (topology `readinessProbe`, docs/lab.md). */
export interface ReadinessProbe {
  check: ProbeCheck;
  periodSeconds: number;
  /** Each check gives up after this long (at most the period, so checks never overlap). */
  timeoutSeconds: number;
  failureThreshold: number;
  successThreshold: number;
}

/**
 * The kubelet's failureThreshold default. Not 1: on a loaded machine (CI: 2 cores, load
 * 10) one check can miss its 1 s timeout while the app is fine, and with one failure
 * enough, that single stall would take a healthy echo or waypoint out for a period and
 * fail whatever traffic relied on it. Three in a row still take a stopped app out within
 * about three seconds, as a period of one second is kept.
 */
export const DEFAULT_FAILURE_THRESHOLD = 3;

/** An HTTP GET probe every second with the default thresholds. */
function httpEverySecond(path: string, port: number): ReadinessProbe {
  return Object.freeze({
    check: Object.freeze({ kind: 'http' as const, path, port }),
    periodSeconds: 1,
    timeoutSeconds: 1,
    failureThreshold: DEFAULT_FAILURE_THRESHOLD,
    successThreshold: 1,
  });
}

/**
 * What `run: echo` pods get when they declare none: HTTP GET / on the echo port every
 * second; three failures in a row take the endpoint out.
 */
export const ECHO_DEFAULT_PROBE = httpEverySecond('/', 8080);

/** The probe the lab gives a waypoint pod: its readiness endpoint (docs/waypoint.md). */
export const WAYPOINT_PROBE = httpEverySecond('/healthz/ready', READINESS_PORT);

/** One thing to probe: a workload (by registry uid) at an address. */
export interface ProbeTarget {
  uid: string;
  address: string;
  probe: ReadinessProbe;
}

/** Result of one check; `detail` says why it failed ("connection refused", "HTTP 503"). */
export interface CheckResult {
  ok: boolean;
  detail: string;
}

export type CheckFn = (address: string, check: ProbeCheck, timeoutMs: number) => Promise<CheckResult>;

/** A target's readiness changed (also its first decision). */
export interface ReadinessChange {
  uid: string;
  status: WorkloadStatus;
  /** Why: the last check's detail and how many in a row. */
  reason: string;
  at: number;
}

/**
 * Counts consecutive results for one target and decides its status. Starts undecided:
 * the first success decides Healthy at once, so a lab coming up (or a prober restarted)
 * reports a serving target after one period; failures need their threshold even then,
 * as the lab comes up when the machine is busiest and one stalled first check must not
 * take a healthy pod out (undecided, nothing is written: the registry keeps its status).
 */
export class ReadinessState {
  private status: WorkloadStatus | undefined;
  private successes = 0;
  private failures = 0;

  constructor(private readonly probe: ReadinessProbe) {}

  get current(): WorkloadStatus | undefined {
    return this.status;
  }

  /** Records one result; returns the new status when it changed, else undefined. */
  record(r: CheckResult): WorkloadStatus | undefined {
    if (r.ok) {
      this.successes++;
      this.failures = 0;
    } else {
      this.failures++;
      this.successes = 0;
    }
    let next = this.status;
    if (r.ok && (this.status === undefined || this.successes >= this.probe.successThreshold)) next = 'Healthy';
    if (!r.ok && this.failures >= this.probe.failureThreshold) next = 'Unhealthy';
    if (next === this.status) return undefined;
    this.status = next;
    return next;
  }

  /** "3 failures in a row: connection refused". */
  streak(r: CheckResult): string {
    const n = r.ok ? this.successes : this.failures;
    return `${n} ${r.ok ? 'success' : 'failure'}${n === 1 ? '' : r.ok ? 'es' : 's'} in a row${r.ok ? '' : `: ${r.detail}`}`;
  }
}

export interface ProberOptions {
  check: CheckFn;
  onChange: (change: ReadinessChange) => void;
  /** Each check's result whose detail differs from the target's previous one (for the log). */
  onResult?: (uid: string, result: CheckResult) => void;
  /** After every check once decided: the target's status (the registry is made to agree). */
  onCheck?: (uid: string, status: WorkloadStatus) => void;
  clock?: Clock;
}

/**
 * Runs each target's probe every period on the clock. `setTargets` replaces the set
 * (the lab adds and removes waypoints while it runs): a target kept with the same
 * probe keeps its state and timer; a new one is checked at once.
 */
export class Prober {
  private readonly clock: Clock;
  private readonly entries = new Map<string, Entry>();
  private stopped = false;

  constructor(private readonly opts: ProberOptions) {
    this.clock = opts.clock ?? realClock;
  }

  setTargets(targets: readonly ProbeTarget[]): void {
    const wanted = new Map(targets.map((t) => [t.uid, t]));
    for (const [uid, e] of this.entries) {
      const t = wanted.get(uid);
      if (!t || keyOf(t) !== e.key) {
        this.clock.clearTimeout(e.timer);
        this.entries.delete(uid);
      }
    }
    for (const t of targets) {
      if (this.entries.has(t.uid) || this.stopped) continue;
      const entry: Entry = { target: t, state: new ReadinessState(t.probe), timer: undefined, key: keyOf(t), lastDetail: '' };
      this.entries.set(t.uid, entry);
      this.run(entry);
    }
  }

  /** Status of each target decided so far. */
  statuses(): Map<string, WorkloadStatus | undefined> {
    return new Map([...this.entries].map(([uid, e]) => [uid, e.state.current]));
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) this.clock.clearTimeout(e.timer);
    this.entries.clear();
  }

  private run(entry: Entry): void {
    const { target } = entry;
    const periodMs = target.probe.periodSeconds * 1000;
    const started = this.clock.now();
    void this.opts.check(target.address, target.probe.check, target.probe.timeoutSeconds * 1000)
      .catch((err: unknown): CheckResult => ({ ok: false, detail: err instanceof Error ? err.message : String(err) }))
      .then((result) => {
        if (this.entries.get(target.uid) !== entry) return; // removed or replaced meanwhile
        if (result.detail !== entry.lastDetail) {
          entry.lastDetail = result.detail;
          this.opts.onResult?.(target.uid, result);
        }
        const changed = entry.state.record(result);
        if (changed) this.opts.onChange({ uid: target.uid, status: changed, reason: entry.state.streak(result), at: this.clock.now() });
        const decided = entry.state.current;
        if (decided) this.opts.onCheck?.(target.uid, decided);
        // The next check starts one period after this one started (a slow check does not stretch it).
        entry.timer = this.clock.setTimeout(() => this.run(entry), Math.max(0, started + periodMs - this.clock.now()));
      });
  }
}

interface Entry {
  target: ProbeTarget;
  state: ReadinessState;
  timer: unknown;
  /** The target's address and probe: a change of either starts it over. */
  key: string;
  lastDetail: string;
}

function keyOf(t: ProbeTarget): string {
  return JSON.stringify([t.address, t.probe]);
}
