/**
 * The little of RFC 6455 the lab needs to prove WebSocket crosses the mesh: the
 * handshake's accept key and a frame codec, shared by the echo app (server side, which
 * echoes every data frame back) and `weft lab ws` (client side, which masks what it
 * sends, as the RFC requires of clients). Only Node builtins; no extensions, no
 * fragmentation of control frames; a frame above MAX_FRAME_BYTES is refused, so a
 * broken peer cannot make either side buffer without bound.
 */
import { createHash, randomBytes } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const MAX_FRAME_BYTES = 1 << 20;

export const OP = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** A fresh Sec-WebSocket-Key (16 random bytes, base64). */
export function newKey(): string {
  return randomBytes(16).toString('base64');
}

export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** One frame; `mask` for frames a client sends. */
export function encodeFrame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(head + (mask ? 4 : 0) + len);
  out[0] = 0x80 | opcode;
  out[1] = (mask ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  if (len >= 126 && len < 65536) out.writeUInt16BE(len, 2);
  else if (len >= 65536) out.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) {
    payload.copy(out, head);
    return out;
  }
  const key = randomBytes(4);
  key.copy(out, head);
  for (let i = 0; i < len; i++) out[head + 4 + i] = payload[i]! ^ key[i & 3]!;
  return out;
}

/** Feeds bytes in, takes whole frames out (unmasked). Throws on a frame above MAX_FRAME_BYTES. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buf.length < 2) return frames;
      const b0 = this.buf[0]!;
      const b1 = this.buf[1]!;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return frames;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return frames;
        const big = this.buf.readBigUInt64BE(2);
        if (big > BigInt(MAX_FRAME_BYTES)) throw new Error(`websocket frame of ${big} bytes is above the ${MAX_FRAME_BYTES} limit`);
        len = Number(big);
        off = 10;
      }
      if (len > MAX_FRAME_BYTES) throw new Error(`websocket frame of ${len} bytes is above the ${MAX_FRAME_BYTES} limit`);
      const masked = (b1 & 0x80) !== 0;
      const total = off + (masked ? 4 : 0) + len;
      if (this.buf.length < total) return frames;
      const payload = Buffer.from(this.buf.subarray(off + (masked ? 4 : 0), total));
      if (masked) {
        const key = this.buf.subarray(off, off + 4);
        for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ key[i & 3]!;
      }
      frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload });
      this.buf = this.buf.subarray(total);
    }
  }
}
