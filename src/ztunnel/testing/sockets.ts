/** Small socket helpers for data-path tests: how a connection ended, and exchanges. */
import { createHash } from 'node:crypto';
import type * as net from 'node:net';

export interface Ending {
  /** Bytes received before the end. */
  received: Buffer;
  /** The peer ended its direction cleanly (FIN) before the close. */
  gotEnd: boolean;
  /** Error code seen (ECONNRESET for a TCP RST), if any. */
  error?: string;
}

/**
 * Collects everything until the socket closes. A test must fail, never hang: after
 * `ms` the socket is destroyed and the ending reports error TEST_TIMEOUT.
 */
export function ending(sock: net.Socket, ms = 15_000): Promise<Ending> {
  const chunks: Buffer[] = [];
  let gotEnd = false;
  let error: string | undefined;
  sock.on('data', (d: Buffer) => chunks.push(d));
  // 'end' is not proof of a FIN: a RST arriving while bytes are unread is reported as
  // end-of-stream by libuv (see endUnlessReset in src/hbone/pipe.ts). On a half-open socket a
  // zero-length write tells them apart: it fails on a reset connection only.
  let probe: Promise<boolean> | undefined;
  sock.on('end', () => {
    if (!sock.allowHalfOpen || sock.destroyed || sock.writableEnded) gotEnd = true;
    else probe = new Promise((r) => sock.write(Buffer.alloc(0), (err) => r(!err)));
  });
  sock.on('error', (err: NodeJS.ErrnoException) => { error ??= err.code ?? err.message; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      error = 'TEST_TIMEOUT';
      sock.destroy();
    }, ms);
    sock.once('close', async () => {
      clearTimeout(timer);
      if (probe && await probe) gotEnd = true;
      const e: Ending = { received: Buffer.concat(chunks), gotEnd };
      if (error) e.error = error;
      resolve(e);
    });
  });
}

export function connected(sock: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!sock.connecting && !sock.pending) return resolve();
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
}

/** Writes `data`, half-closes, and resolves with how the connection ended. */
export async function sendAndEnd(sock: net.Socket, data: Buffer | string): Promise<Ending> {
  const done = ending(sock);
  await connected(sock).catch(() => undefined);
  sock.end(data);
  return done;
}

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Resolves once `pred()` holds, polling every few ms; rejects after `ms`. */
export async function until(pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Round trip `data` on an open connection (echo peer); resolves with what came back. */
export function roundTrip(sock: net.Socket, data: Buffer, ms = 15_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      n += d.length;
      if (n >= data.length) { cleanup(); resolve(Buffer.concat(chunks)); }
    };
    const onClose = () => { cleanup(); reject(new Error('closed during round trip')); };
    const timer = setTimeout(() => { cleanup(); reject(new Error('round trip timed out')); }, ms);
    const cleanup = () => { clearTimeout(timer); sock.off('data', onData); sock.off('close', onClose); };
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.write(data);
  });
}
