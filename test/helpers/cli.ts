/**
 * Test helpers for the CLI: a captured io, context files, and a stand-in for a
 * ztunnel's admin API on a unix socket serving admin-types.ts-shaped JSON (the
 * contract the CLI reads). Not used in production.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ambientNamespace, namespaceRecord, nodeRecord, peerAuthRecord, policyRecord, serviceRecord, workloadRecord } from '../../src/registry/fixtures';
import type { ChangeInput } from '../../src/registry/store';
import type { WorkloadRecord } from '../../src/registry/types';
import type { CliIo } from '../../src/cli/io';
import { RegistryStore } from '../../src/registry/store';
import type { Test } from 'tap';
import { startRedis, type TestRedis } from './redis';

export interface CapturedIo {
  io: CliIo;
  stdout(): string;
  stderr(): string;
}

export function captureIo(env: NodeJS.ProcessEnv, signal?: AbortSignal): CapturedIo {
  let out = '';
  let err = '';
  const io: CliIo = { stdout: (t) => { out += t; }, stderr: (t) => { err += t; }, env };
  if (signal) io.signal = signal;
  return { io, stdout: () => out, stderr: () => err };
}

/** A private directory for context files and sockets; remove() deletes it. */
export function tempDir(prefix = 'weft-cli-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeContextFile(file: string, ctx: Record<string, unknown>): string {
  writeFileSync(file, JSON.stringify(ctx, null, 2));
  return file;
}

export interface AdminStub {
  socketPath: string;
  /** Requests seen, by path. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves `routes[path]` as JSON on a unix socket. A route value that is a function is
 * called per request; `hang: true` accepts connections and never answers (a stopped
 * ztunnel), to exercise the CLI's deadline.
 */
export function startAdminStub(socketPath: string, routes: Record<string, unknown | (() => unknown)>, opts: { hang?: boolean } = {}): Promise<AdminStub> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push(path);
    if (opts.hang) return;
    if (!(path in routes)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no route ${path}\n`);
      return;
    }
    const v = routes[path];
    const body = JSON.stringify(typeof v === 'function' ? (v as () => unknown)() : v);
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      resolve({
        socketPath, requests,
        close: () => new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
      });
    });
  });
}

// ---- a small mesh shared by the CLI tests ----

/**
 * demo (enrolled): client, echo-1 (node-1), echo-2 (node-2), echo-3 (Unhealthy), opt-out
 * (pod opted out); legacy (not enrolled): client, echo. Service demo/echo 80→8080,
 * legacy/echo 9000. demo has ALLOW allow-demo (namespace demo) and DENY deny-intruder
 * (service account intruder); weft-system has a PERMISSIVE mesh-wide peer authentication.
 */
export function demoMesh(): ChangeInput[] {
  const put = <T extends ChangeInput>(c: T) => c;
  return [
    put({ op: 'put', kind: 'node', record: nodeRecord('node-1', '198.18.0.11') }),
    put({ op: 'put', kind: 'node', record: nodeRecord('node-2', '198.18.0.12') }),
    put({ op: 'put', kind: 'namespace', record: ambientNamespace('demo') }),
    put({ op: 'put', kind: 'namespace', record: namespaceRecord('legacy') }),
    put({ op: 'put', kind: 'namespace', record: namespaceRecord('weft-system') }),
    ...([
      { namespace: 'demo', name: 'client', node: 'node-1', addresses: ['198.19.1.10'], serviceAccount: 'client', labels: { app: 'client' } },
      { namespace: 'demo', name: 'intruder', node: 'node-1', addresses: ['198.19.1.13'], serviceAccount: 'intruder', labels: { app: 'intruder' } },
      { namespace: 'demo', name: 'echo-1', node: 'node-1', addresses: ['198.19.1.11'], serviceAccount: 'echo', labels: { app: 'echo' } },
      { namespace: 'demo', name: 'echo-2', node: 'node-2', addresses: ['198.19.2.11'], serviceAccount: 'echo', labels: { app: 'echo' } },
      { namespace: 'demo', name: 'echo-3', node: 'node-2', addresses: ['198.19.2.12'], serviceAccount: 'echo', labels: { app: 'echo' }, status: 'Unhealthy' },
      { namespace: 'demo', name: 'opt-out', node: 'node-2', addresses: ['198.19.2.13'], serviceAccount: 'default', labels: { app: 'opt-out', 'weft.io/dataplane-mode': 'none' } },
      { namespace: 'legacy', name: 'client', node: 'node-2', addresses: ['198.19.2.20'], labels: { app: 'client' } },
      { namespace: 'legacy', name: 'echo', node: 'node-2', addresses: ['198.19.2.21'], labels: { app: 'echo' } },
    ] as (Pick<WorkloadRecord, 'namespace' | 'name' | 'node'> & Partial<WorkloadRecord>)[])
      .map((w) => put({ op: 'put', kind: 'workload', record: workloadRecord(w) })),
    put({ op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo', vips: ['198.18.128.10'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] }) }),
    put({ op: 'put', kind: 'service', record: serviceRecord({ namespace: 'legacy', name: 'echo', vips: ['198.18.128.20'], ports: [{ port: 9000, targetPort: 9000 }] }) }),
    put({ op: 'put', kind: 'policy', record: policyRecord({ namespace: 'demo', name: 'allow-demo', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ namespaces: ['demo'] }] }] }] }) }),
    put({ op: 'put', kind: 'policy', record: policyRecord({ namespace: 'demo', name: 'deny-intruder', action: 'DENY', rules: [{ clauses: [{ matches: [{ serviceAccounts: ['intruder'] }] }] }] }) }),
    put({ op: 'put', kind: 'peerauth', record: peerAuthRecord({ namespace: 'weft-system', name: 'mesh', mode: 'PERMISSIVE' }) }),
  ];
}

/**
 * What most CLI tests start from: a real redis-server holding the demo mesh, a private
 * directory, and a lab context file pointing at that registry. All torn down with `t`.
 */
export async function startDemoRegistry(t: Test, contextExtra: Record<string, unknown> = {}): Promise<{
  redis: TestRedis; store: RegistryStore; dir: string; contextFile: string;
}> {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.apply(demoMesh());
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const contextFile = writeContextFile(join(tmp.dir, 'context.json'), { kind: 'lab', redisUrl: redis.url, nodes: [], ...contextExtra });
  return { redis, store, dir: tmp.dir, contextFile };
}
