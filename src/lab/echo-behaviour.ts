/**
 * Per-pod misbehaviour of the lab's echo app, for the resilience demonstrations
 * (docs/resilience.md): a pod that fails a share of its requests with a status, one
 * that takes a fixed service time per request, and one that serves at most N requests
 * at a time (the rest wait in its queue, as a saturated backend does).
 *
 * Set at start (`--fail-status`, `--fail-ratio`, `--service-time`, `--concurrency`,
 * from the topology's `pods[].echo`) and changed live with a request to the pod's own
 * `GET /_echo/behaviour?failRatio=0&serviceTime=50ms&...` (answered with the behaviour in force), so a
 * test can make one endpoint fail and then heal it without restarting it.
 *
 * Pure apart from the timers of run(): random is injectable.
 */

/** What a pod does to every request (on top of the request's own `?status=` / `?delay=`). */
export interface EchoBehaviour {
  /** Status of a failed request (default 503). */
  failStatus: number;
  /** Share of requests failed with failStatus, 0..1 (default 0). */
  failRatio: number;
  /** Time each request takes to serve, ms (default 0). */
  serviceTimeMs: number;
  /** Requests served at once; the rest wait in order (0: no limit). */
  concurrency: number;
}

export const DEFAULT_ECHO_BEHAVIOUR: Readonly<EchoBehaviour> = Object.freeze({ failStatus: 503, failRatio: 0, serviceTimeMs: 0, concurrency: 0 });

/**
 * The lab prober's user-agent (prober.ts sends it): its readiness checks are answered
 * without the misbehaviour, so a failing or saturated pod stays Ready and what takes it
 * out of rotation is the mesh (outlier detection), not the prober.
 */
export const PROBER_USER_AGENT = 'weft-lab-prober';

/** The control path; only the pod's own echo answers it (no mesh routing depends on it). */
export const BEHAVIOUR_PATH = '/_echo/behaviour';

/**
 * The names a behaviour is written with (topology `pods[].echo`, the control query,
 * and the flags in kebab case), each with its field and check.
 */
const FIELDS: Record<string, { field: keyof EchoBehaviour; parse: (raw: string) => number | undefined; what: string }> = {
  failStatus: { field: 'failStatus', parse: (r) => intIn(r, 200, 599), what: 'a status from 200 to 599' },
  failRatio: { field: 'failRatio', parse: (r) => numIn(r, 0, 1), what: 'a ratio from 0 to 1' },
  serviceTime: { field: 'serviceTimeMs', parse: (r) => durationMs(r), what: 'a time in ms (or 1s, 300ms) up to 60s' },
  concurrency: { field: 'concurrency', parse: (r) => intIn(r, 0, 100_000), what: 'a whole number from 0 (no limit) to 100000' },
};

/** The names parseBehaviour accepts. */
export const BEHAVIOUR_KEYS: readonly string[] = Object.keys(FIELDS);

function numIn(raw: string, min: number, max: number): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= min && n <= max ? n : undefined;
}

function intIn(raw: string, min: number, max: number): number | undefined {
  const n = numIn(raw, min, max);
  return n !== undefined && Number.isInteger(n) ? n : undefined;
}

/** `200`, `200ms`, `1.5s` → ms, at most a minute. */
function durationMs(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(raw);
  if (!m) return undefined;
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  return ms <= 60_000 ? ms : undefined;
}

/**
 * Applies `changes` (field name → text) over `base`; throws an Error naming the field
 * and the expected value for anything bad or unknown. Used for both the start flags and
 * the live control request.
 */
export function parseBehaviour(changes: Iterable<[string, string]>, base: Readonly<EchoBehaviour> = DEFAULT_ECHO_BEHAVIOUR): EchoBehaviour {
  const out: EchoBehaviour = { ...base };
  for (const [key, raw] of changes) {
    const f = Object.prototype.hasOwnProperty.call(FIELDS, key) ? FIELDS[key] : undefined;
    if (!f) throw new Error(`unknown behaviour ${JSON.stringify(key)}; expected ${BEHAVIOUR_KEYS.join(', ')}`);
    const v = f.parse(raw);
    if (v === undefined) throw new Error(`${key}: expected ${f.what}, got ${JSON.stringify(raw)}`);
    out[f.field] = v;
  }
  return out;
}

/**
 * The pod's behaviour in force plus its queue. run() takes a request through: waits for
 * a slot (concurrency), then the service time, then calls `answer` with the failure
 * status (or undefined for a normal answer) and frees the slot.
 */
export class BehaviourGate {
  private current: EchoBehaviour;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(initial: Readonly<EchoBehaviour> = DEFAULT_ECHO_BEHAVIOUR, private readonly random: () => number = Math.random) {
    this.current = { ...initial };
  }

  get behaviour(): Readonly<EchoBehaviour> {
    return this.current;
  }

  /** The most requests served at once since the start: what a bulkhead in front must bound. */
  private peak = 0;

  /** Requests being served and waiting now, and the peak served at once (for the control answer). */
  get load(): { active: number; waiting: number; peakActive: number } {
    return { active: this.active, waiting: this.waiting.length, peakActive: this.peak };
  }

  set(next: EchoBehaviour): void {
    this.current = next;
    this.drain();
  }

  /** Whether this request fails (decided when it is served, with the behaviour then in force). */
  failure(): number | undefined {
    const b = this.current;
    return b.failRatio > 0 && (b.failRatio >= 1 || this.random() < b.failRatio) ? b.failStatus : undefined;
  }

  run(answer: (failStatus: number | undefined) => void, setTimer: (fn: () => void, ms: number) => void = (fn, ms) => void setTimeout(fn, ms)): void {
    const start = () => {
      this.active++;
      if (this.active > this.peak) this.peak = this.active;
      const finish = () => {
        this.active--;
        try {
          answer(this.failure());
        } finally {
          this.drain();
        }
      };
      if (this.current.serviceTimeMs > 0) setTimer(finish, this.current.serviceTimeMs);
      else finish();
    };
    if (this.current.concurrency > 0 && this.active >= this.current.concurrency) this.waiting.push(start);
    else start();
  }

  private drain(): void {
    while (this.waiting.length > 0 && (this.current.concurrency === 0 || this.active < this.current.concurrency)) this.waiting.shift()!();
  }
}
