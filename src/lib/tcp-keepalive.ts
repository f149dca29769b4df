/**
 * TCP keepalive, the kernel's own probe that a peer is still there, on every proxied
 * socket (HBONE tunnels add HTTP/2 PINGs on top: src/hbone/keepalive.ts).
 */
import type * as net from 'node:net';

/**
 * TCP keepalive's first probe after this much silence, on every proxied socket
 * (accepted, dialled to a pod, HBONE both ways). The kernel then probes every
 * net.ipv4.tcp_keepalive_intvl (75 s) up to tcp_keepalive_probes (9) times, so a
 * peer gone without a FIN is dropped after ~12 min instead of the kernel's ~2 h 11
 * min; a minute of silence costs one empty segment. HBONE tunnels also have PINGs
 * (dead after 20 s); idle pipes end at the idle timeout (src/hbone/pipe.ts).
 */
export const TCP_KEEPALIVE_DELAY_MS = 60_000;

/** Turns TCP keepalive on (safe on a socket not yet connected: applied at connect). */
export function tcpKeepalive(sock: net.Socket): void {
  sock.setKeepAlive(true, TCP_KEEPALIVE_DELAY_MS);
}
