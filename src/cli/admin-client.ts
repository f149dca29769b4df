/**
 * Reads the ztunnel admin API (src/ztunnel/admin-types.ts) of each node. In the lab
 * every ztunnel lives in its own network namespace, so the CLI reaches it through a
 * unix socket the ztunnel also serves the API on; a context may instead give a URL.
 *
 * A node that does not answer must not hide the others: queryNodes asks all nodes at
 * once, each with its own short deadline, and returns answers and failures side by side.
 */
import * as http from 'node:http';
import { VERSION } from '../lib/version';
import type { AdminEndpoint, ContextNode } from './context';

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
}

/** GETs `path` from one node and parses the JSON body. Rejects with AdminUnavailable. */
export function adminGet<T>(node: ContextNode, path: string, opts: AdminRequestOptions = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? ADMIN_TIMEOUT_MS;
  if (!node.admin) {
    return Promise.reject(new AdminUnavailable(node.name,
      'the context names no admin endpoint for this node (adminSocket); re-run scripts/lab up with a weft that writes it'));
  }
  const where = describeEndpoint(node.admin);
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const fail = (msg: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new AdminUnavailable(node.name, msg));
    };
    const req = http.request({
      ...requestTarget(node.admin!, path),
      method: 'GET',
      headers: { accept: 'application/json', 'user-agent': `weft-cli/${VERSION}` },
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) fail(`answer to ${path} exceeds ${MAX_BODY_BYTES} bytes`);
        else chunks.push(c);
      });
      res.on('error', (err) => fail(`${where}: ${err.message}`));
      res.on('end', () => {
        if (settled) return;
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          return fail(`admin API at ${where} answered HTTP ${res.statusCode} to GET ${path}${body ? `: ${body.slice(0, 200).trim()}` : ''}`);
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          return fail(`admin API at ${where} sent invalid JSON for GET ${path}`);
        }
        settled = true;
        clearTimeout(timer);
        resolve(parsed as T);
      });
    });
    // One deadline for connect + answer: a stopped ztunnel accepts on the socket
    // (the kernel does) but never answers, and must not hold the whole command.
    const timer = setTimeout(() => fail(`no answer from ${where} within ${timeoutMs} ms`), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => fail(connectFailure(err, where)));
    req.end();
  });
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

function requestTarget(admin: AdminEndpoint, path: string): http.RequestOptions {
  if ('socketPath' in admin) return { socketPath: admin.socketPath, path, host: 'localhost' };
  const u = new URL(path, admin.baseUrl.endsWith('/') ? admin.baseUrl : admin.baseUrl + '/');
  return { host: u.hostname, port: u.port || 80, path: u.pathname + u.search };
}

function describeEndpoint(admin: AdminEndpoint): string {
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
