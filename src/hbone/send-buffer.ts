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

/** The compiled helper, loaded once; undefined when this machine did not build it. */
export function loadSendBufferHelper(path = nativeFile('weft_send_buffer.node')): NativeRaise | undefined {
  return loadAddon<{ raiseSendBuffer: NativeRaise }>(path, ['raiseSendBuffer'])?.raiseSendBuffer;
}

/** Sets `socket`'s send buffer to hold `bytes` (0: leave the kernel's). Never throws. */
export function raiseSendBuffer(socket: net.Socket, bytes: number, raise: NativeRaise | null): SendBufferOutcome {
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

/** What went wrong and what to do, for each miss's log line. */
const WHAT_TO_DO: Record<Exclude<SendBufferMiss, 'off'>, (bytes: number, detail?: string) => string> = {
  no_helper: () => 'native/build/weft_send_buffer.node is not built; run `node scripts/build-native.js` where a C compiler and Node\'s headers are (the image build does)',
  not_permitted: () => 'this process lacks CAP_NET_ADMIN, which SO_SNDBUFFORCE needs; add it to the ztunnel container\'s securityContext.capabilities.add (daemonset/ztunnel.yaml has it)',
  no_descriptor: () => 'a socket had no file descriptor yet when it was raised (a bug: please report it with this line)',
  failed: (bytes, detail) => `setsockopt(SO_SNDBUFFORCE, ${bytes}) failed: ${detail ?? 'no reason given'}`,
};

/**
 * Raises HBONE sockets' send buffers for one process: the first miss of each kind is
 * logged, and after an EPERM the helper is not called again.
 */
export class SendBuffers {
  private readonly logged = new Set<SendBufferMiss>();

  constructor(private readonly raise: NativeRaise | null) {}

  /** Raises `socket`'s send buffer once it has a descriptor (a dial's socket gets one when it starts connecting). */
  apply(socket: net.Socket, bytes: number, log: Logger): void {
    if (socketFd(socket) === undefined && socket.connecting) socket.once('connect', () => this.applyNow(socket, bytes, log));
    else this.applyNow(socket, bytes, log);
  }

  private applyNow(socket: net.Socket, bytes: number, log: Logger): void {
    // Closed before it got here: nothing to raise, nothing worth a line.
    if (socket.destroyed) return;
    // After one EPERM every call would fail the same way.
    if (this.logged.has('not_permitted')) return;
    const out = raiseSendBuffer(socket, bytes, this.raise);
    if (out.applied || out.reason === 'off' || this.logged.has(out.reason)) return;
    this.logged.add(out.reason);
    log.warn({ reason: out.reason, detail: out.detail, bytes },
      `HBONE send buffers keep the kernel's size: ${WHAT_TO_DO[out.reason](bytes, out.detail)}. Bulk traffic both ways on one HBONE connection between two Weft ztunnels can then stall it (src/hbone/send-buffer.ts)`);
  }
}

let processWide: SendBuffers | undefined;

/** The process's SendBuffers, made on first use with the built helper. */
export function hboneSendBuffers(): SendBuffers {
  processWide ??= new SendBuffers(loadSendBufferHelper() ?? null);
  return processWide;
}
