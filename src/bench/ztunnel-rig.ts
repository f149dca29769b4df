/**
 * Two real ztunnels on loopback, each its own process running ZtunnelApp as
 * `weft ztunnel` does: registry follower on a real redis-server, certificates from the
 * real CA over gRPC (joined with a join token), metrics, telemetry, the memory
 * reclaimer. Only what the node's iptables would provide is replaced, through
 * ZtunnelApp's hooks: the original destination (every captured connection is meant for
 * the server pod), the peer's HBONE address and which 127.x addresses are "the node".
 *
 *   client pod 127.0.1.1 ─► node-a 127.0.0.2 outbound ═HBONE═► node-b 127.0.0.3 ─► server pod 127.0.2.1
 *
 * The pods are sockets of the parent process. Each child answers `mem` (its
 * process.memoryUsage(), V8 heap statistics, tracked connections and tunnels) over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { join } from 'node:path';
import * as v8 from 'node:v8';
import { Writable } from 'node:stream';
import { startCaApp, type CaApp } from '../ca/app';
import { caConfig, caSpecs } from '../ca/command';
import { createJoinToken } from '../ca/join-tokens';
import { createLogger, silentLogger } from '../lib/log';
import { parseOptions } from '../lib/options';
import { openRedis } from '../registry/connection';
import { ambientNamespace, nodeRecord, workloadRecord } from '../registry/fixtures';
import { RegistryStore } from '../registry/store';
import { ZtunnelApp } from '../ztunnel/app';
import { loadZtunnelConfig } from '../ztunnel/config';
import { exactSelfAddresses } from '../ztunnel/loop-guard';
import { fixedOriginalDst } from '../ztunnel/testing/conntrack-table';
import { freePort, startRedis } from './redis';
import { populate, sizeFor } from './registry-population';
import { benchTempDir } from './temp-dir';

export const RIG_IP = { nodeA: '127.0.0.2', nodeB: '127.0.0.3', client: '127.0.1.1', server: '127.0.2.1' };

interface ChildConfig {
  role: 'node-a' | 'node-b';
  redis: string;
  ca: string;
  anchors: string;
  joinToken: string;
  ports: { outbound: number; inboundPlaintext: number; hbone: number };
  /** node-a: node-b's HBONE port and the server pod's port. */
  peerHbonePort: number;
  podPort: number;
  /** The HBONE pool's idle timeout; default the ztunnel's (5 min). */
  poolIdleTimeoutMs?: number;
}

/** What a child reports about itself. */
export interface ChildMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8's committed memory of all heap spaces (heapTotal is the same figure). */
  heapCommitted: number;
  tracked: number;
  tunnels: number;
  /** The reclaimer's 'memory given back' lines so far (start-up, bursts, registry reloads). */
  reclaims: number;
  /** The last reclaim's event-loop pause (its line's gcMs + trimMs); 0 before any. */
  lastReclaimPauseMs: number;
}

// ---------- child ----------

async function runChild(cfg: ChildConfig): Promise<void> {
  let reclaims = 0;
  let lastReclaimPauseMs = 0;
  // warn and above to stderr; the reclaimer's info line is counted.
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        if (line.includes('memory given back')) {
          reclaims++;
          const r = JSON.parse(line) as { gcMs?: number; trimMs?: number };
          lastReclaimPauseMs = (r.gcMs ?? 0) + (r.trimMs ?? 0);
        }
        else if (/"level":"(warn|error|fatal)"/.test(line)) process.stderr.write(`[${cfg.role}] ${line}\n`);
      }
      cb();
    },
  });
  const argv = ['--node', cfg.role, '--address', cfg.role === 'node-a' ? RIG_IP.nodeA : RIG_IP.nodeB, '--redis-url', cfg.redis,
    '--ca-address', cfg.ca, '--trust-anchor-file', cfg.anchors, '--join-token', cfg.joinToken,
    '--admin-port', '0', '--metrics-port', '0', '--readiness-port', '0', '--drain-timeout', '0s'];
  const config = loadZtunnelConfig(argv, {});
  const self = cfg.role === 'node-a' ? RIG_IP.nodeA : RIG_IP.nodeB;
  const app = new ZtunnelApp(config, createLogger({ level: 'info', component: 'ztunnel', destination: sink }), {
    ...cfg.ports,
    originalDst: fixedOriginalDst(cfg.role === 'node-a' ? { ip: RIG_IP.server, port: cfg.podPort } : { ip: RIG_IP.server, port: 15008 }),
    hboneDialTarget: () => ({ host: RIG_IP.nodeB, port: cfg.peerHbonePort }),
    selfAddresses: exactSelfAddresses([self]),
    ...(cfg.poolIdleTimeoutMs ? { poolIdleTimeoutMs: cfg.poolIdleTimeoutMs } : {}),
  });
  await app.start();
  for (let i = 0; !app.status().ready; i++) {
    if (i > 600) throw new Error(`${cfg.role} not ready after 60 s: ${JSON.stringify(app.status())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  process.on('message', (m: string | { snapshot: string }) => {
    if (typeof m === 'object') {
      // A full heap snapshot (it collects garbage first), for heap-diff.ts.
      v8.writeHeapSnapshot(m.snapshot);
      return void process.send!({ snapshot: m.snapshot });
    }
    if (m !== 'mem') return;
    const mu = process.memoryUsage();
    const tunnels = app.tunnels().tunnels.length + app.hboneServers.reduce((n, s) => n + s.sessionCount, 0);
    const reply: ChildMemory = {
      rss: mu.rss, heapTotal: mu.heapTotal, heapUsed: mu.heapUsed, external: mu.external, arrayBuffers: mu.arrayBuffers,
      heapCommitted: v8.getHeapStatistics().total_heap_size, tracked: app.tracked.size, tunnels, reclaims, lastReclaimPauseMs,
    };
    process.send!({ mem: reply });
  });
  process.send!({ ready: true });
}

if (require.main === module && process.argv[2] === '--child') {
  process.once('message', (cfg: ChildConfig) => {
    runChild(cfg).catch((err) => { console.error(err); process.exit(1); });
  });
  process.on('disconnect', () => process.exit(0));
  // Exits normally, so --cpu-prof / --heap-prof write their profiles.
  process.on('SIGTERM', () => process.exit(0));
}

// ---------- parent ----------

export interface RigNode {
  role: 'node-a' | 'node-b';
  child: ChildProcess;
  pid: number;
  mem(): Promise<ChildMemory>;
  /** Writes a V8 heap snapshot of the child to `path`. */
  snapshot(path: string): Promise<void>;
}

export interface ZtunnelRig {
  /** The rig's redis-server, which both ztunnels follow. */
  redisUrl: string;
  nodeA: RigNode;
  nodeB: RigNode;
  /** node-a's outbound listener: connect here from RIG_IP.client, as a captured pod would. */
  outbound: { host: string; port: number };
  /** Server pod sockets now open (an echo server). */
  podSockets: Set<net.Socket>;
  stop(): Promise<void>;
}

/** Redis, the CA and the server pod stay in this process; the two ztunnels are children. */
/** `registryWorkloads`: a synthetic registry of that many more workloads (registry-population.ts) beside the rig's own. */
export async function startZtunnelRig(opts: { nodeArgs?: readonly string[]; poolIdleTimeoutMs?: number; registryWorkloads?: number } = {}): Promise<ZtunnelRig> {
  const cleanups: Array<() => unknown> = [];
  const stop = async () => { for (const c of cleanups.splice(0).reverse()) await c(); };
  try {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const tmp = benchTempDir('ztunnel');
    cleanups.push(() => tmp.remove());
    const dir = tmp.path;
    const anchors = join(dir, 'root.pem');
    const ca: CaApp = await startCaApp(caConfig(parseOptions(caSpecs, ['--listen', '127.0.0.1:0', '--metrics-listen', 'off',
      '--redis-url', redis.url, '--root-dir', join(dir, 'root'), '--generate-root', '--root-out', anchors], {}).values), silentLogger());
    cleanups.push(() => ca.stop());

    const podSockets = new Set<net.Socket>();
    const pod = net.createServer((s) => {
      podSockets.add(s);
      s.on('close', () => podSockets.delete(s));
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((r) => pod.listen(0, RIG_IP.server, r));
    cleanups.push(() => new Promise<void>((r) => { for (const s of podSockets) s.destroy(); pod.close(() => r()); }));
    const podPort = (pod.address() as net.AddressInfo).port;

    const store = RegistryStore.connect(redis.url);
    try {
      await store.apply([
        { op: 'put', kind: 'node', record: nodeRecord('node-a', RIG_IP.nodeA) },
        { op: 'put', kind: 'node', record: nodeRecord('node-b', RIG_IP.nodeB) },
        { op: 'put', kind: 'namespace', record: ambientNamespace('bench') },
        { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'bench', name: 'client', node: 'node-a', serviceAccount: 'client', addresses: [RIG_IP.client] }) },
        { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'bench', name: 'server', node: 'node-b', serviceAccount: 'server', addresses: [RIG_IP.server] }) },
      ]);
      if (opts.registryWorkloads) await populate(store, sizeFor(opts.registryWorkloads));
    } finally {
      await store.close();
    }
    const raw = openRedis(redis.url);
    const tokens = { a: (await createJoinToken(raw, 'node-a', 600_000)).token, b: (await createJoinToken(raw, 'node-b', 600_000)).token };
    raw.disconnect();

    const ports = async () => ({ outbound: await freePort(), inboundPlaintext: await freePort(), hbone: await freePort() });
    const portsA = await ports();
    const portsB = await ports();
    const base = { redis: redis.url, ca: `127.0.0.1:${ca.port}`, anchors, peerHbonePort: portsB.hbone, podPort,
      ...(opts.poolIdleTimeoutMs ? { poolIdleTimeoutMs: opts.poolIdleTimeoutMs } : {}) };
    const [nodeB, nodeA] = await Promise.all([
      startNode({ ...base, role: 'node-b', joinToken: tokens.b, ports: portsB }, opts.nodeArgs ?? [], cleanups),
      startNode({ ...base, role: 'node-a', joinToken: tokens.a, ports: portsA }, opts.nodeArgs ?? [], cleanups),
    ]);
    return { redisUrl: redis.url, nodeA, nodeB, outbound: { host: RIG_IP.nodeA, port: portsA.outbound }, podSockets, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startNode(cfg: ChildConfig, nodeArgs: readonly string[], cleanups: Array<() => unknown>): Promise<RigNode> {
  // WEFT_BENCH_NODE_ARGS="--heap-prof" (or --cpu-prof, --heapsnapshot-signal=SIGUSR2) profiles the ztunnels.
  const execArgv = [...(process.env.WEFT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...nodeArgs];
  const child = fork(__filename, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  cleanups.push(async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); await exited; });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${cfg.role} exited with ${code}`)));
    child.on('message', (m: { ready?: boolean }) => { if (m.ready) resolve(); });
    child.send(cfg);
  });
  return {
    role: cfg.role, child, pid: child.pid!,
    mem: () => new Promise((resolve) => {
      const on = (m: { mem?: ChildMemory }) => { if (m.mem) { child.off('message', on); resolve(m.mem); } };
      child.on('message', on);
      child.send('mem');
    }),
    snapshot: (path) => new Promise((resolve) => {
      const on = (m: { snapshot?: string }) => { if (m.snapshot === path) { child.off('message', on); resolve(); } };
      child.on('message', on);
      child.send({ snapshot: path });
    }),
  };
}
