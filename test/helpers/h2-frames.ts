/**
 * Hand-made HTTP/2 for abuse tests (as undici's tests do): frames built byte by byte
 * (9-byte header + payload, RFC 9113 §4.1) and HPACK literal headers without
 * indexing (RFC 7541 §6.2.2), written on a real TLS socket, so a test can send what no
 * well-behaved client library would (resets right after HEADERS, floods, endless
 * CONTINUATION). Incoming frames are parsed enough to see GOAWAY, RST_STREAM,
 * HEADERS and DATA; HPACK in answers is not decoded.
 */
import type * as tls from 'node:tls';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 0xb } as const;
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5 } as const;

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits. */
function hpackInt(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/** A header block of literal fields without indexing, new names (pattern 0000 0000). */
export function headerBlock(headers: Array<[string, string]>): Buffer {
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0]), hpackString(n), hpackString(v)]));
}

export function connectHeaders(authority: string, extra: Array<[string, string]> = []): Buffer {
  return headerBlock([[':method', 'CONNECT'], [':authority', authority], ...extra]);
}

export function headers(streamId: number, block: Buffer, flags: number = FLAG.END_HEADERS): Buffer {
  return frame(FRAME.HEADERS, flags, streamId, block);
}

export function rstStream(streamId: number, code: number = ERROR.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

export function settings(values: Array<[number, number]> = []): Buffer {
  const p = Buffer.alloc(values.length * 6);
  values.forEach(([id, v], i) => { p.writeUInt16BE(id, i * 6); p.writeUInt32BE(v, i * 6 + 2); });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

export const settingsAck = (): Buffer => frame(FRAME.SETTINGS, FLAG.ACK, 0);

export function ping(n: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(n >>> 0, 4);
  return frame(FRAME.PING, 0, 0, p);
}

export function data(streamId: number, payload: Buffer, flags = 0): Buffer {
  return frame(FRAME.DATA, flags, streamId, payload);
}

export function windowUpdate(streamId: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment);
  return frame(FRAME.WINDOW_UPDATE, 0, streamId, p);
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/**
 * One raw HTTP/2 client connection. Sends the preface and an empty SETTINGS at once,
 * ACKs the server's SETTINGS (and never answers PING, so a test controls that), and
 * records every frame received.
 */
export class RawH2 {
  readonly frames: Frame[] = [];
  private buf = Buffer.alloc(0);
  closed = false;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly socket: tls.TLSSocket, initial: Array<[number, number]> = []) {
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.once('close', () => { this.closed = true; this.wake(); });
    socket.write(Buffer.concat([PREFACE, settings(initial)]));
  }

  write(...bufs: Buffer[]): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs));
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, streamId: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.frames.push(f);
      if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK)) this.write(settingsAck());
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The GOAWAY received, if any: its error code and last stream id. */
  goaway(): { code: number; lastStreamId: number; debug: string } | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    if (!f) return undefined;
    return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString('latin1') };
  }

  /** RST_STREAM codes received, by stream id. */
  resets(): Map<number, number> {
    const m = new Map<number, number>();
    for (const f of this.frames) if (f.type === FRAME.RST_STREAM) m.set(f.streamId, f.payload.readUInt32BE(0));
    return m;
  }

  /** Resolves when `pred` holds or the connection closed (then rejects if it does not hold); rejects after `ms`. */
  until(pred: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      const check = () => {
        if (pred()) { clearTimeout(timer); resolve(); return; }
        if (this.closed) { clearTimeout(timer); reject(new Error(`connection closed before ${what}`)); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves once the socket closed. */
  closedP(ms = 10_000): Promise<void> {
    return this.until(() => this.closed, ms, 'close').catch((err: Error) => { if (!this.closed) throw err; });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
