import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Test } from 'tap';

/** A real redis-server started for one test file, on a free loopback port. */
export interface TestRedis {
  url: string;
  port: number;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
  /** Simulates an outage: SIGSTOP (connections hang) — resume() undoes it. */
  pause(): void;
  resume(): void;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export function waitForPort(port: number, deadlineMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const attempt = () => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => { sock.destroy(); resolve(); });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() - started > deadlineMs) reject(new Error(`redis-server did not listen on ${port}`));
        else setTimeout(attempt, 25);
      });
    };
    attempt();
  });
}

export interface StartRedisOptions {
  port?: number;
  /** Serve TLS only (`--port 0 --tls-port`), with these PEM files; the URL is then rediss://. */
  tls?: { certFile: string; keyFile: string; caFile: string; /** `--tls-auth-clients`; default optional. */ authClients?: 'yes' | 'no' | 'optional' };
  /** An ACL file (`--aclfile`): users and their rights, as the manifests' Redis runs. */
  aclFile?: string;
  /** Start as a replica of this loopback port (`--replicaof 127.0.0.1 PORT`). */
  replicaOf?: number;
  /** How a replica authenticates to its primary (`--masteruser`, `--masterauth`). */
  masterAuth?: { username: string; password: string };
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<TestRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'weft-redis-'));
  const listen = opts.tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', opts.tls.certFile, '--tls-key-file', opts.tls.keyFile,
      '--tls-ca-cert-file', opts.tls.caFile, '--tls-auth-clients', opts.tls.authClients ?? 'optional']
    : ['--port', String(port)];
  const child = spawn('redis-server', [
    ...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--protected-mode', 'no', ...(opts.aclFile ? ['--aclfile', opts.aclFile] : []),
    ...(opts.replicaOf ? ['--replicaof', '127.0.0.1', String(opts.replicaOf)] : []),
    ...(opts.masterAuth ? ['--masteruser', opts.masterAuth.username, '--masterauth', opts.masterAuth.password] : []),
  ], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitForPort(port, 10_000);
  return {
    url: `${opts.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    port,
    process: child,
    pause: () => { child.kill('SIGSTOP'); },
    resume: () => { child.kill('SIGCONT'); },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server for one test file and a client of it (both set once `t.before` ran). */
export interface RedisFixture {
  readonly redis: TestRedis;
  /** Fails a command after one retry instead of queueing it while Redis is away. */
  readonly client: Redis;
}

/** Starts a redis-server and a client before the file's first test; both stop after its last. */
export function redisFixture(t: Test): RedisFixture {
  let redis: TestRedis | undefined;
  let client: Redis | undefined;
  t.before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  });
  t.teardown(async () => {
    client?.disconnect();
    await redis?.stop();
  });
  const started = <T>(x: T | undefined): T => {
    if (x === undefined) throw new Error('redisFixture: used before t.before ran');
    return x;
  };
  return {
    get redis() { return started(redis); },
    get client() { return started(client); },
  };
}
