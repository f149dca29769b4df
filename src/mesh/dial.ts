/**
 * Plain TCP dials (the ztunnel to a local pod or a non-mesh destination, the waypoint
 * to an endpoint outside the mesh), with a deadline and the socket settings the pipe
 * relies on.
 */
import * as net from 'node:net';
import { WeftError } from '../lib/errors';
import { formatHostPort } from '../lib/address';
import type { OriginalDst, SocketFactory } from '../hbone/contracts';
import { tcpKeepalive } from '../lib/tcp-keepalive';

export const defaultUpstreamFactory: SocketFactory = (t) => net.connect({ host: t.host, port: t.port, allowHalfOpen: true, noDelay: true });

/**
 * What cancels a dial: `cancelled` says so now, `onCancel`'s callback later (it returns
 * the unsubscribe). Not an AbortSignal: the ztunnel's inbound dials once per HBONE
 * stream, and an AbortController per stream (an EventTarget and a signal) was a visible
 * share of a destination ztunnel's CPU per new connection; `onClose(stream)` costs one
 * listener.
 */
export interface DialCancel {
  readonly cancelled: boolean;
  onCancel(fn: () => void): () => void;
}

/** Cancelled once `e` (a stream, a socket) has closed. */
export function onClose(e: { readonly closed: boolean; readonly destroyed: boolean; once(event: 'close', fn: () => void): unknown; off(event: 'close', fn: () => void): unknown }): DialCancel {
  return {
    get cancelled() { return e.closed || e.destroyed; },
    onCancel(fn) {
      e.once('close', fn);
      return () => { e.off('close', fn); };
    },
  };
}

/**
 * Resolves with the connected socket; rejects with WEFT_HBONE_UPSTREAM_UNREACHABLE
 * (also when `cancel` fires first: the socket is destroyed, `details.reason` is
 * `cancelled`).
 * The socket is half-open capable (FIN in one direction keeps the other) and has
 * Nagle off: the proxy must not add latency to small writes.
 */
export function dialTcp(factory: SocketFactory, target: OriginalDst, timeoutMs: number, cancel?: DialCancel): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const addr = formatHostPort(target.ip, target.port);
    const cancelled = () => new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE', `dial to ${addr} cancelled: the client went away first`,
      { details: { target: addr, reason: 'cancelled' } });
    if (cancel?.cancelled) {
      reject(cancelled());
      return;
    }
    let sock: net.Socket;
    try {
      sock = factory({ host: target.ip, port: target.port }, { kind: 'upstream', originalDst: target });
    } catch (err) {
      reject(new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE', `cannot dial ${addr}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    // Pipe semantics need half-open sockets; a custom factory may have forgotten.
    sock.allowHalfOpen = true;
    sock.setNoDelay(true);
    tcpKeepalive(sock);
    const timer = setTimeout(() => {
      finish(new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE', `connecting to ${addr} timed out after ${timeoutMs} ms; check the destination runs and no firewall drops the traffic`,
        { details: { target: addr, reason: 'timeout' } }));
    }, timeoutMs);
    // The client that asked went away: the half-open socket is destroyed at once, so a
    // peer resetting its streams cannot keep dials (and file descriptors) in flight.
    const unsubscribe = cancel?.onCancel(() => finish(cancelled()));
    const finish = (err?: Error) => {
      clearTimeout(timer);
      unsubscribe?.();
      sock.off('connect', onConnect);
      sock.off('error', onError);
      if (err) {
        // Keep a listener: a late error on the discarded socket must not crash the process.
        sock.on('error', () => {});
        sock.destroy();
        reject(err);
      } else {
        resolve(sock);
      }
    };
    const onConnect = () => finish();
    const onError = (err: NodeJS.ErrnoException) => finish(new WeftError('WEFT_HBONE_UPSTREAM_UNREACHABLE',
      `connecting to ${addr} failed: ${err.code ?? err.message}${err.code === 'ECONNREFUSED' ? ' (nothing listens on that port)' : ''}`,
      { cause: err, details: { target: addr, reason: err.code ?? 'error' } }));
    sock.once('connect', onConnect);
    sock.once('error', onError);
  });
}

/** A TCP RST: the client must not mistake a refusal for an empty reply. */
export function reset(sock: net.Socket): void {
  if (sock.destroyed) return;
  if (!sock.pending && !sock.connecting) sock.resetAndDestroy();
  else sock.destroy();
}
