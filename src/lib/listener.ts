/**
 * The TCP listener every proxy is built on (the ztunnel's three, the waypoint's HBONE
 * server): listen/close, and tracking of the sockets it owns so that close() leaves
 * nothing behind (tests check that sockets, streams and timers return to zero).
 */
import * as net from 'node:net';
import type { Logger } from './log';
import { LogLimiter } from './log-limiter';
import { tcpKeepalive } from './tcp-keepalive';

const CLOSE_DEADLINE_MS = 5000;

export abstract class TcpListener {
  protected readonly server: net.Server;
  protected readonly log: Logger;
  /** Rate limits for lines any client can cause (refusals); shared with what serves the listener's connections. */
  readonly logLimiter = new LogLimiter();
  /** Sockets to destroy on close(); a listener may swap in a wrapper (TLS) via track(). */
  private readonly owned = new Set<net.Socket>();
  private closing: Promise<void> | undefined;
  /** Set by stopAccepting(): resolves when the server and every accepted socket closed. */
  private serverClosed: Promise<void> | undefined;

  /**
   * `allowHalfOpen` (default true): a client's FIN ends only one direction of a
   * proxied connection. A TLS transport must not be half-open: its peer's FIN means
   * the tunnel is gone, and a half-open socket would keep the HTTP/2 session forever.
   */
  constructor(log: Logger, opts: { pauseOnConnect?: boolean; allowHalfOpen?: boolean }) {
    this.log = log;
    this.server = net.createServer({ allowHalfOpen: opts.allowHalfOpen ?? true, pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true });
    this.server.on('connection', (sock) => {
      this.track(sock);
      tcpKeepalive(sock);
      Promise.resolve(this.onConnection(sock)).catch((err: unknown) => {
        this.log.error({ err }, 'unexpected error handling a connection; closing it');
        sock.destroy();
      });
    });
    this.server.on('error', (err) => this.log.error({ err }, 'listener error'));
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(host: string, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        const addr = this.server.address() as net.AddressInfo;
        this.log.info({ address: `${addr.address}:${addr.port}` }, 'listening');
        resolve(addr);
      });
    });
  }

  address(): net.AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /**
   * Closes the listening socket and nothing else: connections already accepted go on
   * (a drain). With the capture rules in place, new redirected connections are then
   * refused by the kernel, never sent elsewhere. Idempotent.
   */
  stopAccepting(): void {
    if (this.serverClosed) return;
    this.serverClosed = new Promise<void>((resolve) => {
      if (!this.server.listening) resolve();
      else this.server.close(() => resolve());
    });
    this.onStopAccepting();
  }

  /**
   * Stops accepting, closes every connection this listener owns (each access-log line
   * says `closed by the proxy: <why>`), and resolves when done.
   */
  close(why = 'shutdown'): Promise<void> {
    this.closing ??= (async () => {
      this.stopAccepting();
      await this.closeResources(why);
      for (const s of this.owned) s.destroy();
      this.owned.clear();
      // server.close() waits for every accepted socket; one we lost track of must not
      // hang shutdown forever.
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.log.warn({ deadlineMs: CLOSE_DEADLINE_MS }, 'listener closed with connections still open');
          resolve();
        }, CLOSE_DEADLINE_MS);
      });
      await Promise.race([this.serverClosed, deadline]);
      clearTimeout(timer);
    })();
    return this.closing;
  }

  /** True once stopAccepting() ran (draining or closed). */
  protected get acceptStopped(): boolean {
    return this.serverClosed !== undefined;
  }

  /** Owns `sock` until it closes. */
  protected track(sock: net.Socket): void {
    this.owned.add(sock);
    sock.once('close', () => this.owned.delete(sock));
  }

  protected untrack(sock: net.Socket): void {
    this.owned.delete(sock);
  }

  /** Sockets currently owned (accepted and not yet closed). */
  get ownedSockets(): number {
    return this.owned.size;
  }

  protected abstract onConnection(sock: net.Socket): Promise<void> | void;

  /** Listener-specific start of a drain (the HBONE server sends GOAWAY). */
  protected onStopAccepting(): void {}

  /** Listener-specific teardown before the owned sockets are destroyed; `why` goes to the access log. */
  protected closeResources(_why: string): Promise<void> | void {}
}
