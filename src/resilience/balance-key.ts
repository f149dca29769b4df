/**
 * A request's consistent-hash key, taken where the policy says: a header, a cookie, the
 * original client's address, or a query parameter. A request without the key gets a
 * random endpoint (as Envoy); with a cookie `ttl`, it gets a fresh cookie value instead,
 * sent back in `set-cookie`, so its next requests stick.
 */
import { randomBytes } from 'node:crypto';
import type { HashKeySource } from './balance-spec';
import { hashKey } from './balance-hash';

/** What the key needs of a request (the waypoint's RequestFacts has it). */
export interface KeyedRequest {
  headers: Record<string, string | string[] | undefined>;
  /** Raw query string without `?`. */
  query: string;
  source: { address: string };
}

export interface RequestHash {
  hash: number;
  /** A `set-cookie` value to add to the response (a generated cookie). */
  setCookie?: string;
}

/** The key hash of `req`, or undefined when it has no key (then any endpoint will do). */
export function requestHash(source: HashKeySource, req: KeyedRequest, newCookie: () => string = randomCookie): RequestHash | undefined {
  switch (source.kind) {
    case 'header': {
      const v = req.headers[source.name];
      if (v === undefined) return undefined;
      return { hash: hashKey(typeof v === 'string' ? v : v.join(',')) };
    }
    case 'sourceIP':
      return { hash: hashKey(req.source.address) };
    case 'queryParameter': {
      const v = queryParam(req.query, source.name);
      return v === undefined ? undefined : { hash: hashKey(v) };
    }
    case 'cookie': {
      const v = cookieValue(req.headers.cookie, source.name);
      if (v !== undefined) return { hash: hashKey(v) };
      if (source.ttlMs === undefined) return undefined;
      const value = newCookie();
      const maxAge = Math.max(1, Math.floor(source.ttlMs / 1000));
      return { hash: hashKey(value), setCookie: `${source.name}=${value}; Max-Age=${maxAge}; Path=${source.path ?? '/'}; HttpOnly` };
    }
  }
}

function randomCookie(): string {
  return randomBytes(12).toString('hex');
}

/** The first value of query parameter `name` (form-decoded), or undefined. */
export function queryParam(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const k = decode(eq < 0 ? part : part.slice(0, eq));
    if (k === name) return eq < 0 ? '' : decode(part.slice(eq + 1));
  }
  return undefined;
}

/** The value of cookie `name` in the request's cookie header(s) (RFC 6265 §5.4: `; `-separated pairs). */
export function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const line of typeof header === 'string' ? [header] : header) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      if (pair.slice(0, eq).trim() === name) {
        const v = pair.slice(eq + 1).trim();
        return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
      }
    }
  }
  return undefined;
}

function decode(s: string): string {
  const plus = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus;
  }
}
