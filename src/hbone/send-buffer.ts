/**
 * The kernel send buffer of every HBONE connection, raised so that bulk both ways on
 * one connection cannot stall it for good.
 *
 * Node's http2 stops reading its socket while a write to that socket is pending (its
 * guard against CVE-2019-9511/9517: take no more input while output is backed up). A
 * write is pending when the kernel will not take all of it, i.e. when the peer is not
 * reading. With 4 MiB stream and 16 MiB connection windows, two Node peers that both
 * send (an echo, a database's replication, any upload answered by a download) can each
 * have more in flight than the kernel buffers between them hold: both stop reading,
 * neither write can finish, and every stream of the connection, and every CONNECT sent
 * on it later, waits until the PING keepalive ends the connection 20 s later. Istio's ztunnel (Rust h2) keeps reading while it writes,
 * so a Weft peer beside it never meets this; two Weft peers did (the lab's 8 × 8 MB
 * echo through two ztunnels, a whole session stuck with no error and no access line).
 *
 * What a peer lets this side have in flight is bounded by its connection window: it
 * returns that window only for bytes it has taken off the socket. A send buffer at
 * least that large takes every write at once, so this side never waits on a write, so
 * it keeps reading, so the peer's writes drain too. One side per connection is enough,
 * and the ztunnel is a side of every HBONE connection (ztunnel to ztunnel, to and from
 * a waypoint). Memory: the value is a ceiling, the kernel charges what is queued, i.e.
 * what the peer has not read (docs/architecture.md has the worst case).
 *
 * The kernel has no size for this in its defaults (net.ipv4.tcp_wmem's ceiling is
 * 4 MiB, and the buffer grows only with the congestion window), and Node no binding
 * for SO_SNDBUF on TCP, so the native helper sets it (native/send_buffer.c) with
 * SO_SNDBUFFORCE, which needs CAP_NET_ADMIN. Without either, connections keep the
 * kernel's buffer and a warning says so once per process.
 */
import type * as net from 'node:net';
import type { Logger } from '../lib/log';
import { loadAddon, nativeFile, socketFd } from '../lib/native';

type NativeRaise = (fd: number, bytes: number) => number;

/** What became of one socket's send buffer. */
export type SendBufferOutcome =
  | { applied: true; bytes: number }
  | { applied: false; reason: SendBufferMiss; detail?: string };

export type SendBufferMiss = 'off' | 'no_helper' | 'not_permitted' | 'no_descriptor' | 'failed';

let loaded: NativeRaise | null | undefined;

/** The compiled helper, loaded once; undefined when this machine did not build it. */
export function loadSendBufferHelper(path = nativeFile('weft_send_buffer.node')): NativeRaise | undefined {
  return loadAddon<{ raiseSendBuffer: NativeRaise }>(path, ['raiseSendBuffer'])?.raiseSendBuffer;
}

/** The helper, or null when this machine did not build it (loaded on first use). */
function helper(): NativeRaise | null {
  if (loaded === undefined) loaded = loadSendBufferHelper() ?? null;
  return loaded;
}

/** Sets `socket`'s send buffer to hold `bytes` (0: leave the kernel's). Never throws. */
export function raiseSendBuffer(socket: net.Socket, bytes: number, raise: NativeRaise | null = helper()): SendBufferOutcome {
  if (bytes <= 0) return { applied: false, reason: 'off' };
  if (!raise) return { applied: false, reason: 'no_helper' };
  const fd = socketFd(socket);
  if (fd === undefined) return { applied: false, reason: 'no_descriptor' };
  try {
    return { applied: true, bytes: raise(fd, bytes) };
  } catch (err) {
    const code = (err as { code?: string }).code;
    return { applied: false, reason: code === 'EPERM' ? 'not_permitted' : 'failed', detail: (err as Error).message };
  }
}

/**
 * How a miss is logged, once per reason and process. Without CAP_NET_ADMIN is a
 * waypoint's case (a ztunnel without it fails at its iptables rules before any HBONE
 * connection), and harmless there: the other end of its connections is a ztunnel.
 */
const MISSES: Record<Exclude<SendBufferMiss, 'off'>, { level: 'warn' | 'info'; why: string }> = {
  no_helper: { level: 'warn', why: 'native/build/weft_send_buffer.node is not built (run `node scripts/build-native.js` with a C compiler and Node\'s headers)' },
  not_permitted: { level: 'info', why: 'SO_SNDBUFFORCE needs CAP_NET_ADMIN (a ztunnel has it; for a waypoint the ztunnel at the other end of each connection keeps it reading)' },
  no_descriptor: { level: 'warn', why: 'the socket had no file descriptor' },
  failed: { level: 'warn', why: 'setsockopt failed' },
};

const logged = new Set<SendBufferMiss>();
/** After one EPERM the process has no CAP_NET_ADMIN: no more setsockopt calls that fail. */
let permitted = true;

/**
 * raiseSendBuffer for an HBONE socket, once it has a descriptor (a dial's socket
 * gets one when it starts connecting); the first failure in the process is logged.
 */
export function raiseHboneSendBuffer(socket: net.Socket, bytes: number, log: Logger, raise: NativeRaise | null = helper()): void {
  const apply = () => {
    // Closed before it got here: nothing to raise, nothing worth a line.
    if (socket.destroyed) return;
    const out = permitted ? raiseSendBuffer(socket, bytes, raise) : { applied: false as const, reason: 'not_permitted' as const };
    if (out.applied || out.reason === 'off') return;
    if (out.reason === 'not_permitted') permitted = false;
    if (logged.has(out.reason)) return;
    logged.add(out.reason);
    const miss = MISSES[out.reason];
    log[miss.level]({ reason: out.reason, detail: out.detail, bytes },
      `HBONE send buffers keep the kernel's size: ${miss.why}. Bulk traffic both ways on one HBONE connection between two Weft ztunnels can then stall it (src/hbone/send-buffer.ts)`);
  };
  if (socketFd(socket) === undefined && socket.connecting) socket.once('connect', apply);
  else apply();
}
