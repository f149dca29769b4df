/**
 * A strict HTTP/1.1 message head parser (RFC 9112), for the waypoint's own HTTP/1 wire
 * code: no IncomingMessage, one pass over the bytes of a whole head.
 *
 * Strict where a lenient reading lets two hops disagree about where a message ends
 * (request smuggling): lines end in CRLF only (a bare LF is refused), no obs-fold (a line
 * starting with a space or tab), header names are tokens, values carry no control
 * characters but HTAB, Content-Length is digits only and every copy agrees, and
 * Content-Length with Transfer-Encoding together is refused. Size (431) and count (431)
 * limits hold before anything is handed over.
 */
import type { HeaderMap } from './types';

/** Limits of one head. */
export interface HeadLimits {
  /** Start line plus header lines, bytes. */
  maxHeaderBytes: number;
  /** Header fields. */
  maxHeaderCount: number;
}

/** Why a head was refused: the status a server answers with, and what was wrong. */
export class HeadError extends Error {
  constructor(readonly status: 400 | 431 | 501 | 502, readonly reason: string) {
    super(reason);
    this.name = 'HeadError';
  }
}

/** How the body after a head is delimited. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

export interface ParsedHead {
  /** Request: the method. */
  method: string;
  /** Request: the target as sent. */
  target: string;
  /** Response: the status code. */
  status: number;
  /** Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** Lower-case names; repeated fields joined with ", " (set-cookie kept as a list). */
  headers: HeaderMap;
  /** Header fields received (repeats counted). */
  count: number;
  /** Bytes of the head, its final empty line included. */
  size: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field line: token name, colon, value of visible characters, spaces, tabs, obs-text. */
const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e\x80-\xff]+) HTTP\/1\.([01])$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const DIGITS = /^[0-9]{1,15}$/;

/**
 * The head at the start of `buf`: undefined while it is incomplete (and within the size
 * limit), else the parsed head. Throws HeadError for a malformed or oversized one.
 */
export function parseHead(buf: Buffer, kind: 'request' | 'response', limits: HeadLimits): ParsedHead | undefined {
  const end = buf.indexOf(CRLF2);
  if (end < 0) {
    if (buf.length > limits.maxHeaderBytes) throw new HeadError(431, 'request headers too large');
    return undefined;
  }
  if (end + 2 > limits.maxHeaderBytes) throw new HeadError(431, 'request headers too large');
  const text = buf.toString('latin1', 0, end);
  // A bare LF (or CR) left inside a line after splitting on CRLF (some hops end a line
  // there, others do not) fails the line patterns below: none admits CR or LF.
  const lines = text.split('\r\n');
  // No prototype: a field named `constructor` or `__proto__` must be a header like any
  // other, not read (and joined onto) an Object.prototype member.
  const headers: HeaderMap = Object.create(null);
  const head: ParsedHead = { method: '', target: '', status: 0, minor: 1, headers, count: lines.length - 1, size: end + 4 };
  const start = lines[0]!;
  if (kind === 'request') {
    const m = REQUEST_LINE.exec(start);
    if (!m) throw new HeadError(400, 'malformed request line');
    head.method = m[1]!;
    head.target = m[2]!;
    head.minor = m[3] === '1' ? 1 : 0;
  } else {
    const m = STATUS_LINE.exec(start);
    if (!m) throw new HeadError(502, 'malformed status line');
    head.minor = m[1] === '1' ? 1 : 0;
    head.status = Number(m[2]);
  }
  if (head.count > limits.maxHeaderCount) throw new HeadError(431, `more than ${limits.maxHeaderCount} header fields`);
  const h = head.headers;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.charCodeAt(0);
    if (c === 0x20 || c === 0x09) throw new HeadError(400, 'obs-fold (a header line continued on the next) is not accepted');
    const m = FIELD.exec(line);
    if (!m) throw new HeadError(400, 'malformed header field');
    const name = m[1]!.toLowerCase();
    const value = m[2]!;
    const prev = h[name];
    if (prev === undefined) h[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else h[name] = `${prev}, ${value}`;
  }
  return head;
}

/**
 * The body's framing per RFC 9112 §6.3, or HeadError for the ambiguous cases a proxy
 * must refuse. `requestMethod` is given for responses (a HEAD's response has no body).
 */
export function framingOf(head: ParsedHead, kind: 'request' | 'response', requestMethod?: string): Framing {
  const h = head.headers;
  const te = h['transfer-encoding'];
  const cl = h['content-length'];
  if (kind === 'response') {
    const s = head.status;
    if (requestMethod === 'HEAD' || s === 204 || s === 304 || (s >= 100 && s < 200)) return { kind: 'none' };
  }
  if (te !== undefined) {
    if (cl !== undefined) throw new HeadError(kind === 'request' ? 400 : 502, 'both Content-Length and Transfer-Encoding');
    const codings = (te as string).split(',').map((t) => t.trim().toLowerCase());
    const chunkedLast = codings[codings.length - 1] === 'chunked';
    if (kind === 'request') {
      // Only `chunked` alone is forwarded (the waypoint re-frames the body); anything else
      // would be read differently by some hop (RFC 9112 §6.1: 501).
      if (codings.length !== 1 || !chunkedLast) throw new HeadError(501, 'only the chunked transfer coding is accepted');
      return { kind: 'chunked' };
    }
    if (codings.some((c, i) => c === 'chunked' && i !== codings.length - 1)) throw new HeadError(502, 'chunked applied twice or not last');
    return chunkedLast ? { kind: 'chunked' } : { kind: 'close' };
  }
  if (cl !== undefined) return { kind: 'length', length: contentLength(cl as string, kind) };
  return kind === 'request' ? { kind: 'none' } : { kind: 'close' };
}

/** Content-Length: digits only; repeated copies (or a list) must all agree. */
function contentLength(value: string, kind: 'request' | 'response'): number {
  let n: number | undefined;
  for (const part of value.split(',')) {
    const p = part.trim();
    if (!DIGITS.test(p)) throw new HeadError(kind === 'request' ? 400 : 502, 'invalid Content-Length');
    const v = Number(p);
    if (n !== undefined && n !== v) throw new HeadError(kind === 'request' ? 400 : 502, 'differing Content-Length values');
    n = v;
  }
  return n!;
}

/** Whether a header name is a token (for names written on the wire). */
export function isToken(name: string): boolean {
  return TOKEN.test(name);
}

/** A header value that can be written as is: no CR, LF, NUL, other controls but HTAB, nor characters beyond Latin-1 (as Node's check). */
export function isFieldValue(value: string): boolean {
  return !NOT_FIELD_VALUE.test(value);
}

// eslint-disable-next-line no-control-regex
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
