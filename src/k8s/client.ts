/**
 * A small Kubernetes API client over node:http(s): list, watch (newline-delimited JSON
 * events as an async iterator), get, create, update, patch. Paths are API paths, e.g.
 * `/api/v1/pods` or `/apis/coordination.k8s.io/v1/namespaces/x/leases/y`; see paths.ts.
 */
import http from 'node:http';
import https from 'node:https';
import { WeftError, isWeftError } from '../lib/errors';
import { readFileIfAny } from '../lib/files';
import type { ClusterConfig } from './kubeconfig';

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  deletionTimestamp?: string;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface ListResult<T extends KubeObject = KubeObject> {
  items: T[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
export interface WatchEvent<T extends KubeObject = KubeObject> {
  type: WatchEventType;
  /** For ERROR, a metav1.Status ({code, reason, message}). */
  object: T;
}

export type PatchType = 'merge' | 'strategic' | 'json' | 'apply';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
  // Server-side apply; JSON is YAML, so the body stays JSON.
  apply: 'application/apply-patch+yaml',
};

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  /** Whole-request timeout for non-watch calls; default 30 s. */
  timeoutMs?: number;
  /** Extra request headers (e.g. the ztunnel admin token through the pod proxy). */
  headers?: Record<string, string>;
}

/** The HTTP status of a failed API call (0 when the server was not reached). */
export function k8sStatus(err: unknown): number {
  if (isWeftError(err) && typeof err.details?.status === 'number') return err.details.status;
  return 0;
}

export class KubeClient {
  readonly server: string;
  private readonly agent: http.Agent;
  private readonly isHttps: boolean;

  constructor(private readonly config: ClusterConfig) {
    this.server = config.server.replace(/\/+$/, '');
    this.isHttps = this.server.startsWith('https:');
    this.agent = this.isHttps
      ? new https.Agent({
        keepAlive: true,
        ...(config.ca ? { ca: config.ca } : {}),
        ...(config.cert ? { cert: config.cert, key: config.key } : {}),
        rejectUnauthorized: !config.insecureSkipTlsVerify,
      })
      : new http.Agent({ keepAlive: true });
  }

  async list<T extends KubeObject = KubeObject>(path: string, opts: RequestOptions & { labelSelector?: string; resourceVersion?: string } = {}): Promise<ListResult<T>> {
    const body = await this.json<{ items?: T[]; metadata?: { resourceVersion?: string } }>('GET', path, undefined, {
      ...opts, query: { ...opts.query, labelSelector: opts.labelSelector, resourceVersion: opts.resourceVersion },
    });
    return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? '' };
  }

  get<T extends KubeObject = KubeObject>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.json<T>('GET', path, undefined, opts);
  }

  create<T extends KubeObject = KubeObject>(path: string, obj: KubeObject, opts: RequestOptions = {}): Promise<T> {
    return this.json<T>('POST', path, obj, opts);
  }

  /** PUT; the object's metadata.resourceVersion makes it a compare-and-swap (409 on conflict). */
  update<T extends KubeObject = KubeObject>(path: string, obj: KubeObject, opts: RequestOptions = {}): Promise<T> {
    return this.json<T>('PUT', path, obj, opts);
  }

  patch<T extends KubeObject = KubeObject>(path: string, patch: unknown, type: PatchType = 'merge', opts: RequestOptions = {}): Promise<T> {
    return this.json<T>('PATCH', path, patch, opts, PATCH_CONTENT_TYPES[type]);
  }

  /**
   * Server-side apply of a whole object (creates it when absent): the fields `fieldManager`
   * sets are its own, and `force` takes over fields another manager set, so the
   * object converges on what the caller declares in one idempotent request.
   */
  apply<T extends KubeObject = KubeObject>(path: string, obj: KubeObject, fieldManager: string, opts: RequestOptions = {}): Promise<T> {
    return this.patch<T>(path, obj, 'apply', { ...opts, query: { ...opts.query, fieldManager, force: true } });
  }

  delete(path: string, opts: RequestOptions = {}): Promise<unknown> {
    return this.json('DELETE', path, undefined, opts);
  }

  /**
   * Watches from resourceVersion; yields events until the server ends the stream, the
   * signal aborts (then it just returns) or the connection fails (throws). A 410 Gone
   * arrives either as an HTTP status (thrown, status 410) or as an ERROR event.
   */
  async *watch<T extends KubeObject = KubeObject>(path: string, resourceVersion: string,
    opts: { allowWatchBookmarks?: boolean; labelSelector?: string; timeoutSeconds?: number; signal?: AbortSignal } = {}): AsyncGenerator<WatchEvent<T>> {
    let res: http.IncomingMessage;
    try {
      res = await this.send('GET', path, undefined, {
        signal: opts.signal,
        // A dead peer sends no FIN: no data for longer than the server-side timeout means
        // the stream is broken, and the caller re-watches.
        timeoutMs: opts.timeoutSeconds ? (opts.timeoutSeconds + 30) * 1000 : 0,
        query: {
          watch: 1, resourceVersion, allowWatchBookmarks: opts.allowWatchBookmarks ? 'true' : undefined,
          labelSelector: opts.labelSelector, timeoutSeconds: opts.timeoutSeconds,
        },
      });
    } catch (err) {
      if (opts.signal?.aborted) return;
      throw err;
    }
    if ((res.statusCode ?? 0) >= 300) throw await this.failure('GET', path, res);
    res.setEncoding('utf8');
    let buf = '';
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line === '') continue;
          let ev: WatchEvent<T>;
          try {
            ev = JSON.parse(line) as WatchEvent<T>;
          } catch {
            throw new WeftError('WEFT_K8S_REQUEST_FAILED', `watch ${path}: the API server sent a line that is not JSON; check that --kubeconfig points at an API server`);
          }
          yield ev;
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      if (isWeftError(err)) throw err;
      throw this.unreachable('GET', path, err);
    } finally {
      res.destroy();
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private async json<T>(method: string, path: string, body: unknown, opts: RequestOptions, contentType = 'application/json'): Promise<T> {
    const res = await this.send(method, path, body, opts, contentType);
    const text = await readBody(res).catch((err: unknown) => {
      throw this.unreachable(method, path, err);
    });
    if ((res.statusCode ?? 0) >= 300) throw this.statusError(method, path, res.statusCode ?? 0, text);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new WeftError('WEFT_K8S_REQUEST_FAILED', `${method} ${path}: the answer is not JSON; check that the server is a Kubernetes API server`,
        { details: { status: res.statusCode } });
    }
  }

  private send(method: string, path: string, body: unknown, opts: RequestOptions, contentType = 'application/json'): Promise<http.IncomingMessage> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { ...opts.headers, accept: 'application/json' };
    const token = this.token();
    if (token) headers.authorization = `Bearer ${token}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) {
      headers['content-type'] = contentType;
      headers['content-length'] = String(payload.length);
    }
    const mod = this.isHttps ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method, headers, agent: this.agent, signal: opts.signal }, resolve);
      const timeout = opts.timeoutMs ?? 30_000;
      if (timeout > 0) req.setTimeout(timeout, () => req.destroy(new Error(`no answer within ${timeout} ms`)));
      req.on('error', (err) => reject(this.unreachable(method, path, err)));
      req.end(payload);
    });
  }

  /** The bearer token this client sends (undefined for client-certificate users). */
  bearerToken(): string | undefined {
    return this.token();
  }

  private token(): string | undefined {
    if (this.config.tokenFile) return readFileIfAny(this.config.tokenFile)?.trim() ?? this.config.token;
    return this.config.token;
  }

  private async failure(method: string, path: string, res: http.IncomingMessage): Promise<WeftError> {
    const text = await readBody(res).catch(() => '');
    return this.statusError(method, path, res.statusCode ?? 0, text);
  }

  private statusError(method: string, path: string, status: number, text: string): WeftError {
    let reason = '';
    let message = text.slice(0, 300);
    try {
      const s = JSON.parse(text) as { reason?: string; message?: string };
      reason = s.reason ?? '';
      message = s.message ?? message;
    } catch { /* not a Status object */ }
    const details = { status, reason, method, path, message };
    if (status === 401 || status === 403) {
      return new WeftError('WEFT_K8S_FORBIDDEN',
        `${method} ${path}: ${status} ${reason || 'Forbidden'}: ${message}; grant the service account this verb on this resource (see docs/controller.md RBAC) or check the kubeconfig credentials`,
        { details });
    }
    return new WeftError('WEFT_K8S_REQUEST_FAILED', `${method} ${path}: ${status} ${reason}: ${message}`, { details });
  }

  private unreachable(method: string, path: string, err: unknown): WeftError {
    const msg = err instanceof Error ? err.message : String(err);
    return new WeftError('WEFT_K8S_UNREACHABLE',
      `${method} ${this.server}${path} failed: ${msg}; check that the API server is reachable and its certificate trusted (--kubeconfig, or the in-cluster service account CA)`,
      { cause: err, details: { status: 0, method, path } });
  }
}

function readBody(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
  });
}
