/**
 * A throwaway redis-server on a free loopback port for the benchmarks (tests have
 * test/helpers/redis.ts); removed with its directory by stop().
 */
import { spawn } from 'node:child_process';
import type { Redis } from 'ioredis';
import { createServer, connect } from 'node:net';
import { benchTempDir } from './temp-dir';

/** A port free on `host` (a loopback address) just now. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once host:port accepts a connection (polls every 50 ms, gives up after `timeoutMs` or when `signal` aborts). */
export async function waitListening(host: string, port: number, timeoutMs = 5000, signal?: AbortSignal): Promise<void> {
  for (let i = 0; i < timeoutMs / 50 && !signal?.aborted; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host, port }, () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${host}:${port} never listened`);
}

/** A redis-server on a free loopback port; a failed start leaves neither the process nor its directory behind. */
export async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = benchTempDir('redis');
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir.path],
    { stdio: 'ignore' });
  // A spawn that fails (not installed) emits 'error' and no 'exit'.
  const exited = new Promise<void>((r) => { child.once('exit', () => r()); child.once('error', () => r()); });
  // A bench that ends with process.exit (an error, or its SIGINT/SIGTERM handler) before
  // stop() still takes redis-server with it (and benchTempDir its directory).
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  process.once('exit', onExit);
  const stop = async () => {
    process.off('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    dir.remove();
  };
  // Not installed, or ended at once (a bad option): said now, not after the 10 s wait.
  const ended = new AbortController();
  void exited.then(() => ended.abort());
  try {
    await waitListening('127.0.0.1', port, 10_000, ended.signal);
  } catch {
    await stop();
    throw new Error(`redis-server ${ended.signal.aborted ? 'ended before it listened' : 'did not listen within 10 s'} on 127.0.0.1:${port} (is it installed? apt-get install redis-server)`);
  }
  return { url: `redis://127.0.0.1:${port}`, stop };
}

/** Redis' own counters, read with INFO: CPU seconds (all threads), bytes sent, clients (blocked ones apart), memory. */
export async function redisCounters(admin: Redis): Promise<{ cpuS: number; outBytes: number; clients: number; blocked: number; usedMemory: number }> {
  const text = await admin.info();
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    cpuS: field('used_cpu_sys') + field('used_cpu_user'),
    outBytes: field('total_net_output_bytes'),
    clients: field('connected_clients'),
    blocked: field('blocked_clients'),
    usedMemory: field('used_memory'),
  };
}
