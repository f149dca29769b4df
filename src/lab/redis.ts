/**
 * The lab's Redis: one server, or (`lab up --redis-sentinel`) a highly available set as
 * daemonset/redis-sentinel.yaml runs on a cluster: a primary, two replicas and three
 * Sentinels, each a process on the bridge address, so a failover can be shown under
 * mesh traffic (kill the primary: `weft lab` records its PID as process `redis`).
 *
 * Every component the lab starts gets its Redis flags from labRedisArgs and every
 * client the lab makes its target from labRedisTarget: one place that knows whether
 * the registry is one server or found through Sentinels.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { RedisTarget } from '../registry/connection';
import type { LabLayout } from './paths';
import { LAB_NET, type LabPlan } from './plan';
import { startProcess, tcpReady, until, waitUntil } from './procs';
import type { ProcessResource, StateStore } from './state';

/** The Sentinels' name for the registry primary (as in daemonset/redis-sentinel.yaml). */
export const LAB_MASTER_NAME = 'weft-registry';

/** Ports of the highly available set: replicas right after the primary, then the Sentinels. */
export interface LabRedisHa {
  replicaPorts: number[];
  sentinelPorts: number[];
}

/** The ports of the set for a primary on `redisPort`. */
export function planRedisHa(redisPort: number): LabRedisHa {
  return { replicaPorts: [redisPort + 1, redisPort + 2], sentinelPorts: [redisPort + 3, redisPort + 4, redisPort + 5] };
}

/** Every port the lab's Redis processes listen on (preflight checks them all). */
export function labRedisPorts(plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): number[] {
  return [plan.redisPort, ...(plan.redisHa ? [...plan.redisHa.replicaPorts, ...plan.redisHa.sentinelPorts] : [])];
}

function sentinelList(ha: LabRedisHa): string {
  return ha.sentinelPorts.map((p) => `${LAB_NET.gateway}:${p}`).join(',');
}

/** The Redis flags of a component inside the lab (node netns: Redis is at the bridge address). */
export function labRedisArgs(plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): string[] {
  return [
    '--redis-url', `redis://${LAB_NET.gateway}:${plan.redisPort}`,
    ...(plan.redisHa ? ['--redis-sentinels', sentinelList(plan.redisHa), '--redis-master-name', LAB_MASTER_NAME] : []),
  ];
}

/** The registry as `up` and `weft lab` (root namespace) reach it. */
export function labRedisTarget(plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): RedisTarget {
  if (!plan.redisHa) return `redis://127.0.0.1:${plan.redisPort}`;
  // The Sentinels name servers by the bridge address, which the root namespace has too.
  return {
    url: `redis://${LAB_NET.gateway}:${plan.redisPort}`,
    sentinel: { addresses: plan.redisHa.sentinelPorts.map((port) => ({ host: LAB_NET.gateway, port })), masterName: LAB_MASTER_NAME },
  };
}

/** The context file's Redis fields for the CLI (src/cli/context.ts reads them). */
export function labContextRedis(plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): { redisSentinels?: string; redisMasterName?: string } {
  return plan.redisHa ? { redisSentinels: sentinelList(plan.redisHa), redisMasterName: LAB_MASTER_NAME } : {};
}

function redisServerArgs(port: number, dir: string): string[] {
  // A replica's first (diskless) sync starts at once, not after Redis' default 5 s wait
  // for more replicas: until it has, a failover would promote an empty replica.
  return ['redis-server', '--bind', LAB_NET.gateway, '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no',
    '--dir', dir, '--protected-mode', 'no', '--daemonize', 'no', '--repl-diskless-sync-delay', '0'];
}

/**
 * Starts the lab's Redis and resolves once it serves: the one server, or the whole set
 * with every Sentinel knowing every replica and peer (before that, a failover could
 * neither elect a leader nor pick a replica).
 */
export async function startLabRedis(plan: LabPlan, layout: LabLayout, store: StateStore, watch: () => readonly ProcessResource[],
  timeoutMs: number): Promise<void> {
  const primary = startProcess(store, {
    name: 'redis', role: 'redis', log: join(layout.logs, 'redis.log'),
    argv: redisServerArgs(plan.redisPort, layout.redisDir),
  });
  await waitUntil('redis-server', () => tcpReady('127.0.0.1', plan.redisPort), { timeoutMs, process: primary, watch });
  const ha = plan.redisHa;
  if (!ha) return;
  await Promise.all(ha.replicaPorts.map(async (port, i) => {
    const dir = join(layout.redisDir, `replica-${i + 1}`);
    mkdirSync(dir, { recursive: true });
    const proc = startProcess(store, {
      name: `redis-replica-${i + 1}`, role: 'redis', log: join(layout.logs, `redis-replica-${i + 1}.log`),
      argv: [...redisServerArgs(port, dir), '--replicaof', LAB_NET.gateway, String(plan.redisPort)],
    });
    await waitUntil(`redis replica ${i + 1}`, () => tcpReady('127.0.0.1', port), { timeoutMs, process: proc, watch });
    // Serving is not replicating: the lab is ready once the replica has its first sync
    // (later writes stream to it), so a failover never promotes an empty replica.
    await waitUntil(`redis replica ${i + 1} in sync with the primary`, () => replicaInSync(port), { timeoutMs, process: proc, watch });
  }));
  await Promise.all(ha.sentinelPorts.map(async (port, i) => {
    const dir = join(layout.redisDir, `sentinel-${i + 1}`);
    mkdirSync(dir, { recursive: true });
    // Sentinel rewrites its file with what it learns, so each has its own. Failover
    // within about 2 s: the lab shows it under traffic, a cluster waits longer (5 s).
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(conf, [
      `bind ${LAB_NET.gateway} 127.0.0.1`, 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${LAB_MASTER_NAME} ${LAB_NET.gateway} ${plan.redisPort} 2`,
      `sentinel down-after-milliseconds ${LAB_MASTER_NAME} 1000`,
      `sentinel failover-timeout ${LAB_MASTER_NAME} 10000`,
      `sentinel parallel-syncs ${LAB_MASTER_NAME} 2`, '',
    ].join('\n'));
    const proc = startProcess(store, {
      name: `redis-sentinel-${i + 1}`, role: 'redis', log: join(layout.logs, `redis-sentinel-${i + 1}.log`),
      argv: ['redis-server', conf, '--sentinel', '--port', String(port)],
    });
    await waitUntil(`redis sentinel ${i + 1}`, () => tcpReady('127.0.0.1', port), { timeoutMs, process: proc, watch });
  }));
  const settled = await until(async () => (await Promise.all(ha.sentinelPorts.map((p) => sentinelSees(p, ha)))).every(Boolean), timeoutMs, 100);
  if (!settled) throw new Error(`the lab's Sentinels did not all see ${ha.replicaPorts.length} replicas and each other within ${timeoutMs} ms; see ${layout.logs}/redis-sentinel-*.log`);
}

/**
 * One question to the Redis server or Sentinel at host:port on a connection of its own,
 * no retries; undefined when it is not there or the question fails (the callers poll,
 * or move on to the next address).
 */
export async function askRedis<T>(host: string, port: number, ask: (c: Redis) => Promise<T>): Promise<T | undefined> {
  const c = new Redis(port, host, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  c.on('error', () => { /* answered by the undefined below */ });
  try {
    await c.connect();
    return await ask(c);
  } catch {
    return undefined;
  } finally {
    c.disconnect();
  }
}

/** Whether the replica on `port` has finished its sync with the primary (INFO replication: master_link_status:up). */
async function replicaInSync(port: number): Promise<boolean> {
  return (await askRedis('127.0.0.1', port, async (c) => /^master_link_status:up\r?$/m.test(await c.info('replication')))) ?? false;
}

/** Whether the Sentinel on `port` knows every replica and every other Sentinel. */
async function sentinelSees(port: number, ha: LabRedisHa): Promise<boolean> {
  return (await askRedis('127.0.0.1', port, async (c) => {
    const [master] = (await c.call('SENTINEL', 'MASTERS')) as string[][];
    if (!master) return false;
    const field = (name: string) => Number(master[master.indexOf(name) + 1]);
    return field('num-slaves') === ha.replicaPorts.length && field('num-other-sentinels') === ha.sentinelPorts.length - 1;
  })) ?? false;
}
