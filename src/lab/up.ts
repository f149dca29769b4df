/**
 * `weft lab up`: builds the lab in seconds. Order and parallelism:
 *
 *   checks (root, tools, conflicts)  ── fs reads only
 *   previous lab recorded? → down
 *   /etc/netns hosts files, then the whole network in one shell script (~tens of ms)
 *   then in parallel:
 *     redis → registry records → weft ca → join tokens → ztunnels → readiness
 *     kube-proxy emulation (WEFT-SERVICES) in each node netns
 *     echo apps in their pods → listening
 *     (br_netfilter hosts) accept bridge-internal frames in the root FORWARD chain
 *   the topology's waypoints: pod, records, token, `weft waypoint run` → readiness
 *   one readiness prober per node, in the node's netns (src/lab/prober.ts)
 *   context file
 *
 * Every resource is recorded in the state file before it is created. If anything
 * fails, the lab tears down what it made (unless keepOnFailure) and the error names
 * the log to read.
 */
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createJoinToken } from '../ca/join-tokens';
import { createServicesApplier, IptablesApplier } from '../iptables/apply';
import { generateServiceRules } from '../iptables/services';
import { ExecCommandRunner } from '../iptables/runner';
import { WeftError } from '../lib/errors';
import { describeRedis, openRedis } from '../registry/connection';
import { labRedisArgs, labRedisTarget, planRedisHa, startLabRedis } from './redis';
import { RegistryStore, type ChangeInput } from '../registry/store';
import { buildContext, writeContext } from './context';
import type { EchoBehaviour } from './echo-behaviour';
import { labDown } from './down';
import { networkResources, networkUpScript } from './network';
import { DIST, REPO_ROOT, built, labLayout, type LabLayout } from './paths';
import { hostsFile, LAB_NET, nodePortRuleInput, planLab, registryRecords, resolvConf, serviceRuleInput, type LabPlan } from './plan';
import { bridgeNetfilterOn, checkRoot, checkTools, conflictError, findConflicts } from './preflight';
import { deadProcess, exitedError, httpStatus, startProcess, tcpReady, waitUntil } from './procs';
import { readState, recordLabDir, StateStore, type ProcessResource } from './state';
import { run } from './run';
import { loadTopology } from './topology';
import { createWaypointPod, type CreatedWaypoint } from './waypoint-pod';
import { ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags';

export interface UpOptions {
  labDir: string;
  topologyFile: string;
  /** Overrides the topology's redisPort. */
  redisPort?: number;
  contextFile: string;
  /** Leave a failed lab in place for inspection (then run down). */
  keepOnFailure?: boolean;
  /** Redis as a primary, replicas and Sentinels (src/lab/redis.ts). */
  redisSentinel?: boolean;
  progress: (line: string) => void;
}

export interface UpResult {
  plan: LabPlan;
  ms: number;
  ca: boolean;
  ztunnels: boolean;
}

/** Chain accepting bridge-internal frames where br_netfilter sends them through FORWARD. */
export const FORWARD_CHAIN = 'WEFT-LAB-FORWARD';
export const JOIN_TOKEN_TTL_MS = 24 * 3_600_000;
export const READY_TIMEOUT_MS = 30_000;

export function forwardApplier(): IptablesApplier {
  return new IptablesApplier({
    runner: new ExecCommandRunner(), table: 'filter', chains: [FORWARD_CHAIN],
    jumps: [{ from: 'FORWARD', to: FORWARD_CHAIN, position: 'first' }],
  });
}

/** The lab ztunnels' --drain-timeout: the graceful-stop grace and the fault scenario's timing follow it. */
export const LAB_DRAIN_TIMEOUT_MS = 5000;

export async function labUp(opts: UpOptions): Promise<UpResult> {
  const started = Date.now();
  const step = (msg: string) => opts.progress(`[${((Date.now() - started) / 1000).toFixed(2).padStart(5)}s] ${msg}`);

  checkRoot();
  checkTools();
  if (!built(DIST.main) || !built(DIST.echo)) {
    throw new WeftError('WEFT_COMMAND_FAILED', `the lab runs the built CLI, but ${DIST.main} or ${DIST.echo} is missing; run npm run build (scripts/lab does it for you)`);
  }
  const topology = loadTopology(opts.topologyFile);
  const planned = planLab(opts.redisPort ? { ...topology, redisPort: opts.redisPort } : topology);
  const plan: LabPlan = opts.redisSentinel ? { ...planned, redisHa: planRedisHa(planned.redisPort) } : planned;

  if (readState(opts.labDir)) {
    step('a previous lab is recorded: tearing it down first');
    await labDown({ labDir: opts.labDir, contextFile: opts.contextFile, progress: (l) => opts.progress(`    ${l}`) });
  }
  const conflicts = await findConflicts(plan);
  if (conflicts.length > 0) throw conflictError(conflicts, opts.labDir);

  const layout = labLayout(opts.labDir);
  const longest = plan.nodes.map((n) => adminSocketPath(layout, n.name)).sort((a, b) => b.length - a.length)[0] ?? '';
  if (Buffer.byteLength(longest) > 107) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid --lab-dir=${JSON.stringify(opts.labDir)}: too long for the ztunnel admin sockets under it (${longest} exceeds the 107-byte unix socket limit); use a shorter WEFT_LAB_DIR`);
  }
  rmSync(layout.logs, { recursive: true, force: true });
  for (const dir of [layout.logs, layout.redisDir, layout.caDir, layout.binDir, layout.runDir]) mkdirSync(dir, { recursive: true });
  const store = StateStore.create({
    labDir: opts.labDir, repo: REPO_ROOT, topologyFile: opts.topologyFile, startedAt: new Date().toISOString(), plan,
  });

  try {
    recordLabDir(opts.labDir); // in the try: a failure here still takes down what was recorded
    const result = await bringUp(plan, layout, store, opts, step);
    store.update({ phase: 'up', upMs: Date.now() - started, ztunnels: result.ztunnels });
    step(`lab up in ${((Date.now() - started) / 1000).toFixed(2)}s`);
    return { plan, ms: Date.now() - started, ...result };
  } catch (err) {
    if (opts.keepOnFailure) {
      step(`up failed; leaving the lab in place for inspection (logs in ${layout.logs}); run \`scripts/lab down\` when done`);
    } else {
      step(`up failed; tearing down what was made (logs kept in ${layout.logs})`);
      await labDown({ labDir: opts.labDir, contextFile: opts.contextFile, progress: (l) => opts.progress(`    ${l}`) }).catch((e: unknown) => {
        opts.progress(`    teardown after failure also failed: ${e instanceof Error ? e.message : String(e)}`);
      });
    }
    throw err;
  }
}

async function bringUp(plan: LabPlan, layout: LabLayout, store: StateStore, opts: UpOptions, step: (m: string) => void): Promise<{ ca: boolean; ztunnels: boolean }> {
  // Hosts files first: `ip netns exec` bind-mounts them when a process starts in a pod.
  if (!existsSync('/etc/netns')) store.record({ type: 'dir', path: '/etc/netns' });
  store.record(...plan.pods.map((p) => ({ type: 'etc-netns' as const, name: p.netns })));
  for (const p of plan.pods) {
    const dir = `/etc/netns/${p.netns}`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'hosts'), hostsFile(plan, p));
    writeFileSync(join(dir, 'resolv.conf'), resolvConf(p));
  }
  writeShim(layout);

  const res = networkResources(plan);
  store.record(
    ...res.links.map((name) => ({ type: 'link' as const, name })),
    ...res.netns.map((name) => ({ type: 'netns' as const, name })),
    ...res.routes.map((spec) => ({ type: 'route' as const, spec })),
  );
  writeFileSync(layout.networkScript, networkUpScript(plan), { mode: 0o755 });
  await run('sh', ['-e', layout.networkScript]);
  step(`network: ${LAB_NET.bridge} ${LAB_NET.gateway}/24, ${plan.nodes.length} nodes, ${plan.pods.length} pods`);

  const tasks: Promise<unknown>[] = [];
  tasks.push(control(plan, layout, store, step));
  tasks.push(Promise.all(plan.nodes.map(async (n) => {
    store.record({ type: 'iptables-chain', table: 'nat', chain: 'WEFT-SERVICES', hook: 'PREROUTING', netns: n.netns });
    await createServicesApplier({ runner: new ExecCommandRunner(), netns: n.netns }).apply(generateServiceRules(serviceRuleInput(plan), nodePortRuleInput(plan, n.name)));
  })).then(() => step(`services: ${plan.services.map((s) => `${s.name}.${s.namespace}=${s.vip}`).join(', ') || 'none'} (kube-proxy emulation in every node)`)));
  tasks.push(startApps(plan, layout, store).then((n) => step(`apps: ${n} echo pod(s) listening on :${LAB_NET.echoHttpPort} (HTTP), :${LAB_NET.echoTcpPort} (TCP) and :${LAB_NET.echoGrpcPort} (gRPC)`)));
  if (bridgeNetfilterOn()) {
    tasks.push((async () => {
      store.record({ type: 'iptables-chain', table: 'filter', chain: FORWARD_CHAIN, hook: 'FORWARD' });
      await forwardApplier().apply(`*filter\n:${FORWARD_CHAIN} - [0:0]\n-A ${FORWARD_CHAIN} -i ${LAB_NET.bridge} -o ${LAB_NET.bridge} -j ACCEPT\nCOMMIT\n`);
    })());
  }
  // allSettled: a failure must not start the teardown while siblings still create things.
  const settled = await Promise.allSettled(tasks);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  const control_ = (settled[0] as PromiseFulfilledResult<{ ca: boolean; ztunnels: boolean }>).value;
  if (plan.waypoints.length > 0) await startWaypoints(plan, layout, store, step);
  startProbers(plan, layout, store);
  // One that died after its own readiness (nobody waits for it any more) fails up too.
  const dead = deadProcess(started(store)());
  if (dead) throw exitedError('lab up', dead);
  const probed = plan.pods.filter((p) => p.readinessProbe).length;
  step(`probers: ${plan.nodes.length} (one per node) probing ${probed} pod(s) and ${plan.waypoints.length} waypoint(s)`);

  store.record({ type: 'context', path: opts.contextFile });
  writeContext(opts.contextFile, buildContext(plan, store.labDir, control_.ca ? layout.caRootFile : undefined,
    control_.ztunnels ? (node) => adminSocketPath(layout, node) : undefined));
  step(`context: ${opts.contextFile}`);
  return control_;
}

/** The topology's waypoints: each its own pod, made as `weft waypoint add` makes one. */
async function startWaypoints(plan: LabPlan, layout: LabLayout, store: StateStore, step: (m: string) => void): Promise<void> {
  // allSettled: a failure must not start the teardown while siblings still create things.
  const settled = await Promise.allSettled(plan.waypoints.map((w) => createWaypointPod({ store, layout, plan, watch: started(store) }, w)));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const made = settled.map((r) => (r as PromiseFulfilledResult<CreatedWaypoint>).value);
  const names = made.map((m) => `${m.waypoint.uid}@${m.waypoint.ip}`).join(', ');
  step(made.every((m) => m.started)
    ? `waypoints: ${names} ready`
    : `waypoints: ${names} (pods and records only: ${DIST.waypoint} not built yet)`);
}

/**
 * The kubelet's readiness probes: one `weft lab prober` per node, in the node's netns,
 * writing the status of its pods and waypoints to the registry (src/lab/prober.ts).
 */
function startProbers(plan: LabPlan, layout: LabLayout, store: StateStore): void {
  for (const n of plan.nodes) {
    startProcess(store, {
      name: `prober/${n.name}`, role: 'prober', netns: n.netns, log: join(layout.logs, `prober-${n.name}.log`),
      argv: [process.execPath, DIST.main, 'lab', 'prober', '--node', n.name, '--lab-dir', layout.labDir,
        ...labRedisArgs(plan)],
    });
  }
}

/** `weft` inside pods (`scripts/lab exec demo/client -- weft lab request ...`). */
function writeShim(layout: LabLayout): void {
  const shim = join(layout.binDir, 'weft');
  writeFileSync(shim, `#!/bin/sh\nexec "${process.execPath}" "${DIST.main}" "$@"\n`);
  chmodSync(shim, 0o755);
}

/** The echo flags of a pod's topology `echo:` behaviour (none without one). */
export function echoBehaviourArgs(b: EchoBehaviour | undefined): string[] {
  return b ? ['--fail-status', String(b.failStatus), '--fail-ratio', String(b.failRatio), '--service-time', String(b.serviceTimeMs), '--concurrency', String(b.concurrency)] : [];
}

async function startApps(plan: LabPlan, layout: LabLayout, store: StateStore): Promise<number> {
  const apps = plan.pods.filter((p) => p.run === 'echo');
  await Promise.all(apps.map(async (p) => {
    const proc = startProcess(store, {
      name: `app/${p.uid}`, role: 'app', netns: p.netns, log: join(layout.logs, `app-${p.namespace}-${p.name}.log`),
      // Dual stack: '::' takes IPv4 too (peers shown without the ::ffff: prefix).
      argv: [process.execPath, DIST.echo, '--pod', p.name, '--namespace', p.namespace, '--node', p.node, ...(p.ip6 ? ['--host', '::'] : []), ...echoBehaviourArgs(p.echo)],
    });
    await waitUntil(`echo app in ${p.uid}`, () => tcpReady(p.ip, LAB_NET.echoHttpPort), { timeoutMs: READY_TIMEOUT_MS, process: proc, watch: started(store) });
  }));
  return apps.length;
}

/**
 * Every process `up` has started so far: each readiness wait watches them all, so a
 * component that dies (the CA on EADDRINUSE) fails `up` at once, named, rather than
 * whoever waits for it timing out later.
 */
export function started(store: StateStore): () => ProcessResource[] {
  return () => store.current.resources.filter((r): r is ProcessResource => r.type === 'process' && r.pid !== undefined);
}

/** Redis, registry, CA, join tokens and ztunnels: each needs the one before. */
async function control(plan: LabPlan, layout: LabLayout, store: StateStore, step: (m: string) => void): Promise<{ ca: boolean; ztunnels: boolean }> {
  await startLabRedis(plan, layout, store, started(store), READY_TIMEOUT_MS);
  const target = labRedisTarget(plan);

  const registry = RegistryStore.connect(target);
  try {
    const recs = registryRecords(plan);
    const changes: ChangeInput[] = [
      ...recs.nodes.map((record) => ({ op: 'put' as const, kind: 'node' as const, record })),
      ...recs.namespaces.map((record) => ({ op: 'put' as const, kind: 'namespace' as const, record })),
      ...recs.workloads.map((record) => ({ op: 'put' as const, kind: 'workload' as const, record })),
      ...recs.services.map((record) => ({ op: 'put' as const, kind: 'service' as const, record })),
    ];
    await registry.apply(changes);
  } finally {
    await registry.close();
  }
  step(`redis ${describeRedis(target)}${plan.redisHa ? ` (primary :${plan.redisPort}, replicas :${plan.redisHa.replicaPorts.join(', :')})` : ''}: registered ${plan.nodes.length} nodes, ${plan.namespaces.length} namespaces, ${plan.pods.length} workloads, ${plan.services.length} services`);

  if (!built(DIST.ca)) {
    step(`ca: skipped (${DIST.ca} not built yet), so ztunnels are skipped too`);
    return { ca: false, ztunnels: false };
  }
  const caAddress = `${LAB_NET.gateway}:${LAB_NET.caPort}`;
  const caProc = startProcess(store, {
    name: 'ca', role: 'ca', log: join(layout.logs, 'ca.log'),
    argv: [process.execPath, DIST.main, 'ca', ...caArgs(layout, labRedisArgs(plan))],
  });
  // Ready = root written and the registry loaded (so impersonation can be decided).
  await waitUntil('weft ca', async () => built(layout.caRootFile) && (await httpStatus(caReadyUrl())) === 200,
    { timeoutMs: READY_TIMEOUT_MS, process: caProc, watch: started(store) });
  store.update({ caRootFile: layout.caRootFile });
  step(`ca: ${caAddress}, root ${layout.caRootFile}`);

  if (!built(DIST.ztunnel)) {
    step(`ztunnels: skipped (${DIST.ztunnel} not built yet); VIP traffic of every pod uses the kube-proxy emulation`);
    return { ca: true, ztunnels: false };
  }
  await Promise.all(plan.nodes.map((n) => startNodeZtunnel(plan, n, (env) => startProcess(store, {
    name: `ztunnel/${n.name}`, role: 'ztunnel', netns: n.netns, log: join(layout.logs, `ztunnel-${n.name}.log`),
    argv: [process.execPath, ...ZTUNNEL_NODE_FLAGS, DIST.main, 'ztunnel', ...ztunnelArgs(n.name, n.address, layout, labRedisArgs(plan)), ...(n.address6 ? ['--address6', n.address6] : [])],
  }, env), started(store))));
  step(`ztunnels: ${plan.nodes.map((n) => `${n.name}@${n.address}`).join(', ')} ready`);
  return { ca: true, ztunnels: true };
}

/**
 * Starts the ztunnel of one node and waits until it is ready. `start` spawns it with
 * the environment given: a fresh join token (tokens are secrets, so only the process's
 * environment holds them, never the state file). Used by `up` and by `weft lab ztunnel
 * start`, so a restarted ztunnel joins exactly as the first one did.
 */
export async function startNodeZtunnel(plan: LabPlan, node: { name: string; address: string },
  start: (env: NodeJS.ProcessEnv) => ProcessResource, watch?: () => readonly ProcessResource[]): Promise<ProcessResource> {
  const redis = openRedis(labRedisTarget(plan), { lazyConnect: true, maxRetriesPerRequest: 2 });
  let token: string;
  try {
    token = (await createJoinToken(redis, node.name, JOIN_TOKEN_TTL_MS)).token;
  } finally {
    redis.disconnect();
  }
  const proc = start({ ...process.env, WEFT_JOIN_TOKEN: token });
  const url = `http://${node.address}:${LAB_NET.readinessPort}/healthz/ready`;
  await waitUntil(`ztunnel on ${node.name}`, async () => (await httpStatus(url)) === 200, { timeoutMs: READY_TIMEOUT_MS, process: proc, ...(watch ? { watch } : {}) });
  return proc;
}


export function caReadyUrl(): string {
  return `http://${LAB_NET.gateway}:${LAB_NET.caMetricsPort}/healthz/ready`;
}

/** Both CA ports bind the bridge address: nothing of the lab listens on the host's interfaces. */
export function caArgs(layout: LabLayout, redisArgs: string[]): string[] {
  return [
    '--listen', `${LAB_NET.gateway}:${LAB_NET.caPort}`,
    '--metrics-listen', `${LAB_NET.gateway}:${LAB_NET.caMetricsPort}`,
    ...redisArgs,
    // A fresh lab makes its root on purpose; the CA never mints one silently.
    '--root-dir', layout.caDir, '--generate-root',
    '--root-out', layout.caRootFile,
    '--ip', LAB_NET.gateway,
  ];
}

/** The admin API as a unix socket: how the CLI in the root namespace reaches a ztunnel inside a node netns. */
export function adminSocketPath(layout: LabLayout, node: string): string {
  return join(layout.runDir, `ztunnel-${node}.sock`);
}

export function ztunnelArgs(node: string, address: string, layout: LabLayout, redisArgs: string[]): string[] {
  return [
    '--node', node,
    '--address', address,
    ...redisArgs,
    '--ca-address', `${LAB_NET.gateway}:${LAB_NET.caPort}`,
    '--trust-anchor-file', layout.caRootFile,
    // A boolean flag: a separate "true" would be read as a positional argument.
    '--capture',
    '--admin-socket', adminSocketPath(layout, node),
    // As on a cluster: the read-only views on the node IP, for the API server pod proxy.
    '--admin-view-address', address,
    // A rolling update drains for this long; `weft lab ztunnel stop` insists after twice that.
    '--drain-timeout', `${LAB_DRAIN_TIMEOUT_MS / 1000}s`,
  ];
}
