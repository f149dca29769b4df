/**
 * CIDR membership for policy matching. Each distinct CIDR text is parsed once into a
 * native BlockList and cached: policies are evaluated on every connection, and the
 * set of distinct CIDRs in a mesh's policies is small.
 */
import { BlockList, isIP } from 'node:net';
import { normalizeIp } from './address';

interface Parsed {
  family: 4 | 6;
  list: BlockList;
}

const cache = new Map<string, Parsed | null>();
const CACHE_LIMIT = 10_000;

/** Parses `10.0.0.0/8`, `10.1.2.3`, `fd00::/8`; null for anything else. */
export function parseCidr(text: string): Parsed | null {
  const hit = cache.get(text);
  if (hit !== undefined) return hit;
  const parsed = parseUncached(text.trim());
  // A policy churn storm must not grow the cache without bound; start over instead.
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(text, parsed);
  return parsed;
}

function parseUncached(text: string): Parsed | null {
  const slash = text.indexOf('/');
  const addr = normalizeIp(slash === -1 ? text : text.slice(0, slash));
  const family = isIP(addr);
  if (family !== 4 && family !== 6) return null;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p)) return null;
    prefix = Number(p);
    if (prefix > max) return null;
  }
  const list = new BlockList();
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (prefix === max) list.addAddress(addr, type);
  else list.addSubnet(addr, prefix, type);
  return { family, list };
}

/** True when `ip` lies in `cidr`. An unparseable CIDR contains nothing. */
export function cidrContains(cidr: string, ip: string): boolean {
  const parsed = parseCidr(cidr);
  if (!parsed) return false;
  const addr = normalizeIp(ip);
  const family = isIP(addr);
  if (family !== parsed.family) return false;
  return parsed.list.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}
