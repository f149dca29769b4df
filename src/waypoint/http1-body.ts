/**
 * Streaming HTTP/1.1 body framing (RFC 9112 §6–7): reads a body delimited by
 * Content-Length, by chunked coding (with trailers), or by the connection's close, out
 * of whatever byte slices arrive, and says where the body ended so the bytes after it
 * go to the next message. Strict like the head parser: chunk sizes are hex digits only
 * (at most 13, so no overflow), every line ends in CRLF, a chunk's data is followed by
 * CRLF, and trailers obey the same field rules and size limit as a head.
 */
import { HeadError, parseHead, type Framing, type HeadLimits } from './http1-head';
import type { HeaderMap } from './types';

const CHUNK_SIZE = /^([0-9A-Fa-f]{1,13})(?:[\t ]*;[\t\x20-\x7e\x80-\xff]*)?$/;
/** A chunk-size line with extensions longer than this is refused (an unbounded line is a memory attack). */
const MAX_SIZE_LINE = 1024;

const enum State { SizeLine, Data, DataEnd, Trailers, Done }

export class BodyDecoder {
  /** The body ended (the last chunk and trailers read, or the length reached). */
  done = false;
  /** Trailer fields of a chunked body, once read (undefined when none came). */
  trailers: HeaderMap | undefined;
  private state: State;
  /** Bytes left: of the body (length) or of the current chunk (chunked). */
  private left = 0;
  /** A line (chunk size, chunk end, trailers) split across slices. */
  private pending: Buffer | undefined;

  constructor(private readonly framing: Framing, private readonly limits: HeadLimits) {
    switch (framing.kind) {
      case 'none':
        this.state = State.Done;
        this.done = true;
        break;
      case 'length':
        this.left = framing.length;
        this.state = framing.length === 0 ? State.Done : State.Data;
        this.done = framing.length === 0;
        break;
      case 'chunked':
        this.state = State.SizeLine;
        break;
      case 'close':
        this.state = State.Data;
        this.left = Infinity;
        break;
    }
  }

  /** Whether the body runs until the connection closes. */
  get untilClose(): boolean {
    return this.framing.kind === 'close';
  }

  /**
   * Feeds `buf`: body bytes go to `onData` (views into `buf`); returns how many bytes of
   * `buf` belonged to this body (the rest is the next message). Throws HeadError (400)
   * for bad chunk framing.
   */
  feed(buf: Buffer, onData: (chunk: Buffer) => void): number {
    let i = 0;
    while (i < buf.length && this.state !== State.Done) {
      switch (this.state) {
        case State.Data: {
          const n = Math.min(this.left, buf.length - i);
          onData(i === 0 && n === buf.length ? buf : buf.subarray(i, i + n));
          i += n;
          this.left -= n;
          if (this.left === 0) {
            if (this.framing.kind === 'chunked') this.state = State.DataEnd;
            else this.finish();
          }
          break;
        }
        case State.SizeLine: {
          const line = this.line(buf, i, MAX_SIZE_LINE);
          if (line === undefined) return buf.length;
          i = line.next;
          const m = CHUNK_SIZE.exec(line.text);
          if (!m) throw new HeadError(400, 'malformed chunk size');
          this.left = parseInt(m[1]!, 16);
          this.state = this.left === 0 ? State.Trailers : State.Data;
          break;
        }
        case State.DataEnd: {
          const line = this.line(buf, i, 2);
          if (line === undefined) return buf.length;
          if (line.text !== '') throw new HeadError(400, 'chunk data not followed by CRLF');
          i = line.next;
          this.state = State.SizeLine;
          break;
        }
        case State.Trailers: {
          i = this.readTrailers(buf, i);
          break;
        }
      }
    }
    return i;
  }

  /** The connection closed: a body delimited by close ends; any other is cut (false). */
  close(): boolean {
    if (this.done) return true;
    if (this.framing.kind === 'close') {
      this.finish();
      return true;
    }
    return false;
  }

  private finish(): void {
    this.state = State.Done;
    this.done = true;
  }

  /** One CRLF-terminated line from `buf` at `i` (joined with a split start), or undefined while incomplete. */
  private line(buf: Buffer, i: number, max: number): { text: string; next: number } | undefined {
    const lf = buf.indexOf(0x0a, i);
    if (lf < 0) {
      this.keep(buf.subarray(i), max);
      return undefined;
    }
    let bytes = buf.subarray(i, lf + 1);
    if (this.pending) {
      bytes = Buffer.concat([this.pending, bytes]);
      this.pending = undefined;
    }
    if (bytes.length > max + 2) throw new HeadError(400, 'chunk line too long');
    if (bytes.length < 2 || bytes[bytes.length - 2] !== 0x0d) throw new HeadError(400, 'bare LF in chunk framing');
    const text = bytes.toString('latin1', 0, bytes.length - 2);
    if (text.includes('\r')) throw new HeadError(400, 'bare CR in chunk framing');
    return { text, next: lf + 1 };
  }

  private keep(part: Buffer, max: number): void {
    this.pending = this.pending ? Buffer.concat([this.pending, part]) : Buffer.from(part);
    if (this.pending.length > max + 2) throw new HeadError(400, 'chunk line too long');
  }

  /** The trailer section after the last chunk: an empty line, or fields ending in an empty line. */
  private readTrailers(buf: Buffer, i: number): number {
    const all = this.pending ? Buffer.concat([this.pending, buf.subarray(i)]) : buf.subarray(i);
    const before = this.pending?.length ?? 0;
    this.pending = undefined;
    if (all.length >= 2 && all[0] === 0x0d && all[1] === 0x0a) {
      this.finish();
      return i + 2 - before;
    }
    if (all.length < 2) {
      this.keep(all, this.limits.maxHeaderBytes);
      return buf.length;
    }
    // Trailer fields parse like a head behind a dummy start line.
    const parsed = parseHead(Buffer.concat([TRAILER_START, all]), 'response', this.limits);
    if (!parsed) {
      this.keep(all, this.limits.maxHeaderBytes);
      return buf.length;
    }
    this.trailers = parsed.headers;
    this.finish();
    return i + parsed.size - TRAILER_START.length - before;
  }
}

const TRAILER_START = Buffer.from('HTTP/1.1 200 -\r\n');
