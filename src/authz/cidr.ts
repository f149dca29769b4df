/**
 * CIDR membership for policy matching. Each distinct CIDR text is parsed once into a
 * native BlockList and cached: policies are evaluated on every connection, and the
 * set of distinct CIDRs in a mesh's policies is small.
 */
import { BlockList, isIP } from 'node:net';
import { WeftError } from '../lib/errors';
import { ipv4Number, normalizeIp } from '../lib/address';

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
  const parts = cidrParts(text);
  if (!parts) return null;
  const list = new BlockList();
  addTo(list, parts);
  return { family: parts.family, list };
}

interface CidrParts { addr: string; prefix: number; family: 4 | 6 }

function cidrParts(text: string): CidrParts | null {
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
  return { addr, prefix, family };
}

function addTo(list: BlockList, { addr, prefix, family }: CidrParts): void {
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (prefix === (family === 4 ? 32 : 128)) list.addAddress(addr, type);
  else list.addSubnet(addr, prefix, type);
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

/**
 * A fixed set of CIDRs of both families, checked in one lookup. IPv4 ranges are
 * compared as 32-bit numbers: the loop guard asks on every proxied connection, and a
 * BlockList check allocates a native SocketAddress each time (~4 % of a destination
 * ztunnel's CPU per new connection in the lab's conn/s profile). IPv6 goes to a
 * BlockList.
 */
export class CidrSet {
  /** network, mask pairs (unsigned 32-bit), the network already masked. */
  private readonly v4: number[] = [];
  private readonly v6 = new BlockList();

  constructor(cidrs: Iterable<string>) {
    for (const text of cidrs) {
      const parts = cidrParts(text.trim());
      if (!parts) throw new WeftError('WEFT_CONFIG_INVALID', `${JSON.stringify(text)} is not a CIDR: give an IPv4 or IPv6 address, optionally with /prefix`);
      if (parts.family === 6) {
        addTo(this.v6, parts);
        continue;
      }
      const mask = parts.prefix === 0 ? 0 : (0xffffffff << (32 - parts.prefix)) >>> 0;
      this.v4.push((ipv4Number(parts.addr)! & mask) >>> 0, mask);
    }
  }

  /** True when `ip` (IPv4-mapped IPv6 counts as IPv4) lies in one of the CIDRs. */
  has(ip: string): boolean {
    const addr = normalizeIp(ip);
    const n = ipv4Number(addr);
    if (n !== undefined) {
      const v4 = this.v4;
      for (let i = 0; i < v4.length; i += 2) if (((n & v4[i + 1]!) >>> 0) === v4[i]) return true;
      return false;
    }
    return isIP(addr) === 6 && this.v6.check(addr, 'ipv6');
  }
}
