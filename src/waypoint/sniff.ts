/**
 * Which protocol a stream to the waypoint carries. As Istio: a Service port that
 * declares it (appProtocol, else the port name `<protocol>[-<suffix>]`) is taken at its
 * word; otherwise the first bytes decide: the HTTP/2 connection preface → h2c, an
 * HTTP/1.x request line → http1, anything else (or nothing within a short timeout, as a
 * server-first protocol such as MySQL sends nothing) → TCP passthrough under L4 policy.
 *
 * The decision is a pure function of the bytes (`classifyBytes`); `sniffStream` reads
 * them without losing any: what it read is pushed back (`unshift`) before it returns,
 * in the same turn as the last read, so even a stream that ended (FIN after a few
 * bytes) gives them back before its 'end' can be emitted.
 */
import type { Duplex } from 'node:stream';
import { realClock, type Clock } from '../lib/clock';
import type { L7Protocol } from './types';

/** RFC 9113 §3.4: what every HTTP/2 client sends first. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Methods whose request line makes a stream HTTP/1 (RFC 9110 plus PATCH). */
export const HTTP1_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];

/**
 * Bytes looked at, at most: a valid method, a space and no line end within this many
 * bytes is still taken as HTTP/1 (a long URL); the strict parser then judges the rest.
 */
export const MAX_SNIFF_BYTES = 4096;

/** Default wait for the first bytes on a port that declares no protocol. */
export const DEFAULT_SNIFF_TIMEOUT_MS = 1000;

/** What a port declares: a protocol, `http` (HTTP of either version: the preface decides), or nothing. */
export type DeclaredProtocol = 'http' | 'h2c' | 'tcp' | undefined;

/**
 * The protocol a Service port declares, Istio's way: `appProtocol` wins; else the port
 * name `http`, `http2`, `grpc`, `grpc-web`, `tcp`, `tls`, ... optionally followed by
 * `-<suffix>`. Unknown or absent → undefined (sniff).
 */
export function declaredProtocol(port: { appProtocol?: string; portName?: string }): DeclaredProtocol {
  if (port.appProtocol) {
    const p = fromName(port.appProtocol.toLowerCase());
    if (p) return p;
  }
  if (port.portName) {
    const name = port.portName.toLowerCase();
    const dash = name.indexOf('-');
    // `grpc-web-x` names grpc-web, not grpc; try the longest known prefix first.
    if (name.startsWith('grpc-web')) return 'http';
    return fromName(dash < 0 ? name : name.slice(0, dash));
  }
  return undefined;
}

function fromName(p: string): DeclaredProtocol {
  switch (p) {
    case 'http':
    case 'grpc-web':
      return 'http';
    case 'http2':
    case 'grpc':
    case 'kubernetes.io/h2c':
      return 'h2c';
    // Declared opaque: TLS or another protocol the waypoint cannot read.
    case 'tcp':
    case 'tls':
    case 'https':
    case 'mongo':
    case 'mysql':
    case 'redis':
    case 'kubernetes.io/ws':
    case 'kubernetes.io/wss':
      return p === 'kubernetes.io/ws' ? 'http' : 'tcp';
    default:
      return undefined;
  }
}

/**
 * The protocol the first bytes of a stream show, or undefined when more bytes are
 * needed to tell. `ended`: no more bytes will come (EOF, or the wait ran out).
 */
export function classifyBytes(buf: Buffer, ended: boolean): L7Protocol | undefined {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    if (buf.length >= H2_PREFACE.length) return 'h2c';
    // "PRI * HTTP/2.0..." so far; wait for the rest unless nothing more comes.
    if (!ended && buf.length > 0) return undefined;
    if (buf.length === 0) return ended ? 'tcp' : undefined;
  }
  const space = buf.indexOf(0x20);
  const head = buf.subarray(0, space < 0 ? Math.min(buf.length, 8) : space).toString('latin1');
  if (space < 0) {
    // A method still being sent ("GE")?
    if (!ended && HTTP1_METHODS.some((m) => m.startsWith(head) && head.length < m.length + 1)) return undefined;
    return 'tcp';
  }
  if (!HTTP1_METHODS.includes(head)) return 'tcp';
  const eol = buf.indexOf('\r\n', space, 'latin1');
  if (eol < 0) {
    if (!ended && buf.length < MAX_SNIFF_BYTES) return undefined;
    return 'http1';
  }
  return /^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(buf.subarray(0, eol).toString('latin1')) ? 'http1' : 'tcp';
}

export interface SniffOptions {
  /** How long to wait for bytes that decide; then `onTimeout` is the answer. */
  timeoutMs?: number;
  /** The answer when the wait runs out: `tcp` for an undeclared port (server-first protocols). */
  onTimeout?: L7Protocol;
  /** Custom classification (declared-HTTP ports only tell the preface apart). */
  classify?: (buf: Buffer, ended: boolean) => L7Protocol | undefined;
  clock?: Clock;
}

/** The outcome of a sniff: the protocol, or `closed` when the stream failed or closed before any decision. */
export type SniffResult = { protocol: L7Protocol; bytes: number } | { protocol: 'closed'; bytes: number };

/**
 * Reads the first bytes of `stream` until `classify` decides, pushes them back, and
 * resolves. The stream keeps its bytes, unread, for the next consumer.
 */
export function sniffStream(stream: Duplex, opts: SniffOptions = {}): Promise<SniffResult> {
  const classify = opts.classify ?? classifyBytes;
  const clock = opts.clock ?? realClock;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_SNIFF_TIMEOUT_MS;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let timer: unknown;
    const finish = (result: SniffResult, giveBack: boolean) => {
      if (done) return;
      done = true;
      clock.clearTimeout(timer);
      stream.removeListener('readable', onReadable);
      stream.removeListener('error', onGone);
      stream.removeListener('close', onGone);
      // Synchronously, in the turn of the last read: a pending 'end' is not emitted
      // while bytes are queued again, so none are lost even after EOF.
      if (giveBack && size > 0) stream.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      // Not paused on purpose: with the 'readable' listener gone, Node lets the next
      // consumer's 'data' listener start the flow (a pause() here would stop it).
      resolve(result);
    };
    const ended = () => (stream as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
    const decide = (eof: boolean): void => {
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      chunks.length = 0;
      if (size > 0) chunks.push(buf);
      // EOF before any byte: nothing to serve (and no bytes to hand back to keep 'end' pending).
      if (eof && size === 0) return finish({ protocol: 'closed', bytes: 0 }, false);
      const p = classify(buf, eof);
      if (p !== undefined) finish({ protocol: p, bytes: size }, true);
      else if (eof) finish({ protocol: 'tcp', bytes: size }, true);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!done && size < MAX_SNIFF_BYTES && (chunk = stream.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        size += chunk.length;
      }
      if (!done) decide(ended() || size >= MAX_SNIFF_BYTES);
    };
    const onGone = () => finish({ protocol: 'closed', bytes: size }, false);
    stream.on('readable', onReadable);
    stream.once('error', onGone);
    stream.once('close', onGone);
    timer = clock.setTimeout(() => {
      if (done) return;
      const p = classify(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), true);
      // Nothing (or too little) arrived: the timeout's answer, unless the bytes already tell.
      finish({ protocol: p !== undefined && size > 0 ? p : opts.onTimeout ?? 'tcp', bytes: size }, true);
    }, timeoutMs);
  });
}

/** What to run for a stream to a port: declared, or sniffed with the right fallback. */
export async function detectProtocol(stream: Duplex, port: { appProtocol?: string; portName?: string }, opts: SniffOptions = {}): Promise<SniffResult> {
  const declared = declaredProtocol(port);
  if (declared === 'tcp') return { protocol: 'tcp', bytes: 0 };
  if (declared === 'h2c') return { protocol: 'h2c', bytes: 0 };
  if (declared === 'http') {
    // HTTP of either version: only the preface tells them apart; the parser judges the rest.
    return sniffStream(stream, {
      ...opts,
      onTimeout: 'http1',
      classify: (buf, eof) => {
        const n = Math.min(buf.length, H2_PREFACE.length);
        if (!buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return 'http1';
        if (buf.length >= H2_PREFACE.length) return 'h2c';
        return eof ? 'http1' : undefined;
      },
    });
  }
  return sniffStream(stream, { ...opts, onTimeout: opts.onTimeout ?? 'tcp' });
}
