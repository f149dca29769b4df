/**
 * Fault injection, the decision per request (pure: the random source is injected).
 * Built once per (Service, policy version) from the validated FaultSpec; header regexes
 * are compiled here, once, not per request.
 */
import { compileRegex, type SafeRegex } from '../gateway/regex';
import { fixedDelayMs, type FaultAbortSpec, type FaultSpec } from './fault-spec';

/** Lower-case header names to their value(s), as the waypoint holds them. */
export type Headers = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface FaultDecision {
  /** Wait this long before forwarding (0: no delay). */
  delayMs: number;
  /** Answer locally with this instead of forwarding. */
  abort?: FaultAbortSpec;
}

interface CompiledHeader {
  name: string;
  value: string;
  regex?: SafeRegex;
}

const NONE: FaultDecision = Object.freeze({ delayMs: 0 });

export class FaultInjector {
  private readonly headers: CompiledHeader[];
  private readonly delayMs: number;

  constructor(readonly spec: FaultSpec, private readonly random: () => number = Math.random) {
    this.delayMs = spec.delay ? fixedDelayMs(spec.delay) : 0;
    this.headers = (spec.match?.headers ?? []).map((h) => ({
      name: h.name.toLowerCase(), value: h.value, ...(h.type === 'RegularExpression' ? { regex: compileRegex(h.value) } : {}),
    }));
  }

  /** Whether the request carries every header of the policy's match (any value of a repeated header may match). */
  matches(headers: Headers): boolean {
    for (const h of this.headers) {
      const v = headers[h.name];
      if (v === undefined) return false;
      const values = typeof v === 'string' ? [v] : v;
      if (!values.some((x) => (h.regex ? h.regex.matches(x) : x === h.value))) return false;
    }
    return true;
  }

  /** The faults for one request: delay and abort drawn independently, each at its percentage. */
  decide(headers: Headers): FaultDecision {
    const { delay, abort } = this.spec;
    if (!this.matches(headers)) return NONE;
    const delayMs = delay && this.chosen(delay.percentage) ? this.delayMs : 0;
    if (abort && this.chosen(abort.percentage)) return { delayMs, abort };
    return delayMs > 0 ? { delayMs } : NONE;
  }

  /** One draw: true for `percent` % of draws (0 never, 100 always). */
  private chosen(percent: number): boolean {
    return percent >= 100 || (percent > 0 && this.random() * 100 < percent);
  }
}
