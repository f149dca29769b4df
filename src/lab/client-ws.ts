/**
 * `weft lab ws <url> [--bytes N]`: a WebSocket round trip from inside a pod. Upgrades,
 * sends N random bytes as masked binary frames, reads the echo back, then closes with
 * the close handshake. Prints JSON { status, pod, sent, received, match, closeCode, ms };
 * exit 0 when what came back equals what was sent. Only Node builtins (Node 20 has no
 * WebSocket client of its own).
 */
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { WeftError } from '../lib/errors';
import { parse, parseOptions } from '../lib/options';
import { acceptKey, encodeFrame, FrameReader, newKey, OP } from './websocket';

const specs = {
  bytes: { flag: 'bytes', default: 100_000, description: 'random bytes to send', parse: parse.int({ min: 0, max: 64 << 20 }) },
  frame: { flag: 'frame', default: 16 * 1024, description: 'bytes per frame', parse: parse.int({ min: 1, max: 1 << 20 }) },
  timeout: { flag: 'timeout', default: 10_000, description: 'give up after this long', parse: parse.duration({ min: 1 }) },
};

export interface WsResult {
  /** The handshake's status (101 when upgraded). */
  status: number;
  /** The echo pod that answered (its x-echo-pod handshake header). */
  pod?: string;
  sent: number;
  received: number;
  match: boolean;
  /** The close code the server answered with. */
  closeCode?: number;
  ms: number;
}

export function wsRoundTrip(url: string, bytes: number, frameBytes: number, timeoutMs: number): Promise<WsResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const key = newKey();
    const req = request(url, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': key }, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`websocket round trip not finished within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.on('response', (res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode ?? 0, sent: 0, received: 0, match: false, ms: Date.now() - started });
    });
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      if (res.headers['sec-websocket-accept'] !== acceptKey(key)) {
        clearTimeout(timer);
        socket.destroy();
        return reject(new Error('the upgrade answer has a wrong sec-websocket-accept'));
      }
      const sentHash = createHash('sha256');
      const recvHash = createHash('sha256');
      let sent = 0;
      let received = 0;
      let closeCode: number | undefined;
      const reader = new FrameReader();
      const finish = () => {
        clearTimeout(timer);
        const match = sent === received && sentHash.digest('hex') === recvHash.digest('hex');
        const pod = res.headers['x-echo-pod'];
        resolve({ status: 101, ...(typeof pod === 'string' ? { pod } : {}), sent, received, match, ...(closeCode !== undefined ? { closeCode } : {}), ms: Date.now() - started });
      };
      const onData = (chunk: Buffer) => {
        for (const f of reader.push(chunk)) {
          if (f.opcode === OP.close) {
            closeCode = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined;
            socket.end();
            return;
          }
          received += f.payload.length;
          recvHash.update(f.payload);
        }
        if (received >= sent && sent === bytes) sendClose();
      };
      let closing = false;
      const sendClose = () => {
        if (closing) return;
        closing = true;
        const code = Buffer.alloc(2);
        code.writeUInt16BE(1000);
        socket.write(encodeFrame(OP.close, code, true));
      };
      socket.on('data', (c: Buffer) => { try { onData(c); } catch (e) { socket.destroy(e as Error); } });
      socket.on('error', (e) => { clearTimeout(timer); reject(e); });
      socket.on('close', finish);
      if (head.length) onData(head);
      for (let left = bytes; left > 0;) {
        const chunk = randomBytes(Math.min(left, frameBytes));
        left -= chunk.length;
        sent += chunk.length;
        sentHash.update(chunk);
        socket.write(encodeFrame(OP.binary, chunk, true));
      }
      if (bytes === 0) sendClose();
    });
    req.end();
  });
}

export async function wsMain(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const { values, positionals } = parseOptions(specs, argv, {});
  if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', 'ws needs exactly one URL, e.g. ws http://echo.demo/');
  try {
    const r = await wsRoundTrip(positionals[0]!, values.bytes, values.frame, values.timeout);
    out.write(JSON.stringify(r) + '\n');
    if (!r.match) err.write(`ws: ${r.status === 101 ? `what came back differs from what was sent (${r.received} of ${r.sent} bytes)` : `the upgrade was answered ${r.status}`}\n`);
    return r.match ? 0 : 1;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    err.write(`ws: ${positionals[0]}: ${code ? `${code} (${(e as Error).message})` : (e as Error).message}\n`);
    return 1;
  }
}
