/**
 * What the node's DNAT + conntrack would provide, emulated in-process: the dialling
 * side records "the connection from <local ip:port> was meant for <ip:port>", and the
 * accepting listener looks it up by the accepted socket's remote address — exactly
 * the key the real conntrack reader uses. Lookups wait briefly because the accept may
 * run before the dialler's 'connect' callback has recorded the entry.
 */
import * as net from 'node:net';
import { WeftError } from '../../lib/errors';
import { formatHostPort, normalizeIp } from '../../lib/address';
import type { OriginalDstSource } from '../contracts';
import type { DialTarget, OriginalDst, SocketFactory } from '../../hbone/contracts';

export class ConntrackTable implements OriginalDstSource {
  private readonly entries = new Map<string, OriginalDst>();
  private readonly waiters = new Map<string, Array<(d: OriginalDst) => void>>();

  constructor(private readonly waitMs = 2000) {}

  record(localIp: string, localPort: number, dst: OriginalDst): void {
    const k = formatHostPort(normalizeIp(localIp), localPort);
    this.entries.set(k, dst);
    const ws = this.waiters.get(k);
    if (ws) {
      this.waiters.delete(k);
      for (const w of ws) w(dst);
    }
  }

  /** Entries are dropped when the recorded connection closes; this many remain. */
  get size(): number {
    return this.entries.size;
  }

  lookup(socket: net.Socket): Promise<OriginalDst> {
    const k = formatHostPort(normalizeIp(socket.remoteAddress), socket.remotePort ?? 0);
    const hit = this.entries.get(k);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const ws = this.waiters.get(k);
        if (ws) {
          const i = ws.indexOf(done);
          if (i !== -1) ws.splice(i, 1);
          if (ws.length === 0) this.waiters.delete(k);
        }
        reject(new WeftError('WEFT_ORIGINAL_DST_UNKNOWN', `test conntrack has no entry for ${k}`));
      }, this.waitMs);
      const done = (d: OriginalDst) => {
        clearTimeout(timer);
        resolve(d);
      };
      const ws = this.waiters.get(k) ?? [];
      ws.push(done);
      this.waiters.set(k, ws);
    });
  }

  /** Connects to `via` (a listener) from `from`, recording `dst` as the original destination. */
  dial(via: DialTarget, dst: OriginalDst, opts: { from?: string; allowHalfOpen?: boolean } = {}): net.Socket {
    const sock = net.connect({ host: via.host, port: via.port, localAddress: opts.from, allowHalfOpen: opts.allowHalfOpen ?? true, noDelay: true });
    this.watch(sock, dst);
    return sock;
  }

  /** A SocketFactory (for pools) whose dials are recorded like DNATed ones. */
  factory(): SocketFactory {
    return (t, purpose) => {
      const sock = net.connect({ host: t.host, port: t.port, noDelay: true, allowHalfOpen: purpose.kind === 'upstream' });
      this.watch(sock, purpose.originalDst);
      return sock;
    };
  }

  private watch(sock: net.Socket, dst: OriginalDst): void {
    sock.once('connect', () => {
      const ip = sock.localAddress;
      const port = sock.localPort;
      if (ip === undefined || port === undefined) return;
      this.record(ip, port, dst);
      sock.once('close', () => this.entries.delete(formatHostPort(normalizeIp(ip), port)));
    });
  }
}

/** An OriginalDstSource that answers the same destination for every socket (benchmarks). */
export function fixedOriginalDst(dst: OriginalDst): OriginalDstSource {
  return { lookup: () => Promise.resolve(dst) };
}
