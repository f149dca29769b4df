/**
 * Addresses as the rule generators need them: validated at the edge with the field
 * named, one canonical text per address (so the same input always yields the same
 * rules, and iptables-save prints what we wrote), a numeric order, and the per-family
 * pieces of rule syntax. IPv4 goes to iptables, IPv6 to ip6tables; the generators are
 * the same for both. The address text itself (family, canonical form, `ip:port`) is
 * the data path's, from src/lib/address.ts, so rules and proxy agree on it.
 */
import { WeftError } from '../lib/errors';
import { canonicalIp, familyOf } from '../lib/address';

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

/**
 * `value`, validated to be an address of `family`, in canonical form (an IPv4-mapped
 * IPv6 address is its IPv4 address: the kernel sees those packets as IPv4). `perFamily`
 * ends the refusal of an address of the other family: why the family is fixed here and
 * what to do with such an address.
 */
export function checkIp(field: string, value: unknown, family: IpFamily, perFamily = splitByFamily(family)): string {
  const what = family === 4 ? 'an IPv4 address such as 198.51.100.7' : 'an IPv6 address such as 2001:db8::7';
  if (typeof value !== 'string' || familyOf(value) === undefined) throw invalid(field, value, what);
  const ip = canonicalIp(value);
  if (familyOf(ip) !== family) {
    // ::ffff:a.b.c.d reaches the kernel as IPv4: say so rather than "give an IPv6 address".
    const mapped = familyOf(value) === 6 && familyOf(ip) === 4 ? `; ${value} is IPv4-mapped, which is the IPv4 address ${ip}: put ${ip} in the IPv4 rules` : '';
    throw invalid(field, value, `${what}; ${perFamily}${mapped}`);
  }
  return ip;
}

/** The default `perFamily` hint: every rule set holds one family. */
export function splitByFamily(family: IpFamily): string {
  return `these rules are for IPv${family} only (${IPTABLES_BINARY[family]}): generate the IPv${family === 4 ? 6 : 4} addresses' rules `
    + 'in a separate call (byFamily splits a mixed list)';
}

export function checkPort(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, value, 'an integer port between 1 and 65535');
  }
  return value;
}

/**
 * The bytes of an address in canonical text: IPv6 has only hex words there (the URL
 * parser writes an embedded IPv4 tail as two of them) around at most one `::`.
 */
function bytes(ip: string, family: 4 | 6 | undefined): number[] {
  if (family !== 6) return ip.split('.').map(Number);
  const [head, tail] = ip.includes('::') ? ip.split('::') as [string, string] : [ip, undefined];
  const words = (s: string | undefined): number[] => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

interface IpKey { family: number; bytes: number[] }

function ipKey(ip: string): IpKey {
  const family = familyOf(ip);
  return { family: family ?? 0, bytes: bytes(ip, family) };
}

function compareKeys(a: IpKey, b: IpKey): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) {
    const d = a.bytes[i]! - b.bytes[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Numeric order of canonical addresses (what checkIp returns): IPv4 before IPv6,
 * 198.51.100.9 before 198.51.100.10. Canonical in, so no parsing per comparison: an
 * IPv6 canonicalisation is a URL parse, and a sort makes n log n comparisons.
 */
export function compareIp(a: string, b: string): number {
  return compareKeys(ipKey(a), ipKey(b));
}

/** Canonical addresses (checkIp's output), unique and in numeric order; each parsed once. */
export function sortedUnique(ips: readonly string[]): string[] {
  return [...new Set(ips)]
    .map((ip) => ({ ip, key: ipKey(ip) }))
    .sort((a, b) => compareKeys(a.key, b.key))
    .map((e) => e.ip);
}

/** `ip/32` or `ip/128`: a single host in a rule match. */
export function host(ip: string): string {
  return `${ip}/${familyOf(ip) === 6 ? 128 : 32}`;
}
