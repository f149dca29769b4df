/**
 * Addresses as the rule generators need them: validated at the edge with the field
 * named, one canonical text per address (so the same input always yields the same
 * rules, and iptables-save prints what we wrote), a numeric order, and the per-family
 * pieces of rule syntax. IPv4 goes to iptables, IPv6 to ip6tables; the generators are
 * the same for both.
 */
import { isIP } from 'node:net';
import { WeftError } from '../lib/errors';

export type IpFamily = 4 | 6;

/** The command (and `-save`/`-restore` prefix) that holds each family's rules. */
export const IPTABLES_BINARY: Readonly<Record<IpFamily, string>> = Object.freeze({ 4: 'iptables', 6: 'ip6tables' });

/** Link-local: metadata endpoints (169.254.169.254), the pod gateway; never the mesh's. */
export const LINK_LOCAL: Readonly<Record<IpFamily, string>> = Object.freeze({ 4: '169.254.0.0/16', 6: 'fe80::/10' });

export function invalid(field: string, value: unknown, expected: string): WeftError {
  return new WeftError('WEFT_CONFIG_INVALID', `invalid ${field}=${JSON.stringify(value)}: expected ${expected}`, {
    details: { field, value },
  });
}

export function familyOf(ip: string): IpFamily | undefined {
  const f = isIP(ip);
  return f === 4 || f === 6 ? f : undefined;
}

/**
 * RFC 5952 text for IPv6 (lower case, longest zero run compressed), as iptables-save
 * prints it; IPv4 unchanged. The WHATWG URL parser implements exactly that rule.
 */
export function canonicalIp(ip: string): string {
  if (familyOf(ip) !== 6) return ip;
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

/** `ip`, validated to be an address of `family`, in canonical form. */
export function checkIp(field: string, value: unknown, family: IpFamily): string {
  const what = family === 4 ? 'an IPv4 address such as 198.51.100.7' : 'an IPv6 address such as 2001:db8::7';
  if (typeof value !== 'string' || familyOf(value) === undefined) throw invalid(field, value, what);
  if (familyOf(value) !== family) throw invalid(field, value, `${what} (the same family as nodeAddress: IPv${family})`);
  return canonicalIp(value);
}

export function checkPort(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, value, 'an integer port between 1 and 65535');
  }
  return value;
}

/** The 16 bytes of an IPv6 address (also accepts the embedded-IPv4 tail form). */
function v6Bytes(ip: string): number[] {
  const text = canonicalIp(ip);
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const words = (s: string | undefined): number[] => (s ? s.split(':').flatMap((w) => {
    if (w.includes('.')) {
      const b = w.split('.').map(Number);
      return [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    }
    return [parseInt(w, 16)];
  }) : []);
  const h = words(head);
  const t = words(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

function bytes(ip: string): number[] {
  return familyOf(ip) === 6 ? v6Bytes(ip) : ip.split('.').map(Number);
}

/** Numeric order: IPv4 before IPv6, 198.51.100.9 before 198.51.100.10. */
export function compareIp(a: string, b: string): number {
  const fa = familyOf(a) ?? 0;
  const fb = familyOf(b) ?? 0;
  if (fa !== fb) return fa - fb;
  const pa = bytes(a);
  const pb = bytes(b);
  for (let i = 0; i < pa.length; i++) {
    const d = pa[i]! - pb[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

export function sortedUnique(ips: readonly string[]): string[] {
  return [...new Set(ips.map(canonicalIp))].sort(compareIp);
}

/** `ip/32` or `ip/128`: a single host in a rule match. */
export function host(ip: string): string {
  return `${ip}/${familyOf(ip) === 6 ? 128 : 32}`;
}

/** `ip:port`, bracketed for IPv6, as DNAT's --to-destination wants it. */
export function hostPort(ip: string, port: number): string {
  return familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}
