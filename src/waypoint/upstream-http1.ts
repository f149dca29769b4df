/**
 * HTTP/1.1 upstream: one keep-alive pool per upstream key, whose connections come from
 * the injected dialer (an HBONE stream or a TCP socket) and speak HTTP/1.1 through
 * UpstreamConnection (the waypoint's own wire code, not http.Agent/ClientRequest).
 *
 * A request takes the most recently used idle connection (LIFO: the least likely to have
 * been closed by the upstream meanwhile), else dials a new one; idle ones are bounded and
 * time out. Connections per upstream are not limited (as http.Agent's default) unless
 * the Service's TrafficPolicy says so (AttemptRequest.pool, connectionPool): past
 * `maxConnections`, a request waits (in order) for the next connection to come free or
 * close; a connection that carried `maxRequestsPerConnection` requests is closed.
 */
import { AttemptError, hostPort, upstreamKey, type AttemptRequest, type UpstreamClient, type UpstreamResponse } from './upstream';
import { UpstreamConnection } from './upstream-conn';
import type { UpstreamDialer, UpstreamPoolLimits, UpstreamTarget } from './types';

export interface Http1UpstreamOptions {
  dialer: UpstreamDialer;
  /** Idle pooled connections close after this, ms. */
  idleMs: number;
  /** Idle connections kept per upstream. */
  maxFreeSockets?: number;
  /** Upstream pools kept at once (least recently used dropped beyond). */
  maxPools?: number;
}

/** A request waiting for a connection under maxConnections: handed one, or told to dial (undefined). */
type Waiter = (conn: UpstreamConnection | undefined) => void;

/** The idle connections of one upstream, with when each went idle. */
class Pool {
  readonly idle: { conn: UpstreamConnection; since: number }[] = [];
  readonly all = new Set<UpstreamConnection>();
  /** Dials under way (they count against maxConnections). */
  dialing = 0;
  /** The limits of the latest request (an endpoint's Service policy). */
  limits: UpstreamPoolLimits | undefined;
  readonly waiters: Waiter[] = [];

  /** A connection closed or a dial failed: the oldest waiter may dial now. */
  wakeOne(): void {
    this.waiters.shift()?.(undefined);
  }
}

export class Http1Upstream implements UpstreamClient {
  /** Pools by upstream key, in least-recently-created order (bounded: endpoints come and go). */
  private readonly pools = new Map<string, Pool>();
  private sweeper: NodeJS.Timeout | undefined;
  private open = 0;

  constructor(private readonly opts: Http1UpstreamOptions) {}

  /** Connections held now, busy or idle (also those of pools dropped while their requests finish). */
  get connections(): number {
    return this.open;
  }

  private poolFor(target: UpstreamTarget): Pool {
    const key = upstreamKey(target);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool();
      if (this.pools.size >= (this.opts.maxPools ?? 4096)) {
        const [oldKey, old] = this.pools.entries().next().value!;
        this.pools.delete(oldKey);
        // Its requests in flight finish; only idle connections go.
        for (const { conn } of old.idle.splice(0)) conn.destroy();
      }
      this.pools.set(key, pool);
    }
    return pool;
  }

  async request(target: UpstreamTarget, a: AttemptRequest): Promise<UpstreamResponse> {
    // The body may fail (downstream gone) while a connection is being dialed: its error
    // then belongs to no one yet, and an unhandled 'error' would end the process.
    a.body?.on('error', ignore);
    const pool = this.poolFor(target);
    pool.limits = a.pool;
    let conn: UpstreamConnection | undefined;
    while (pool.idle.length > 0) {
      const c = pool.idle.pop()!.conn;
      if (c.usable) {
        conn = c;
        break;
      }
      pool.all.delete(c);
    }
    const max = a.pool?.maxConnections;
    while (!conn && max !== undefined && pool.all.size + pool.dialing >= max) {
      conn = await this.waitForConnection(pool, a.signal);
      if (conn && !conn.usable) conn = undefined;
    }
    if (!conn) conn = await this.dial(target, pool, a.signal);
    return conn.request(a, a.authority);
  }

  /** Waits for a connection of `pool` to come free (resolved with it) or close (undefined: dial). */
  private waitForConnection(pool: Pool, signal: AbortSignal): Promise<UpstreamConnection | undefined> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = pool.waiters.indexOf(waiter);
        if (i >= 0) pool.waiters.splice(i, 1);
        reject(new AttemptError('aborted', 'attempt aborted while waiting for a connection (connectionPool.maxConnections)'));
      };
      const waiter: Waiter = (conn) => {
        signal.removeEventListener('abort', onAbort);
        resolve(conn);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      pool.waiters.push(waiter);
    });
  }

  private async dial(target: UpstreamTarget, pool: Pool, signal: AbortSignal): Promise<UpstreamConnection> {
    if (signal.aborted) throw new AttemptError('aborted', 'attempt aborted');
    let sock;
    pool.dialing++;
    try {
      sock = await this.opts.dialer.dial(target);
    } catch (err) {
      pool.dialing--;
      pool.wakeOne();
      throw new AttemptError('connect', `connection to ${hostPort(target)} failed: ${(err as Error)?.message ?? err}`, { cause: err });
    }
    pool.dialing--;
    if (signal.aborted) {
      sock.destroy();
      pool.wakeOne();
      throw new AttemptError('aborted', 'attempt aborted');
    }
    const max = this.opts.maxFreeSockets ?? 64;
    const conn = new UpstreamConnection(sock, (c) => {
      const perConnection = pool.limits?.maxRequestsPerConnection;
      if (perConnection !== undefined && c.uses >= perConnection) {
        // Used up: closed (its 'close' lets a waiter dial a fresh one).
        c.destroy();
        return;
      }
      const waiter = pool.waiters.shift();
      if (waiter) return waiter(c);
      if (pool.idle.length >= max || this.pools.get(upstreamKey(target)) !== pool) {
        pool.all.delete(c);
        c.destroy();
        return;
      }
      pool.idle.push({ conn: c, since: Date.now() });
      this.armSweeper();
    }, hostPort(target));
    pool.all.add(conn);
    this.open++;
    sock.once('close', () => {
      this.open--;
      if (pool.all.delete(conn)) pool.wakeOne();
    });
    return conn;
  }

  /** One timer for all pools: idle connections older than `idleMs` close (cheaper than a timer each). */
  private armSweeper(): void {
    if (this.sweeper) return;
    const period = Math.max(50, Math.min(this.opts.idleMs, 1000));
    this.sweeper = setInterval(() => {
      const cutoff = Date.now() - this.opts.idleMs;
      let left = 0;
      for (const pool of this.pools.values()) {
        // Oldest first: they sit at the bottom of the LIFO stack.
        let n = 0;
        while (n < pool.idle.length && (pool.idle[n]!.since <= cutoff || !pool.idle[n]!.conn.usable)) n++;
        for (const { conn } of pool.idle.splice(0, n)) {
          pool.all.delete(conn);
          conn.destroy();
        }
        left += pool.idle.length;
      }
      if (left === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    }, period);
    this.sweeper.unref();
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const pool of this.pools.values()) {
      for (const conn of pool.all) conn.destroy();
      pool.idle.length = 0;
    }
    this.pools.clear();
  }
}

function ignore(): void {}
