/**
 * The verdict of a finished request or connection (types.ts TapVerdict), read from what
 * the proxies already record: the response flag, the attempts and the status. One
 * mapping for the tap, the CLI and the dashboard, so a `UO` is "overflow" everywhere.
 */
import type { TapVerdict } from './types';

/** Flags (Envoy's, as the waypoint raises them) that say what the proxy itself did. */
const REQUEST_FLAG_VERDICTS: Readonly<Record<string, TapVerdict>> = {
  UAEX: 'denied',
  SH: 'shed',
  RL: 'limited',
  UO: 'overflow',
  FI: 'faulted',
  DI: 'faulted',
  UH: 'ejected',
  NR: 'no_route',
  DC: 'cancelled',
  /** The client sent what the parser refused (400/431/501). */
  DPE: 'failed',
};

/** Flags of an upstream that failed: `failed`, unless a later attempt got an answer. */
const UPSTREAM_FAILURES = new Set(['UF', 'UT', 'UC', 'URX']);

/**
 * A waypoint request's verdict. An injected fault (`FI` abort, `DI` delay) is `faulted`
 * even when the delayed request got its answer: the tap shows where faults are on. An
 * upstream failure is `retried` when a later attempt got a non-5xx answer, else `failed`.
 * A 5xx the upstream sent itself (no flag) is `routed`: the mesh did its job, the status
 * tells the rest.
 */
export function requestVerdict(r: { responseFlag: string; attempts: number; status: number }): TapVerdict {
  const byFlag = REQUEST_FLAG_VERDICTS[r.responseFlag];
  if (byFlag) return byFlag;
  const retried = r.attempts > 1;
  if (UPSTREAM_FAILURES.has(r.responseFlag)) return retried && r.status > 0 && r.status < 500 ? 'retried' : 'failed';
  return retried ? 'retried' : 'routed';
}

/** A ztunnel connection's verdict: `-` routed, `DENY` denied (authorization or STRICT mTLS), any other flag failed. */
export function connectionVerdict(flag: string): TapVerdict {
  if (flag === '-') return 'routed';
  return flag === 'DENY' ? 'denied' : 'failed';
}
