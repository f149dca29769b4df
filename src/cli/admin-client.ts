/**
 * Reads the ztunnel admin API (src/ztunnel/admin-types.ts) of each node. In the lab
 * every ztunnel lives in its own network namespace, so the CLI reaches it through a
 * unix socket the ztunnel also serves the API on; a context may instead give a URL.
 * On a cluster it goes through the API server's pod proxy to the ztunnel's read-only
 * views (--admin-view-address), with the operator's own Kubernetes credentials.
 *
 * A node that does not answer must not hide the others: queryNodes asks all nodes at
 * once, each with its own short deadline, and returns answers and failures side by side.
 */
import * as http from 'node:http';
import { isWeftError } from '../lib/errors';
import { k8sStatus, type KubeClient } from '../k8s/client';
import { boundedGet } from './http-get';
import type { AdminEndpoint, ContextNode, PodProxyTarget } from './context';
import { ADMIN_TOKEN_HEADER, ADMIN_VIEW_REFUSED } from '../ztunnel/admin-types';

export const ADMIN_TIMEOUT_MS = 2000;
/** Admin answers are small JSON documents; anything far bigger is not our API. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Why one node's admin API gave no usable answer; `message` is written for the operator. */
export class AdminUnavailable extends Error {
  constructor(readonly node: string, message: string) {
    super(message);
    this.name = 'AdminUnavailable';
  }
}

export interface AdminRequestOptions {
  timeoutMs?: number;
  /** The API server client, for nodes reached through the pod proxy. */
  kube?: KubeClient;
  /** Bearer token for the ztunnel behind the pod proxy; default the kubeconfig user's. */
  token?: string;
}

/** GETs `path` from one node and parses the JSON body. Rejects with AdminUnavailable. */
export async function adminGet<T>(node: ContextNode, path: string, opts: AdminRequestOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? ADMIN_TIMEOUT_MS;
  if (!node.admin) {
    throw new AdminUnavailable(node.name,
      'the context names no admin endpoint for this node (adminSocket); re-run scripts/lab up with a weft that writes it');
  }
  if ('podProxy' in node.admin) return podProxyGet<T>(node.name, node.admin.podProxy, path, timeoutMs, opts);
  const where = describeEndpoint(node.admin);
  const { status, body } = await boundedGet({
    target: requestTarget(node.admin, path), where, accept: 'application/json', timeoutMs, maxBytes: MAX_BODY_BYTES,
    connectFailure: (err) => connectFailure(err, where),
  }).catch((err: Error) => {
    throw new AdminUnavailable(node.name, err.message);
  });
  if (status !== 200) {
    throw new AdminUnavailable(node.name, `admin API at ${where} answered HTTP ${status} to GET ${path}${body ? `: ${body.slice(0, 200).trim()}` : ''}`);
  }
  try {
    return JSON.parse(body) as T;
  } catch {
    throw new AdminUnavailable(node.name, `admin API at ${where} sent invalid JSON for GET ${path}`);
  }
}

export interface NodeAnswer<T> {
  node: string;
  data: T;
}

export interface NodeFailure {
  node: string;
  error: string;
}

export interface NodesResult<T> {
  answers: NodeAnswer<T>[];
  failures: NodeFailure[];
}

/**
 * Asks every node at once. `check` validates the answer's shape and returns an error
 * sentence when it is not what admin-types.ts promises.
 */
export async function queryNodes<T>(
  nodes: readonly ContextNode[], path: string,
  check: (data: unknown) => string | undefined = () => undefined, opts: AdminRequestOptions = {},
): Promise<NodesResult<T>> {
  const settled = await Promise.all(nodes.map(async (node) => {
    try {
      const data = await adminGet<unknown>(node, path, opts);
      const problem = check(data);
      if (problem) return { node: node.name, error: `unexpected answer to GET ${path}: ${problem}` };
      return { node: node.name, data: data as T };
    } catch (err) {
      return { node: node.name, error: err instanceof Error ? err.message : String(err) };
    }
  }));
  const answers: NodeAnswer<T>[] = [];
  const failures: NodeFailure[] = [];
  for (const s of settled) {
    if ('data' in s) answers.push(s as NodeAnswer<T>);
    else failures.push(s);
  }
  return { answers, failures };
}

/** The warning line for a node that gave no answer. */
export function failureWarning(f: NodeFailure): string {
  return `${f.node}: not answering (${f.error})`;
}

/** A shape check for `{ <field>: [...] }` answers. */
export function hasArray(field: string): (data: unknown) => string | undefined {
  return (data) => {
    if (typeof data !== 'object' || data === null) return 'not a JSON object';
    return Array.isArray((data as Record<string, unknown>)[field]) ? undefined : `no "${field}" list`;
  };
}

/** The pods/proxy subresource path of one admin view. */
export function podProxyPath(target: PodProxyTarget, path: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(target.namespace)}/pods/${encodeURIComponent(target.pod)}:${target.port}/proxy${path}`;
}

async function podProxyGet<T>(node: string, target: PodProxyTarget, path: string, timeoutMs: number, opts: AdminRequestOptions): Promise<T> {
  const { kube } = opts;
  if (target.unavailable) throw new AdminUnavailable(node, target.unavailable);
  if (!kube) throw new AdminUnavailable(node, 'no Kubernetes API client to reach the pod proxy with (a bug: report it)');
  const where = `pod ${target.namespace}/${target.pod} port ${target.port} (through the API server)`;
  // The API server strips our Authorization header before relaying; the ztunnel checks
  // this copy with a TokenReview and a SubjectAccessReview (src/ztunnel/admin-auth.ts).
  const token = opts.token || kube.bearerToken();
  if (!token) {
    throw new AdminUnavailable(node, 'the ztunnel admin views need a Kubernetes bearer token, and your kubeconfig user has none (client certificates?); '
      + 'pass --admin-token-file with the token of an identity bound to the weft-operator Role, e.g. from kubectl -n weft-system create token <serviceaccount> > FILE (or set WEFT_ADMIN_TOKEN to it)');
  }
  try {
    return await kube.get(podProxyPath(target, path), { timeoutMs, headers: { [ADMIN_TOKEN_HEADER]: `Bearer ${token}` } }) as unknown as T;
  } catch (err) {
    const status = k8sStatus(err);
    const msg = isWeftError(err) ? err.message : String(err);
    const reason = isWeftError(err) ? err.details?.reason : undefined;
    if (reason === ADMIN_VIEW_REFUSED) {
      const said = isWeftError(err) && typeof err.details?.message === 'string' ? err.details.message : msg;
      throw new AdminUnavailable(node, `the ztunnel of ${where} refused (HTTP ${status}): ${said}`);
    }
    if (status === 401 || status === 403) {
      throw new AdminUnavailable(node, `the API server refused GET pods/proxy for ${where} (HTTP ${status}); bind the weft-operator Role in weft-system (daemonset/rbac.yaml) to your user`);
    }
    if (status === 503 || status === 502) {
      throw new AdminUnavailable(node, `the API server could not reach ${where}: ${msg}; is the ztunnel running with WEFT_ADMIN_VIEW_ADDRESS set (daemonset/ztunnel.yaml)?`);
    }
    if (status === 404) throw new AdminUnavailable(node, `${where}: not found (${msg}); the pod may have been replaced, run the command again`);
    throw new AdminUnavailable(node, msg);
  }
}

function requestTarget(admin: Exclude<AdminEndpoint, { podProxy: PodProxyTarget }>, path: string): http.RequestOptions {
  if ('socketPath' in admin) return { socketPath: admin.socketPath, path, host: 'localhost' };
  const u = new URL(path, admin.baseUrl.endsWith('/') ? admin.baseUrl : admin.baseUrl + '/');
  return { host: u.hostname, port: u.port || 80, path: u.pathname + u.search };
}

function describeEndpoint(admin: Exclude<AdminEndpoint, { podProxy: PodProxyTarget }>): string {
  return 'socketPath' in admin ? admin.socketPath : admin.baseUrl;
}

/** Connection errors in words that point at the likely cause. */
function connectFailure(err: NodeJS.ErrnoException, where: string): string {
  switch (err.code) {
    case 'ENOENT': return `no admin socket at ${where}; is the ztunnel on this node running?`;
    case 'ECONNREFUSED': return `nothing listens on ${where}; the ztunnel may have exited`;
    case 'EACCES': return `permission denied opening ${where}; run as the user that started the lab`;
    default: return `${where}: ${err.message}`;
  }
}
