/**
 * Gateway API durations (GEP-2257): one to four `<digits><unit>` parts, 1-5 digits each,
 * units h, m, s, ms, summed as Go's time.ParseDuration does (`1h30m`, `500ms`, `0s`).
 * Anything else (a bare `0`, fractions, `us`, spaces, signs) is refused, as the
 * Kubernetes API server refuses it, so the lab and a cluster accept the same routes.
 */

/** The pattern GEP-2257 specifies, for messages. */
export const DURATION_PATTERN = '^([0-9]{1,5}(h|m|s|ms)){1,4}$';

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

export class DurationError extends Error {
  constructor(readonly value: string) {
    super(`must be a Gateway API duration such as 10s, 500ms or 1h30m (GEP-2257: ${DURATION_PATTERN}), got ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`);
    this.name = 'DurationError';
  }
}

/** Milliseconds in `s`, or throws DurationError. */
export function parseDuration(s: string): number {
  // 4 parts of at most 5 digits and a 2-letter unit: anything longer is wrong already.
  if (typeof s !== 'string' || s.length === 0 || s.length > 28) throw new DurationError(String(s));
  let total = 0;
  let parts = 0;
  let i = 0;
  while (i < s.length) {
    const digitsStart = i;
    while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
    const digits = i - digitsStart;
    const unitStart = i;
    while (i < s.length && /[a-z]/.test(s[i]!)) i++;
    const unit = s.slice(unitStart, i);
    if (digits < 1 || digits > 5 || UNIT_MS[unit] === undefined || ++parts > 4) throw new DurationError(s);
    total += Number(s.slice(digitsStart, unitStart)) * UNIT_MS[unit]!;
  }
  return total;
}

/** True when `s` is a valid duration. */
export function isDuration(s: string): boolean {
  try {
    parseDuration(s);
    return true;
  } catch {
    return false;
  }
}

/**
 * `ms` as a duration `parseDuration` reads back (each part at most 5 digits): 250 →
 * `250ms`, 123450 → `2m3s450ms`, 0 → `0s`. For defaults derived from other fields, which
 * are stored as written and validated again when read.
 */
export function formatGatewayDuration(ms: number): string {
  const parts: [number, string][] = [[Math.floor(ms / 3_600_000), 'h'], [Math.floor(ms / 60_000) % 60, 'm'], [Math.floor(ms / 1000) % 60, 's'], [ms % 1000, 'ms']];
  const text = parts.filter(([n]) => n > 0).map(([n, u]) => `${n}${u}`).join('');
  return text === '' ? '0s' : text;
}
