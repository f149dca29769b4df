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
 * on it later, waits until the PING keepalive ends the connection, 20–30 s later.
 * Istio's ztunnel (Rust h2) keeps reading while it writes, so a Weft peer beside it
 * never meets this; two Weft peers did (the lab's 8 × 8 MB echo through two ztunnels,
 * a whole session stuck with no error and no access line).
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
 * kernel's buffer, and one line per reason says so.
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

/** What to do about each miss, for its log line. */
const WHAT_TO_DO: Record<Exclude<SendBufferMiss, 'off'>, string> = {
  no_helper: 'native/build/weft_send_buffer.node is not built (run `node scripts/build-native.js` with a C compiler and Node\'s headers)',
  not_permitted: 'SO_SNDBUFFORCE needs CAP_NET_ADMIN (the ztunnel DaemonSet grants it)',
  no_descriptor: 'the socket had no file descriptor',
  failed: 'setsockopt failed',
};

/**
 * Raises HBONE sockets' send buffers for one process: the first miss of each kind is
 * logged, and after an EPERM the helper is not called again (the process has no
 * CAP_NET_ADMIN, every call would fail the same way).
 */
export class SendBuffers {
  private readonly logged = new Set<SendBufferMiss>();
  private denied = false;

  constructor(
    private readonly raise: NativeRaise | null,
    /** A waypoint says `info`: the ztunnel at the other end of each of its connections keeps them reading. */
    private readonly missLevel: 'warn' | 'info' = 'warn',
  ) {}

  /** Raises `socket`'s send buffer once it has a descriptor (a dial's socket gets one when it starts connecting). */
  apply(socket: net.Socket, bytes: number, log: Logger): void {
    if (socketFd(socket) === undefined && socket.connecting) socket.once('connect', () => this.applyNow(socket, bytes, log));
    else this.applyNow(socket, bytes, log);
  }

  private applyNow(socket: net.Socket, bytes: number, log: Logger): void {
    // Closed before it got here: nothing to raise, nothing worth a line.
    if (socket.destroyed) return;
    const out: SendBufferOutcome = this.denied ? { applied: false, reason: 'not_permitted' } : raiseSendBuffer(socket, bytes, this.raise);
    if (out.applied || out.reason === 'off') return;
    if (out.reason === 'not_permitted') this.denied = true;
    if (this.logged.has(out.reason)) return;
    this.logged.add(out.reason);
    log[this.missLevel]({ reason: out.reason, detail: out.detail, bytes },
      `HBONE send buffers keep the kernel's size: ${WHAT_TO_DO[out.reason]}. Bulk traffic both ways on one HBONE connection between two Weft peers can then stall it (src/hbone/send-buffer.ts)`);
  }
}

let processWide: SendBuffers | undefined;

/** The process's SendBuffers, made on first use with the built helper. */
export function hboneSendBuffers(): SendBuffers {
  processWide ??= new SendBuffers(helper());
  return processWide;
}

/** Set once at start-up by a component whose misses are expected (the waypoint: `info`). */
export function configureSendBuffers(opts: { missLevel: 'warn' | 'info' }): void {
  processWide = new SendBuffers(helper(), opts.missLevel);
}
