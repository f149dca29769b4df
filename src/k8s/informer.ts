/**
 * Informer: list, then watch from the list's resourceVersion, keeping a local cache
 * keyed by `ns/name` (or `name` for cluster-scoped kinds). A 410 Gone (HTTP status or
 * ERROR event) means our resourceVersion fell out of the server's window: relist and
 * infer deletions from objects missing in the new list. Errors back off exponentially.
 */
import { EventEmitter } from 'node:events';
import { backoffDelay } from '../lib/backoff';
import { silentLogger, type Logger } from '../lib/log';
import { k8sStatus, type KubeClient, type KubeObject } from './client';

export interface InformerEvents<T extends KubeObject> {
  add: [obj: T];
  update: [obj: T, old: T];
  delete: [obj: T];
  /** After each (re)list has been applied to the cache. */
  synced: [];
  /** An optional resource answered 404 (its CRD is not installed); the cache is now empty. */
  absent: [err: unknown];
  /** An optional resource that was absent listed again. */
  present: [];
  error: [err: unknown];
}

export interface InformerOptions {
  labelSelector?: string;
  logger?: Logger;
  /** Backoff bounds for errors; default 200 ms .. 30 s. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Server-side watch timeout; the informer re-watches from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  /**
   * The resource may not exist (a CRD not installed, e.g. Gateway API): a 404 counts as
   * "synced, empty" so that consumers waiting for every informer go on, and the list is
   * retried with backoff until the resource appears.
   */
  optional?: boolean;
}

export function objectKey(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : String(name);
}

class Gone extends Error {}

export class Informer<T extends KubeObject = KubeObject> extends EventEmitter<InformerEvents<T>> {
  private readonly cache = new Map<string, T>();
  private rv = '';
  private abort = new AbortController();
  private running?: Promise<void>;
  private hasSynced = false;
  private isAbsent = false;
  private readonly logger: Logger;
  /** Number of lists made (the first and every relist); exposed for tests and metrics. */
  lists = 0;

  constructor(private readonly client: KubeClient, readonly path: string, private readonly opts: InformerOptions = {}) {
    super();
    this.logger = (opts.logger ?? silentLogger()).child({ informer: path });
  }

  get resourceVersion(): string {
    return this.rv;
  }

  get synced(): boolean {
    return this.hasSynced;
  }

  /** An optional resource the API server does not serve (404), as of the last list. */
  get absent(): boolean {
    return this.isAbsent;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  items(): T[] {
    return [...this.cache.values()];
  }

  start(): void {
    if (this.running) return;
    this.abort = new AbortController();
    this.running = this.loop(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    this.running = undefined;
  }

  /** Resolves once the first list has been applied. */
  waitForSync(): Promise<void> {
    if (this.hasSynced) return Promise.resolve();
    return new Promise((resolve) => this.once('synced', resolve));
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const min = this.opts.minBackoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 30_000;
    let failures = 0;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
        }
        const started = Date.now();
        const events = await this.watchOnce(signal);
        if (events === 0 && Date.now() - started < 1000 && !signal.aborted) {
          // A stream that ends at once with nothing in it, over and over, must not spin.
          throw new Error('watch stream ended immediately without events');
        }
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof Gone || k8sStatus(err) === 410) {
          this.logger.info({ resourceVersion: this.rv }, 'resourceVersion expired (410 Gone); relisting');
          needList = true;
          continue;
        }
        failures++;
        if (this.opts.optional && k8sStatus(err) === 404) {
          // Not an error to shout about each time: the owner logs the absence once.
          needList = true;
          this.markAbsent(err);
          await sleep(backoffDelay(failures, { initialMs: min, maxMs: max, jitter: 'below' }), signal);
          continue;
        }
        // 'below': the cap is a hard bound, and informers that failed together spread out.
        const delay = backoffDelay(failures, { initialMs: min, maxMs: max, jitter: 'below' });
        this.logger.warn({ err: (err as Error).message, retryInMs: delay }, 'list/watch failed; backing off');
        if (this.listenerCount('error') > 0) this.emit('error', err);
        await sleep(delay, signal);
      }
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const { items, resourceVersion } = await this.client.list<T>(this.path, { labelSelector: this.opts.labelSelector, signal });
    this.lists++;
    const seen = new Set<string>();
    for (const obj of items) {
      const key = objectKey(obj);
      seen.add(key);
      this.upsert(key, obj);
    }
    for (const [key, old] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', old);
    }
    this.rv = resourceVersion;
    this.hasSynced = true;
    if (this.isAbsent) {
      this.isAbsent = false;
      this.emit('present');
    }
    this.emit('synced');
  }

  private markAbsent(err: unknown): void {
    for (const [key, old] of [...this.cache]) {
      this.cache.delete(key);
      this.emit('delete', old);
    }
    this.rv = '';
    const first = !this.isAbsent || !this.hasSynced;
    this.isAbsent = true;
    this.hasSynced = true;
    if (first) {
      this.emit('absent', err);
      this.emit('synced');
    }
  }

  private upsert(key: string, obj: T): void {
    const old = this.cache.get(key);
    this.cache.set(key, obj);
    if (!old) this.emit('add', obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion || obj.metadata.resourceVersion === undefined) this.emit('update', obj, old);
  }

  /** Returns how many events (bookmarks included) the stream carried. */
  private async watchOnce(signal: AbortSignal): Promise<number> {
    let count = 0;
    const events = this.client.watch<T>(this.path, this.rv, {
      allowWatchBookmarks: true, labelSelector: this.opts.labelSelector, signal,
      timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300,
    });
    for await (const ev of events) {
      count++;
      const obj = ev.object;
      switch (ev.type) {
        case 'ADDED':
        case 'MODIFIED':
          this.upsert(objectKey(obj), obj);
          break;
        case 'DELETED': {
          const key = objectKey(obj);
          const old = this.cache.get(key);
          this.cache.delete(key);
          this.emit('delete', old ?? obj);
          break;
        }
        case 'BOOKMARK':
          break;
        case 'ERROR': {
          const code = (obj as unknown as { code?: number }).code;
          if (code === 410) throw new Gone('resourceVersion expired');
          throw new Error(`watch error event: ${JSON.stringify(obj).slice(0, 300)}`);
        }
        default:
          continue;
      }
      if (obj.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
    }
    return count;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
