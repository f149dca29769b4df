import { readFile } from 'node:fs/promises';
import { WeftError } from '../lib/errors';
import { canonicalIp } from '../lib/address';

/**
 * Where a captured connection was going before the capture rules DNAT'ed it to the
 * ztunnel (src/iptables/rules.ts).
 *
 * Node.js has no getsockopt(SO_ORIGINAL_DST), so we read the same fact from conntrack's
 * procfs view: after `DNAT pod→X:p ⇒ node:15001`, the entry reads
 *   orig:  src=<pod> dst=<X> sport=<s> dport=<p>
 *   reply: src=<node> dst=<pod> sport=15001 dport=<s>
 * and the accepted socket has remote=<pod>:<s>, local=<node>:15001 — exactly the reply
 * tuple reversed. That tuple is unique among live entries (conntrack remaps the source
 * port if a DNAT would collide), so it identifies the connection.
 *
 * Found on this project's reference machine (Linux 6.18, conntrack built in, no
 * loadable modules, iptables 1.8.9 nft and legacy): /proc/net/nf_conntrack exists in
 * every netns, a fresh one included, with no modprobe; it is mode 0440 root, so the
 * reader needs root. It lists the connections of the reading process's own netns,
 * which is why the ztunnel reads /proc/self/net/nf_conntrack in the node netns.
 * Conntrack only tracks in a netns once a rule there needs it: a rule with a NAT
 * target (DNAT/REDIRECT/MASQUERADE) does, even in an unreferenced chain; a nat table
 * or chain without one does not. The capture rules always contain DNAT rules, so
 * applying them (even for zero pods) turns tracking on; connections opened before
 * that have no entry. Kernels without CONFIG_NF_CONNTRACK_PROCFS lack the file and
 * this resolver cannot work there (`conntrack -L` would be the fallback).
 *
 * Reading is O(table), so concurrent lookups share one read, entries seen by a read
 * are cached briefly for connections accepted just after it, and a miss is retried
 * once with a fresh read.
 */

export interface OriginalDst {
  /** IPv4 dotted quad, or compressed IPv6. */
  ip: string;
  port: number;
}

/** The parts of a net.Socket the lookup needs. */
export interface SocketAddresses {
  remoteAddress?: string;
  remotePort?: number;
  localAddress?: string;
  localPort?: number;
}

export interface ConntrackTuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

export interface ConntrackEntry {
  family: 'ipv4' | 'ipv6';
  protocol: string;
  /** TCP state (ESTABLISHED, SYN_RECV, TIME_WAIT, ...); absent for other protocols. */
  state?: string;
  orig: ConntrackTuple;
  reply: ConntrackTuple;
}

export interface OriginalDstResolverOptions {
  /** Default /proc/self/net/nf_conntrack: the reading process's own netns. */
  path?: string;
  /** Injected for unit tests of the batching logic; default fs.readFile. */
  readFile?: (path: string) => Promise<string>;
  /** Wait before the one retry after a miss. Default 25 ms. */
  retryDelayMs?: number;
  /** How long unclaimed entries from a read may answer later lookups. Default 1 s. */
  cacheTtlMs?: number;
  /** Upper bound on cached entries (the table can hold 100k+). Default 65536. */
  maxCacheEntries?: number;
  now?: () => number;
}

/** TCP states where the tuple may soon be reused by another connection: never cached. */
const CLOSING = new Set(['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE']);

function tupleKey(dst: string, dport: number, src: string, sport: number): string {
  return `${dst}|${dport}|${src}|${sport}`;
}

/**
 * Parses /proc/net/nf_conntrack text. Lines look like
 * `ipv4 2 tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… [flags] src=… …`:
 * the first src/dst/sport/dport group is the original tuple, the second the reply.
 * Lines without two full tuples (e.g. ICMP) are skipped, as are protocols other than
 * `protocols` when given.
 */
export function parseConntrack(text: string, protocols?: ReadonlySet<string>): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const entry = parseLine(line, protocols);
    if (entry) out.push(entry);
  }
  return out;
}

function parseLine(line: string, protocols?: ReadonlySet<string>): ConntrackEntry | undefined {
  const f = line.split(/\s+/);
  if (f.length < 8 || (f[0] !== 'ipv4' && f[0] !== 'ipv6')) return undefined;
  const protocol = f[2]!;
  if (protocols && !protocols.has(protocol)) return undefined;
  const tuples: Partial<Record<'src' | 'dst' | 'sport' | 'dport', string>>[] = [];
  let state: string | undefined;
  for (let i = 5; i < f.length; i++) {
    const tok = f[i]!;
    const eq = tok.indexOf('=');
    if (eq === -1) {
      if (i === 5 && protocol === 'tcp') state = tok;
      continue;
    }
    const k = tok.slice(0, eq);
    if (k !== 'src' && k !== 'dst' && k !== 'sport' && k !== 'dport') continue;
    // A second `src=` starts the reply tuple.
    if (k === 'src') tuples.push({});
    const cur = tuples[tuples.length - 1];
    if (cur) cur[k] = tok.slice(eq + 1);
  }
  const [o, r] = tuples;
  if (!o?.src || !o.dst || !o.sport || !o.dport || !r?.src || !r.dst || !r.sport || !r.dport) return undefined;
  return {
    family: f[0],
    protocol,
    ...(state === undefined ? {} : { state }),
    orig: { src: canonicalIp(o.src), dst: canonicalIp(o.dst), sport: Number(o.sport), dport: Number(o.dport) },
    reply: { src: canonicalIp(r.src), dst: canonicalIp(r.dst), sport: Number(r.sport), dport: Number(r.dport) },
  };
}

/**
 * The lines that may have one of `ports` as reply source port, found by substring
 * search instead of splitting the whole table: on a 100k-entry table only the few
 * lines of captured connections get tokenised.
 */
function* linesWithReplyPort(text: string, ports: ReadonlySet<number>): Generator<string> {
  const starts = new Set<number>();
  for (const port of ports) {
    const needle = ` sport=${port} dport=`;
    for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) {
      const start = text.lastIndexOf('\n', at) + 1;
      if (starts.has(start)) continue;
      starts.add(start);
      const end = text.indexOf('\n', at);
      yield text.slice(start, end === -1 ? undefined : end);
    }
  }
}

interface Waiter {
  key: string;
  retried: boolean;
  describe: string;
  resolve(dst: OriginalDst): void;
  reject(err: Error): void;
}

export class OriginalDstResolver {
  private readonly path: string;
  private readonly read: (path: string) => Promise<string>;
  private readonly retryDelayMs: number;
  private readonly cacheTtlMs: number;
  private readonly maxCacheEntries: number;
  private readonly now: () => number;
  /** Lookups waiting for a read that starts after they arrived. */
  private pending: Waiter[] = [];
  private reading = false;
  private cache = new Map<string, OriginalDst>();
  private cacheAt = 0;
  /** Local (listener) ports asked about so far: only their entries are worth caching. */
  private readonly localPorts = new Set<number>();
  private readonly retryTimers = new Map<NodeJS.Timeout, Waiter>();
  /** Counters for metrics and tests. */
  readonly stats = { reads: 0, cacheHits: 0, retries: 0, misses: 0 };

  constructor(opts: OriginalDstResolverOptions = {}) {
    this.path = opts.path ?? '/proc/self/net/nf_conntrack';
    this.read = opts.readFile ?? ((p) => readFile(p, 'utf8'));
    this.retryDelayMs = opts.retryDelayMs ?? 25;
    this.cacheTtlMs = opts.cacheTtlMs ?? 1000;
    this.maxCacheEntries = opts.maxCacheEntries ?? 65536;
    this.now = opts.now ?? Date.now;
  }

  /** The original destination of an accepted, captured TCP socket. */
  resolve(socket: SocketAddresses): Promise<OriginalDst> {
    const { remoteAddress, remotePort, localAddress, localPort } = socket;
    if (!remoteAddress || !remotePort || !localAddress || !localPort) {
      return Promise.reject(new WeftError('WEFT_ORIGINAL_DST_UNKNOWN',
        'the connection closed before its original destination could be read (socket has no addresses); nothing to do unless this happens often',
        { details: { remoteAddress, remotePort, localAddress, localPort } }));
    }
    const key = tupleKey(canonicalIp(remoteAddress), remotePort, canonicalIp(localAddress), localPort);
    this.localPorts.add(localPort);
    const cached = this.takeCached(key);
    if (cached) return Promise.resolve(cached);
    return new Promise((resolve, reject) => {
      const describe = `${remoteAddress}:${remotePort} -> ${localAddress}:${localPort}`;
      this.pending.push({ key, retried: false, describe, resolve, reject });
      this.pump();
    });
  }

  /** Cancels pending retries (lookups waiting on them are rejected). */
  close(): void {
    const waiting = [...this.pending, ...this.retryTimers.values()];
    for (const t of this.retryTimers.keys()) clearTimeout(t);
    this.retryTimers.clear();
    this.pending = [];
    for (const w of waiting) w.reject(new WeftError('WEFT_ORIGINAL_DST_UNKNOWN', 'original-destination resolver closed while the lookup was pending (shutdown)'));
  }

  private takeCached(key: string): OriginalDst | undefined {
    if (this.now() - this.cacheAt > this.cacheTtlMs) {
      this.cache.clear();
      return undefined;
    }
    const hit = this.cache.get(key);
    // Claimed once: a later connection with the same tuple must come from a fresh read.
    if (hit) {
      this.cache.delete(key);
      this.stats.cacheHits++;
    }
    return hit;
  }

  /**
   * Starts a read for everything pending unless one is running or about to start. The
   * start waits for setImmediate so that connections accepted in the same event-loop
   * turn share it. A lookup that arrives during a read waits for the next one, which
   * starts after its connection's SYN created the entry.
   */
  private pump(): void {
    if (this.reading || this.pending.length === 0) return;
    this.reading = true;
    setImmediate(() => {
      const batch = this.pending;
      this.pending = [];
      if (batch.length === 0) {
        this.reading = false;
        return;
      }
      this.stats.reads++;
      // Started inside a promise so a reader that throws synchronously rejects instead
      // of throwing out of setImmediate (an uncaught exception ends the process).
      Promise.resolve().then(() => this.read(this.path)).then(
        (text) => this.settle(batch, text),
        (err: NodeJS.ErrnoException) => {
          const hint = err.code === 'ENOENT'
            ? 'the kernel has no conntrack procfs here: load nf_conntrack (modprobe nf_conntrack) on a kernel with CONFIG_NF_CONNTRACK_PROCFS'
            : err.code === 'EACCES'
              ? 'the file is readable by root only: run the ztunnel as root'
              : 'check the file is readable';
          const e = new WeftError('WEFT_ORIGINAL_DST_UNKNOWN', `cannot read ${this.path}: ${err.message}; ${hint}`, { cause: err });
          for (const w of batch) w.reject(e);
        },
      ).catch((err: unknown) => {
        // A bug while parsing must fail these lookups (their connections are reset), not
        // leave them waiting forever or surface as an unhandled rejection. Waiters
        // already settled ignore the second settle.
        const e = new WeftError('WEFT_ORIGINAL_DST_UNKNOWN', `cannot parse ${this.path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
        for (const w of batch) w.reject(e);
      }).finally(() => {
        this.reading = false;
        this.pump();
      });
    });
  }

  private settle(batch: Waiter[], text: string): void {
    const wanted = new Set(batch.map((w) => w.key));
    const found = new Map<string, OriginalDst>();
    const cache = new Map<string, OriginalDst>();
    for (const line of linesWithReplyPort(text, this.localPorts)) {
      const e = parseLine(line);
      if (!e || e.protocol !== 'tcp' || !this.localPorts.has(e.reply.sport)) continue;
      const key = tupleKey(e.reply.dst, e.reply.dport, e.reply.src, e.reply.sport);
      const dst = { ip: e.orig.dst, port: e.orig.dport };
      if (wanted.has(key)) found.set(key, dst);
      else if (!CLOSING.has(e.state ?? '') && cache.size < this.maxCacheEntries) cache.set(key, dst);
    }
    this.cache = cache;
    this.cacheAt = this.now();
    for (const w of batch) {
      const dst = found.get(w.key);
      if (dst) w.resolve(dst);
      else if (!w.retried) this.retryLater(w);
      else {
        this.stats.misses++;
        w.reject(new WeftError('WEFT_ORIGINAL_DST_UNKNOWN',
          `no conntrack entry for ${w.describe} in ${this.path}: the connection did not come through the capture rules, `
          + 'or the resolver reads another network namespace than the listener; check that the ztunnel runs in the node netns '
          + 'and that iptables-save -t nat shows the WEFT chains',
          { details: { connection: w.describe, path: this.path } }));
      }
    }
  }

  private retryLater(w: Waiter): void {
    this.stats.retries++;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.pending.push({ ...w, retried: true });
      this.pump();
    }, this.retryDelayMs);
    this.retryTimers.set(timer, w);
  }
}
