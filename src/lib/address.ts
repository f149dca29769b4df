/**
 * Address text as it crosses the data path (socket addresses, HTTP/2 `:authority`,
 * the `forwarded` header, conntrack) and as the capture rules spell it. Kept in one
 * place so IPv6 brackets, IPv4-mapped forms and IPv6 spellings are handled the same
 * way everywhere: src/iptables uses these too (this file depends on nothing of Weft).
 */
import { isIP } from 'node:net';

/** 4, 6, or undefined for anything that is not an address. */
export function familyOf(ip: string): 4 | 6 | undefined {
  const f = isIP(ip);
  return f === 4 || f === 6 ? f : undefined;
}

/** `::ffff:10.0.0.1` (a dual-stack socket's view of an IPv4 peer) → `10.0.0.1`. */
export function normalizeIp(ip: string | undefined): string {
  if (ip === undefined) return '';
  if (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4) return ip.slice(7);
  return ip;
}

/**
 * One text per address, so every spelling of it compares equal: an IPv4-mapped address
 * is its IPv4 address (a dual-stack socket's view), IPv6 is RFC 5952 (lower case,
 * longest zero run compressed) as Node and ip6tables-save print it, while conntrack
 * prints it uncompressed. Anything else only lower-cased.
 */
export function canonicalIp(ip: string): string {
  const lower = normalizeIp(ip.toLowerCase());
  if (isIP(lower) !== 6) return lower;
  // The WHATWG URL parser implements exactly RFC 5952, and is Node's cheapest built-in normaliser.
  return new URL(`http://[${lower}]/`).hostname.slice(1, -1);
}

/** `10.0.0.1:80` or `[fd00::1]:80`. */
export function formatHostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export interface HostPort {
  ip: string;
  port: number;
}

/**
 * Parses `ip:port` / `[ipv6]:port`, accepting only literal IPs and ports 1-65535:
 * HBONE authorities never carry hostnames.
 */
export function parseHostPort(text: string | undefined): HostPort | undefined {
  if (!text) return undefined;
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end === -1 || text[end + 1] !== ':') return undefined;
    host = text.slice(1, end);
    portText = text.slice(end + 2);
    if (isIP(host) !== 6) return undefined;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon === -1) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (isIP(host) !== 4) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { ip: normalizeIp(host), port };
}

/** `forwarded: for="<ip:port>"` (RFC 7239 quotes the value because of the colon). */
export function formatForwarded(ip: string, port: number): string {
  return `for="${formatHostPort(ip, port)}"`;
}

/**
 * The client address from a `forwarded` header. Only the first `for=` counts: the
 * mesh peer that set it is the one that accepted the client's connection.
 */
export function parseForwardedFor(header: string | string[] | undefined): HostPort | { ip: string; port?: undefined } | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const m = /(?:^|[;,\s])for=("([^"]*)"|[^;,\s]*)/i.exec(value);
  if (!m) return undefined;
  const raw = m[2] ?? m[1]!;
  const hp = parseHostPort(raw);
  if (hp) return hp;
  const bare = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  return isIP(bare) ? { ip: normalizeIp(bare) } : undefined;
}

/**
 * A dotted-quad IPv4 address as an unsigned 32-bit number; undefined for anything
 * else (what isIP would not call IPv4: leading zeros, a part over 255, other text).
 */
export function ipv4Number(text: string): number | undefined {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) { // '.'
      if (digits === 0 || dots === 3) return undefined;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // isIP refuses leading zeros ("01"): so does this.
      if (digits === 1 && part === 0) return undefined;
      part = part * 10 + (c - 48);
      if (part > 255) return undefined;
      digits++;
    } else {
      return undefined;
    }
  }
  if (digits === 0 || dots !== 3) return undefined;
  return n * 256 + part;
}
