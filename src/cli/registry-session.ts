/**
 * The CLI's connection to the registry. A command must fail in about a second with a
 * clear message when Redis is not there, not hang in ioredis' reconnect loop: so the
 * session first probes with one short, non-retrying connection, and only then opens
 * the RegistryStore (whose own retries are meant for writers that must not give up).
 */
import { WeftError } from '../lib/errors';
import type { RedisConnection } from '../lib/common-options';
import { describeRedis, openRedis } from '../registry/connection';
import { MeshState } from '../registry/state';
import { RegistryStore } from '../registry/store';
import type { CliContext } from './context';
import { ZtunnelRegistryReader } from './ztunnel-registry';

export const REGISTRY_PROBE_TIMEOUT_MS = 1500;

/** A read-only source of the registry for the inspection commands. */
export interface RegistryReader {
  readonly ctx: CliContext;
  /** Where the view comes from, for messages and `weft status`. */
  readonly where: string;
  /** A MeshState from one consistent snapshot: the same view the ztunnels derive. */
  load(): Promise<MeshState>;
  close(): Promise<void>;
}

export class RegistrySession implements RegistryReader {
  private constructor(readonly ctx: CliContext, readonly store: RegistryStore) {}

  get where(): string {
    return describeRedis(redisOf(this.ctx));
  }

  /** Probes Redis, then opens the store. Throws WEFT_REGISTRY_UNREACHABLE fast. */
  static async open(ctx: CliContext, opts: { timeoutMs?: number } = {}): Promise<RegistrySession> {
    await probeRegistry(ctx, opts.timeoutMs ?? REGISTRY_PROBE_TIMEOUT_MS);
    const store = RegistryStore.connect(redisOf(ctx), ctx.registryPrefix ? { prefix: ctx.registryPrefix } : {});
    return new RegistrySession(ctx, store);
  }

  /** A MeshState loaded from one consistent snapshot: the same view the ztunnels derive. */
  async load(): Promise<MeshState> {
    const snap = await this.store.snapshot();
    const state = new MeshState({ trustDomain: this.ctx.trustDomain });
    state.replaceAll(snap.records, snap.revision);
    return state;
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

/**
 * Opens the registry: Redis when the context names it; on a cluster without a
 * reachable Redis, the view a ztunnel holds, read through the API server.
 */
export async function openRegistry(ctx: CliContext): Promise<RegistryReader> {
  if (!ctx.redis && ctx.cluster) return ZtunnelRegistryReader.open(ctx);
  return RegistrySession.open(ctx);
}

/** Runs `fn` with an open registry reader and always closes it. */
export function withRegistry<T>(ctx: CliContext, fn: (s: RegistryReader) => Promise<T>): Promise<T> {
  return withOpen(openRegistry(ctx), fn);
}

/** The same, for writers: Redis itself (the lab, or --redis-url). */
export function withRegistryStore<T>(ctx: CliContext, fn: (s: RegistrySession) => Promise<T>): Promise<T> {
  return withOpen(RegistrySession.open(ctx), fn);
}

async function withOpen<R extends { close(): Promise<void> }, T>(opening: Promise<R>, fn: (r: R) => Promise<T>): Promise<T> {
  const r = await opening;
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** The context's Redis; a context without one (a cluster reached through its API server) cannot open a session. */
export function redisOf(ctx: CliContext): RedisConnection {
  if (!ctx.redis) {
    throw new WeftError('WEFT_CONTEXT_MISSING',
      `context ${ctx.source} names no registry Redis, and this command needs one; pass --redis-url (the registry's Redis, e.g. through kubectl port-forward)`);
  }
  return ctx.redis;
}

export function unreachableError(ctx: CliContext, reason: string, cause?: unknown): WeftError {
  const from = ctx.source === '--redis-url' ? '--redis-url' : `context ${ctx.source}`;
  const hint = ctx.kind === 'lab'
    ? 'is the lab up? (scripts/lab status; scripts/lab up starts it)'
    : 'check the URL and that Redis runs';
  return new WeftError('WEFT_REGISTRY_UNREACHABLE',
    `cannot reach the registry at ${describeRedis(redisOf(ctx))} (from ${from}): ${reason}; ${hint}${ctx.source === '--redis-url' ? '' : ', or pass --redis-url'}`,
    { cause, details: { url: describeRedis(redisOf(ctx)) } });
}

/** One connection, no retries, no offline queue: PING answers within `timeoutMs` or the registry is unreachable. */
export async function probeRegistry(ctx: CliContext, timeoutMs: number): Promise<void> {
  const client = openRedis(redisOf(ctx), {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectionName: 'weft-cli-probe',
    // ioredis otherwise keeps a 2 s timer alive after a failed connect, holding the
    // CLI's exit for nothing.
    disconnectTimeout: 50,
  });
  // ioredis rejects a failed connect with a bare "Connection is closed"; the cause
  // (ECONNREFUSED, ENOTFOUND, NOAUTH...) arrives on the 'error' event.
  let lastError: Error | undefined;
  client.on('error', (err: Error) => { lastError = err; });
  // connectTimeout covers TCP only; a server that accepts but never answers (stopped,
  // wrong service on the port) is caught by this overall deadline.
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs + 200);
  });
  try {
    await Promise.race([client.connect().then(() => client.ping()), deadline]);
  } catch (err) {
    const cause = lastError ?? err;
    throw unreachableError(ctx, cause instanceof Error ? cause.message : String(cause), cause);
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}
