import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis, waitForPort, type TestRedis } from './redis';
import { waitFor } from './wait';

/** A real redis-sentinel (`redis-server --sentinel`) on a free loopback port. */
export interface TestSentinel {
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** A primary, its replicas and the Sentinels watching them: every one a real process. */
export interface TestSentinelCluster {
  masterName: string;
  /** Servers in start order: [0] is the first primary. */
  servers: TestRedis[];
  sentinels: TestSentinel[];
  /** `host:port,...` of the Sentinels, as --redis-sentinels takes it. */
  sentinelList: string;
  /** The port the Sentinels name as primary now. */
  primaryPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * ACLs as daemonset/redis-sentinel.yaml sets them up, from the files of
 * `scripts/redis-secrets --sentinel` (DIR/<secret>/<key>): servers with its users.acl,
 * replicas authenticating as weft-replica, Sentinels as weft-sentinel to the servers,
 * as weft-sentinel-peer to one another, and knowing only the users peer and client.
 */
export interface SentinelAuth {
  /** The directory scripts/redis-secrets --sentinel wrote. */
  secretsDir: string;
}

export interface SentinelClusterOptions {
  auth?: SentinelAuth;
  replicas?: number;
  sentinels?: number;
  /** `down-after-milliseconds`: how long the primary must be silent before a failover. Default 1000. */
  downAfterMs?: number;
  masterName?: string;
}

const secret = (auth: SentinelAuth, key: string) => readFileSync(join(auth.secretsDir, 'weft-redis-sentinel', key), 'utf8').split('\n')[0]!;

/** The credentials the helper's own checks use: a Sentinel peer's, a server's Sentinel user's. */
function adminAuth(auth: SentinelAuth | undefined, of: 'sentinel' | 'server'): { username?: string; password?: string } {
  if (!auth) return {};
  return of === 'sentinel' ? { username: 'weft-sentinel-peer', password: secret(auth, 'peer-password') }
    : { username: 'weft-sentinel', password: secret(auth, 'sentinel-password') };
}

async function startSentinel(masterName: string, primaryPort: number, quorum: number, downAfterMs: number, auth?: SentinelAuth): Promise<TestSentinel> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'weft-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  // Sentinel rewrites its config file (what it learned about replicas and peers), so
  // each one gets its own writable file.
  writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
    `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} ${quorum}`,
    `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
    `sentinel failover-timeout ${masterName} 10000`,
    `sentinel parallel-syncs ${masterName} 2`,
    // The lines the manifest's init container writes (daemonset/redis-sentinel.yaml).
    ...(auth ? [
      `sentinel auth-user ${masterName} weft-sentinel`, `sentinel auth-pass ${masterName} ${secret(auth, 'sentinel-password')}`,
      'sentinel sentinel-user weft-sentinel-peer', `sentinel sentinel-pass ${secret(auth, 'peer-password')}`,
      'user default off',
      `user weft-sentinel-peer on #${secret(auth, 'peer-password.sha256')} +@all`,
      `user weft-sentinel-client on #${secret(auth, 'client-password.sha256')} -@all +ping +client|setname +sentinel|get-master-addr-by-name +sentinel|sentinels`,
    ] : []),
    '',
  ].join('\n'));
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitForPort(port, 10_000);
  return {
    port,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts a primary, `replicas` replicas of it and `sentinels` Sentinels (quorum: a
 * majority), and resolves once every Sentinel knows every replica and every other
 * Sentinel: before that a failover could not elect a leader or pick a replica.
 */
export async function startSentinelCluster(opts: SentinelClusterOptions = {}): Promise<TestSentinelCluster> {
  const masterName = opts.masterName ?? 'weft-registry';
  const nReplicas = opts.replicas ?? 2;
  const nSentinels = opts.sentinels ?? 3;
  const servers: TestRedis[] = [];
  const sentinels: TestSentinel[] = [];
  const stop = async () => {
    await Promise.all(sentinels.map((s) => s.stop()));
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    const auth = opts.auth;
    // Every server gets the replication credentials: any may become a replica later.
    const serverOpts = auth ? {
      aclFile: join(auth.secretsDir, 'weft-redis-acl', 'users.acl'),
      masterAuth: { username: 'weft-replica', password: secret(auth, 'replica-password') },
    } : {};
    const primary = await startRedis(serverOpts);
    servers.push(primary);
    for (let i = 0; i < nReplicas; i++) servers.push(await startRedis({ ...serverOpts, replicaOf: primary.port }));
    const quorum = Math.floor(nSentinels / 2) + 1;
    for (let i = 0; i < nSentinels; i++) sentinels.push(await startSentinel(masterName, primary.port, quorum, opts.downAfterMs ?? 1000, auth));
    for (const s of sentinels) {
      const c = new Redis(s.port, '127.0.0.1', { maxRetriesPerRequest: 1, ...adminAuth(auth, 'sentinel') });
      try {
        await waitFor(`sentinel ${s.port} sees ${nReplicas} replicas and ${nSentinels - 1} other sentinels`, async () => {
          const [master] = (await c.call('SENTINEL', 'MASTERS')) as string[][];
          const field = (name: string) => Number(master![master!.indexOf(name) + 1]);
          return field('num-slaves') === nReplicas && field('num-other-sentinels') === nSentinels - 1;
        }, { timeoutMs: 20_000, intervalMs: 100 });
      } finally {
        c.disconnect();
      }
    }
    // Replicas must have completed their first sync, or none can be promoted.
    const admin = new Redis(primary.port, '127.0.0.1', { maxRetriesPerRequest: 1, ...adminAuth(auth, 'server') });
    try {
      await waitFor('every replica is online', async () => {
        const info = await admin.info('replication');
        return (info.match(/state=online/g) ?? []).length === nReplicas;
      }, { timeoutMs: 10_000, intervalMs: 50 });
    } finally {
      admin.disconnect();
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    masterName,
    servers,
    sentinels,
    sentinelList: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    async primaryPort() {
      for (const s of sentinels) {
        const c = new Redis(s.port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true, ...adminAuth(opts.auth, 'sentinel') });
        try {
          const [, port] = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string];
          return Number(port);
        } catch {
          // That Sentinel is gone; ask the next.
        } finally {
          c.disconnect();
        }
      }
      throw new Error('no Sentinel answered');
    },
    stop,
  };
}
