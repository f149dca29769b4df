/**
 * A Kubernetes API server stand-in for tests: real HTTP(S), real paths, real JSON
 * shapes, a monotonically increasing resourceVersion, list + watch (chunked
 * newline-delimited events, replay from a resourceVersion, bookmarks, 410 Gone once
 * the history is compacted), PUT with resourceVersion preconditions (409), POST (409
 * AlreadyExists), merge PATCH on objects and on the status subresource, DELETE.
 * Not a fake of a library: the controller talks to it over the wire like to kube-apiserver.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

const GATEWAY_API = 'gateway.networking.k8s.io';

type Obj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [k: string]: any };

/** `id`: the name tests use for it (put/get/list), the plural unless two groups share one. */
interface ResourceType { group: string; version: string; plural: string; kind: string; namespaced: boolean; id?: string }

const ISTIO_SECURITY = 'security.istio.io';

const TYPES: ResourceType[] = [
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { group: 'security.weft.io', version: 'v1alpha1', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true },
  { group: 'networking.weft.io', version: 'v1alpha1', plural: 'trafficpolicies', kind: 'TrafficPolicy', namespaced: true },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  // Gateway API: CRDs in a real cluster, so they may be missing (setGatewayAPIInstalled).
  { group: GATEWAY_API, version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true },
  { group: GATEWAY_API, version: 'v1', plural: 'grpcroutes', kind: 'GRPCRoute', namespaced: true },
  { group: GATEWAY_API, version: 'v1', plural: 'gateways', kind: 'Gateway', namespaced: true },
  { group: GATEWAY_API, version: 'v1', plural: 'gatewayclasses', kind: 'GatewayClass', namespaced: false },
  // Istio's security API: CRDs too (setGroupInstalled).
  { group: ISTIO_SECURITY, version: 'v1', plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true },
  { group: ISTIO_SECURITY, version: 'v1', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true, id: 'authorizationpolicies.security.istio.io' },
];

interface Watcher {
  type: ResourceType;
  namespace?: string;
  res: http.ServerResponse;
  bookmarks: boolean;
}

interface HistoryEntry { rv: number; type: ResourceType; event: 'ADDED' | 'MODIFIED' | 'DELETED'; object: Obj }

export interface ApiServerOptions {
  /** HTTPS with this key/cert; plain HTTP when absent. */
  tls?: { key: string; cert: string };
  /** Require `Authorization: Bearer <token>` (401 otherwise). */
  token?: string;
  /** Address to listen on; default 127.0.0.1 (the lab e2e uses its bridge address). */
  host?: string;
  /** How a too-old resourceVersion is refused: HTTP 410 or an ERROR event (both happen in real clusters). */
  goneAs?: 'status' | 'event';
}

export interface RequestLogEntry { method: string; path: string; query: Record<string, string> }

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export class TestApiServer {
  private server!: http.Server;
  private rv = 1;
  private compactedRv = 0;
  private readonly store = new Map<string, Map<string, Obj>>();
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private watchesPaused = false;
  /** API groups whose CRDs are "not installed": every path in them answers 404, as kube-apiserver does. */
  private readonly missingGroups = new Set<string>();
  /** Every request, for assertions on what the client sent. */
  readonly requests: RequestLogEntry[] = [];
  /**
   * Extra endpoints a test adds (e.g. TokenReview): each is asked first and returns true
   * when it answered. The request body is not read yet.
   */
  readonly extraRoutes: ((req: http.IncomingMessage, res: http.ServerResponse, url: URL) => boolean)[] = [];
  /** Answer this many next requests matching the predicate with 500 (error injection). */
  failNext?: { count: number; match: (method: string, path: string) => boolean; status?: number };
  url = '';

  constructor(private readonly opts: ApiServerOptions = {}) {
    for (const t of TYPES) this.store.set(idOf(t), new Map());
  }

  static async start(opts: ApiServerOptions = {}): Promise<TestApiServer> {
    const s = new TestApiServer(opts);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => s.handle(req, res);
    s.server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve) => s.server.listen(0, host, resolve));
    const { port } = s.server.address() as AddressInfo;
    s.url = `${opts.tls ? 'https' : 'http'}://${host}:${port}`;
    return s;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Installs or removes the Gateway API CRDs. Removing ends the open watches of its
   * resources and makes every request to them 404 (the objects are kept, as if the
   * CRDs came back with them); installing serves them again.
   */
  setGatewayAPIInstalled(installed: boolean): void {
    this.setGroupInstalled(GATEWAY_API, installed);
  }

  /** The same for any API group served by CRDs (e.g. security.istio.io). */
  setGroupInstalled(group: string, installed: boolean): void {
    if (installed) {
      this.missingGroups.delete(group);
      return;
    }
    this.missingGroups.add(group);
    for (const w of [...this.watchers]) {
      if (w.type.group !== group) continue;
      w.res.end();
      this.watchers.delete(w);
    }
  }

  get resourceVersion(): number {
    return this.rv;
  }

  // ---- test-side mutations -------------------------------------------------------

  /** Creates or replaces an object; returns the stored copy (with resourceVersion). */
  put(plural: string, obj: Obj): Obj {
    const t = this.type(plural);
    const key = this.key(t, obj.metadata.namespace, obj.metadata.name);
    const existing = this.store.get(idOf(t))!.get(key);
    return this.write(t, obj, existing ? 'MODIFIED' : 'ADDED', existing);
  }

  /** Applies `fn` to a copy of the stored object and stores the result as MODIFIED. */
  modify(plural: string, namespace: string | undefined, name: string, fn: (o: Obj) => void): Obj {
    const t = this.type(plural);
    const existing = this.store.get(idOf(t))!.get(this.key(t, namespace, name));
    if (!existing) throw new Error(`no ${plural} ${namespace ?? ''}/${name}`);
    const copy = structuredClone(existing);
    fn(copy);
    return this.write(t, copy, 'MODIFIED', existing);
  }

  remove(plural: string, namespace: string | undefined, name: string): void {
    const t = this.type(plural);
    const key = this.key(t, namespace, name);
    const existing = this.store.get(idOf(t))!.get(key);
    if (!existing) throw new Error(`no ${plural} ${namespace ?? ''}/${name}`);
    this.store.get(idOf(t))!.delete(key);
    const rv = ++this.rv;
    const object = { ...structuredClone(existing), metadata: { ...existing.metadata, resourceVersion: String(rv) } };
    this.record({ rv, type: t, event: 'DELETED', object });
  }

  get(plural: string, namespace: string | undefined, name: string): Obj | undefined {
    const t = this.type(plural);
    const o = this.store.get(idOf(t))!.get(this.key(t, namespace, name));
    return o && structuredClone(o);
  }

  list(plural: string): Obj[] {
    return [...this.store.get(idOf(this.type(plural)))!.values()].map((o) => structuredClone(o));
  }

  /** Sends a BOOKMARK carrying the current resourceVersion to every watcher that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      this.send(w, { type: 'BOOKMARK', object: { kind: w.type.kind, apiVersion: apiVersion(w.type), metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Stops delivering events to open watches (as if the network dropped them silently). */
  pauseWatches(): void {
    this.watchesPaused = true;
  }

  /**
   * Forgets all history up to now and closes every watch: a client resuming from an
   * older resourceVersion gets 410 Gone and must relist.
   */
  compact(): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
    this.closeWatches();
  }

  /** Ends every open watch stream (clients re-watch from their last resourceVersion). */
  closeWatches(): void {
    this.watchesPaused = false;
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  watcherCount(plural?: string): number {
    return [...this.watchers].filter((w) => plural === undefined || idOf(w.type) === plural).length;
  }

  // ---- internals -----------------------------------------------------------------

  private type(plural: string): ResourceType {
    const t = TYPES.find((x) => idOf(x) === plural);
    if (!t) throw new Error(`unknown resource ${plural}`);
    return t;
  }

  private key(t: ResourceType, namespace: string | undefined, name: string): string {
    return t.namespaced ? `${namespace}/${name}` : name;
  }

  private write(t: ResourceType, obj: Obj, event: 'ADDED' | 'MODIFIED', existing?: Obj): Obj {
    const rv = ++this.rv;
    const stored: Obj = structuredClone(obj);
    stored.apiVersion = apiVersion(t);
    stored.kind = t.kind;
    stored.metadata = {
      ...stored.metadata,
      uid: existing?.metadata.uid ?? stored.metadata.uid ?? randomUUID(),
      creationTimestamp: existing?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      resourceVersion: String(rv),
      generation: existing ? (JSON.stringify(existing.spec) === JSON.stringify(stored.spec) ? existing.metadata.generation : existing.metadata.generation + 1) : 1,
    };
    if (!t.namespaced) delete stored.metadata.namespace;
    // The API server allocates a Service's cluster IP when none is given.
    if (t.plural === 'services' && stored.spec && !stored.spec.clusterIP) {
      stored.spec.clusterIP = `10.96.${(rv >> 8) & 255}.${rv & 255}`;
      stored.spec.clusterIPs = [stored.spec.clusterIP];
    }
    this.store.get(idOf(t))!.set(this.key(t, stored.metadata.namespace, stored.metadata.name), stored);
    this.record({ rv, type: t, event, object: structuredClone(stored) });
    return structuredClone(stored);
  }

  private record(h: HistoryEntry): void {
    this.history.push(h);
    if (this.watchesPaused) return;
    for (const w of this.watchers) {
      if (w.type !== h.type) continue;
      if (w.namespace && h.object.metadata.namespace !== w.namespace) continue;
      this.send(w, { type: h.event, object: h.object });
    }
  }

  private send(w: Watcher, ev: unknown): void {
    w.res.write(JSON.stringify(ev) + '\n');
  }

  private status(res: http.ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private json(res: http.ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private parsePath(pathname: string): { t: ResourceType; namespace?: string; name?: string; sub?: string } | undefined {
    const seg = pathname.split('/').filter(Boolean);
    let group = '';
    let version: string;
    let rest: string[];
    if (seg[0] === 'api') {
      version = seg[1]!;
      rest = seg.slice(2);
    } else if (seg[0] === 'apis') {
      group = seg[1]!;
      version = seg[2]!;
      rest = seg.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const t = TYPES.find((x) => x.group === group && x.version === version && x.plural === rest[0]);
    if (!t || this.missingGroups.has(t.group)) return undefined;
    return { t, namespace, name: rest[1], sub: rest[2] };
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? 'GET';
    this.requests.push({ method, path: url.pathname, query });
    if (this.opts.token && req.headers.authorization !== `Bearer ${this.opts.token}`) {
      return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    }
    if (this.failNext && this.failNext.count > 0 && this.failNext.match(method, url.pathname)) {
      this.failNext.count--;
      return this.status(res, this.failNext.status ?? 500, 'InternalError', 'injected failure');
    }
    for (const route of this.extraRoutes) if (route(req, res, url)) return;
    const proxy = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/:]+)(?::(\d+))?\/proxy(\/.*)?$/.exec(url.pathname);
    if (proxy) return this.podProxy(proxy[1]!, proxy[2]!, Number(proxy[3] ?? 80), (proxy[4] ?? '/') + url.search, req, res);
    const p = this.parsePath(url.pathname);
    if (!p) return this.status(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: any;
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      } catch {
        return this.status(res, 400, 'BadRequest', 'body is not JSON');
      }
      this.route(method, p, query, body, req, res);
    });
  }

  private route(method: string, p: NonNullable<ReturnType<TestApiServer['parsePath']>>, query: Record<string, string>, body: any,
    req: http.IncomingMessage, res: http.ServerResponse): void {
    const { t, namespace, name, sub } = p;
    const objects = this.store.get(idOf(t))!;
    const notFound = () => this.status(res, 404, 'NotFound', `${t.plural} "${name}" not found`);
    if (method === 'GET' && name === undefined) {
      if (query.watch === '1' || query.watch === 'true') return this.watch(t, namespace, query, req, res);
      const selector = parseSelector(query.labelSelector);
      const items = [...objects.values()]
        .filter((o) => !namespace || o.metadata.namespace === namespace)
        .filter((o) => selector.every(([k, v]) => o.metadata.labels?.[k] === v));
      return this.json(res, 200, { kind: `${t.kind}List`, apiVersion: apiVersion(t), metadata: { resourceVersion: String(this.rv) }, items });
    }
    if (name === undefined) {
      if (method !== 'POST') return this.status(res, 405, 'MethodNotAllowed', 'method not allowed');
      const key = this.key(t, namespace, body?.metadata?.name);
      if (objects.has(key)) return this.status(res, 409, 'AlreadyExists', `${t.plural} "${body.metadata.name}" already exists`);
      const created = this.write(t, { ...body, metadata: { ...body.metadata, namespace } }, 'ADDED');
      return this.json(res, 201, created);
    }
    const key = this.key(t, namespace, name);
    const existing = objects.get(key);
    switch (method) {
      case 'GET':
        return existing ? this.json(res, 200, existing) : notFound();
      case 'PUT': {
        if (!existing) return notFound();
        const want = body?.metadata?.resourceVersion;
        if (want !== undefined && want !== existing.metadata.resourceVersion) {
          return this.status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${t.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        const next = sub === 'status' ? { ...existing, status: body.status } : { ...body, status: body.status ?? existing.status };
        return this.json(res, 200, this.write(t, next, 'MODIFIED', existing));
      }
      case 'PATCH': {
        const ct = String(req.headers['content-type'] ?? '');
        if (ct === 'application/apply-patch+yaml') return this.apply(t, namespace, name, query, body, existing, res);
        if (!existing) return notFound();
        if (ct !== 'application/merge-patch+json' && ct !== 'application/strategic-merge-patch+json') {
          return this.status(res, 415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got ${ct})`);
        }
        const patch = sub === 'status' ? { status: body?.status } : body;
        const merged = mergePatch(structuredClone(existing), patch) as Obj;
        if (sub === 'status') merged.spec = existing.spec;
        return this.json(res, 200, this.write(t, merged, 'MODIFIED', existing));
      }
      case 'DELETE':
        if (!existing) return notFound();
        this.remove(idOf(t), namespace, name);
        return this.json(res, 200, existing);
      default:
        return this.status(res, 405, 'MethodNotAllowed', 'method not allowed');
    }
  }

  /**
   * Server-side apply, simplified: creates the object when absent; otherwise the applied
   * fields are merged over the stored object (a real server also removes fields the
   * same manager applied before and no longer does; Weft always applies whole objects).
   * Requires fieldManager, as kube-apiserver does; records it per object for assertions.
   */
  private apply(t: ResourceType, namespace: string | undefined, name: string, query: Record<string, string>, body: any,
    existing: Obj | undefined, res: http.ServerResponse): void {
    if (!query.fieldManager) return this.status(res, 400, 'BadRequest', 'PATCH with apply requires fieldManager');
    if (body?.metadata?.name !== name) return this.status(res, 400, 'BadRequest', `metadata.name ${JSON.stringify(body?.metadata?.name)} does not match the path (${name})`);
    if (body?.kind !== t.kind || body?.apiVersion !== apiVersion(t)) return this.status(res, 400, 'BadRequest', `apply needs apiVersion ${apiVersion(t)} and kind ${t.kind}`);
    const managed = { 'weft.test/field-manager': query.fieldManager };
    if (!existing) {
      const created = this.write(t, { ...body, metadata: { ...body.metadata, namespace, annotations: { ...body.metadata.annotations, ...managed } } }, 'ADDED');
      return this.json(res, 201, created);
    }
    const merged = mergePatch(structuredClone(existing), body) as Obj;
    merged.metadata.annotations = { ...merged.metadata.annotations, ...managed };
    if (t.plural === 'services' && existing.spec?.clusterIP) merged.spec.clusterIP = existing.spec.clusterIP;
    return this.json(res, 200, this.write(t, merged, 'MODIFIED', existing));
  }

  /**
   * The pods/proxy subresource as kube-apiserver does it: an HTTP request to the pod's
   * status.podIP on the port named in the path, the answer relayed as is; a pod without
   * an IP or one that does not answer gives 503, like the real one.
   */
  private podProxy(namespace: string, name: string, port: number, path: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const pod = this.store.get('pods')!.get(`${namespace}/${name}`);
    if (!pod) return this.status(res, 404, 'NotFound', `pods "${name}" not found`);
    const ip = pod.status?.podIP as string | undefined;
    if (!ip) return this.status(res, 503, 'ServiceUnavailable', `pod ${name} has no IP`);
    // Like kube-apiserver: the caller's headers are relayed, except Authorization (its
    // authentication filter removes it once the request is authenticated) and the
    // hop-by-hop ones; the pod's status and headers come back as they are.
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !HOP_BY_HOP.has(k) && k !== 'authorization' && k !== 'host'));
    const upstream = http.request({ host: ip, port, path, method: req.method, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, Object.fromEntries(Object.entries(up.headers).filter(([k]) => !HOP_BY_HOP.has(k))));
      up.pipe(res);
    });
    upstream.setTimeout(5000, () => upstream.destroy(new Error('timeout')));
    upstream.on('error', (err) => {
      if (!res.headersSent) this.status(res, 503, 'ServiceUnavailable', `error trying to reach service: ${err.message}`);
      else res.destroy();
    });
    req.pipe(upstream);
  }

  private watch(t: ResourceType, namespace: string | undefined, query: Record<string, string>, req: http.IncomingMessage, res: http.ServerResponse): void {
    const from = Number(query.resourceVersion ?? '0');
    const tooOld = from !== 0 && from < this.compactedRv;
    if (tooOld && this.opts.goneAs !== 'event') {
      return this.status(res, 410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`);
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { type: t, namespace, res, bookmarks: query.allowWatchBookmarks === 'true' };
    if (tooOld) {
      this.send(w, { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.compactedRv})`, reason: 'Expired', code: 410 } });
      res.end();
      return;
    }
    for (const h of this.history) {
      if (h.rv <= from || h.type !== t) continue;
      if (namespace && h.object.metadata.namespace !== namespace) continue;
      this.send(w, { type: h.event, object: h.object });
    }
    this.watchers.add(w);
    const timeout = Number(query.timeoutSeconds ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = () => {
      clearTimeout(timer);
      this.watchers.delete(w);
    };
    res.on('close', done);
  }
}

function apiVersion(t: ResourceType): string {
  return t.group ? `${t.group}/${t.version}` : t.version;
}

function parseSelector(s: string | undefined): [string, string][] {
  if (!s) return [];
  return s.split(',').map((part) => {
    const [k, v] = part.split('=');
    return [k!.trim(), (v ?? '').trim()];
  });
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

// ---- builders of real Kubernetes object shapes -------------------------------------

export function nodeObj(name: string, ip: string, podCIDR?: string): Obj {
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name } },
    spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {},
    status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

export function namespaceObj(name: string, labels: Record<string, string> = {}): Obj {
  return { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
}

export function podObj(namespace: string, name: string, o: {
  node: string; ip?: string; labels?: Record<string, string>; ready?: boolean; phase?: string; sa?: string;
  ports?: { name?: string; containerPort: number }[]; hostNetwork?: boolean; uid?: string;
}): Obj {
  const ready = o.ready ?? true;
  return {
    metadata: { name, namespace, labels: o.labels ?? {}, ...(o.uid ? { uid: o.uid } : {}) },
    spec: {
      nodeName: o.node,
      serviceAccountName: o.sa,
      hostNetwork: o.hostNetwork,
      containers: [{ name: 'app', image: 'example/app:1', ports: (o.ports ?? []).map((p) => ({ ...p, protocol: 'TCP' })) }],
    },
    status: {
      phase: o.phase ?? 'Running',
      hostIP: '10.0.0.1',
      ...(o.ip ? { podIP: o.ip, podIPs: [{ ip: o.ip }] } : {}),
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Ready', status: ready ? 'True' : 'False' },
        { type: 'ContainersReady', status: ready ? 'True' : 'False' },
      ],
    },
  };
}

export function serviceObj(namespace: string, name: string, o: {
  clusterIP: string; selector?: Record<string, string>; labels?: Record<string, string>;
  ports: { name?: string; port: number; targetPort?: number | string; protocol?: string }[];
}): Obj {
  return {
    metadata: { name, namespace, labels: o.labels ?? {} },
    spec: {
      type: 'ClusterIP', clusterIP: o.clusterIP, clusterIPs: [o.clusterIP], selector: o.selector,
      ports: o.ports.map((p) => ({ protocol: 'TCP', ...p })), ipFamilies: ['IPv4'],
    },
    status: { loadBalancer: {} },
  };
}

export function endpointSliceObj(namespace: string, name: string, service: string, endpoints: { ip: string; pod: Obj; ready: boolean }[]): Obj {
  return {
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.ready, terminating: false },
      nodeName: e.pod.spec.nodeName,
      targetRef: { kind: 'Pod', namespace, name: e.pod.metadata.name, uid: e.pod.metadata.uid },
    })),
    ports: [],
  };
}

export function authzPolicyObj(namespace: string, name: string, spec: Record<string, unknown>): Obj {
  return { metadata: { name, namespace }, spec };
}

export function httpRouteObj(namespace: string, name: string, spec: Record<string, unknown>): Obj {
  return { metadata: { name, namespace }, spec };
}

export function gatewayObj(namespace: string, name: string, o: { className?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {}): Obj {
  return {
    metadata: { name, namespace, labels: o.labels ?? {}, annotations: o.annotations ?? {} },
    spec: { gatewayClassName: o.className ?? 'weft-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

function idOf(t: ResourceType): string {
  return t.id ?? t.plural;
}
