/**
 * The lab's kubelet for readiness: `weft lab prober --node <name>` (hidden; `lab up`
 * starts one per node, inside that node's network namespace) probes the node's pods
 * that declare a readiness probe and its waypoint pods, and writes each workload's
 * status (Healthy/Unhealthy) to the registry, which is what the ztunnels' load
 * balancers and `weft workloads|services|explain` go by.
 *
 * Why from the node's namespace: as the kubelet, the probe comes from the node, so the
 * node's capture rules (which DNAT traffic *entering* the node towards an enrolled pod)
 * never see it; a probe from the root namespace would pass the destination ztunnel and
 * fail under STRICT mTLS or while that ztunnel restarts, though the app is fine.
 *
 * The state file is re-read every second, so waypoints added or removed live are
 * probed or dropped. After every check the registry is made to agree with the verdict
 * (StatusSync): the prober is the one writer of a probed workload's status once the lab
 * is up, so `weft lab waypoint stop|start` and `waypoint add` wait for its write rather
 * than write their own (two writers would undo each other's fresher verdicts).
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { isWeftError } from '../lib/errors';
import { createLogger, type Logger } from '../lib/log';
import { parse, parseOptions } from '../lib/options';
import { redisOptionSpecs, redisTarget } from '../lib/common-options';
import { waitForShutdownSignal } from '../lib/signals';
import { RegistryStore } from '../registry/store';
import type { WorkloadStatus } from '../registry/types';
import { formatHostPort } from '../lib/address';
import { PROBER_USER_AGENT } from './echo-behaviour';
import { defaultLabDir } from './paths';
import { Prober, WAYPOINT_PROBE, type CheckFn, type ProbeTarget } from './probe';
import { readState, type LabState } from './state';

export const proberSpecs = {
  node: { flag: 'node', default: '', description: 'the node whose pods are probed', parse: parse.string() },
  labDir: { flag: 'lab-dir', env: 'WEFT_LAB_DIR', default: '', defaultText: '<repo>/.weft-lab', description: 'the lab whose state file lists the pods', parse: parse.string() },
  // The registry as every component reaches it: one server, or the lab's Sentinels.
  ...redisOptionSpecs,
};

/** How often the state file is re-read and statuses reconciled with the registry. */
export const REFRESH_MS = 1000;

/** The node's probed pods and its waypoint pods (WAYPOINT_PROBE), from the state file. */
export function probeTargets(state: Pick<LabState, 'plan' | 'waypoints'>, node: string): ProbeTarget[] {
  const pods = state.plan.pods.filter((p) => p.node === node && p.readinessProbe)
    .map((p) => ({ uid: p.uid, address: p.ip, probe: p.readinessProbe! }));
  const waypoints = (state.waypoints ?? []).filter((w) => w.node === node)
    .map((w) => ({ uid: w.uid, address: w.ip, probe: WAYPOINT_PROBE }));
  return [...pods, ...waypoints];
}

/** HTTP GET (200-399 passes, as the kubelet's httpGet) or a TCP connect. */
export const realCheck: CheckFn = (address, check, timeoutMs) => new Promise((resolve) => {
  let settled = false;
  const done = (ok: boolean, detail: string) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    resolve({ ok, detail });
  };
  // Node runs due timers before it reads sockets: after a stall of the prober longer than
  // the timeout (a loaded machine), an answer already received would lose to the timer and
  // a healthy pod would count a failure. setImmediate lets pending I/O be read first.
  const timer = setTimeout(() => setImmediate(() => {
    if (settled) return;
    cleanup();
    done(false, `no answer within ${timeoutMs} ms`);
  }), timeoutMs);
  let cleanup = () => {};
  if (check.kind === 'tcp') {
    const sock = connect({ host: address, port: check.port });
    cleanup = () => sock.destroy();
    sock.once('connect', () => { sock.destroy(); done(true, 'connected'); });
    sock.once('error', (e: NodeJS.ErrnoException) => done(false, `tcp ${formatHostPort(address, check.port)}: ${e.code ?? e.message}`));
    return;
  }
  const url = `http://${formatHostPort(address, check.port)}${check.path}`;
  const req = request(url, { method: 'GET', agent: false, headers: { 'user-agent': PROBER_USER_AGENT } }, (res) => {
    res.resume();
    const code = res.statusCode ?? 0;
    done(code >= 200 && code < 400, `GET ${url}: HTTP ${code}`);
  });
  cleanup = () => req.destroy();
  req.once('error', (e: NodeJS.ErrnoException) => done(false, `GET ${url}: ${e.code ?? e.message}`));
  req.end();
});

/**
 * Sets a workload's status unless the record is gone (a waypoint removed meanwhile
 * must not come back) or already says so. The write names the revision it read, so a
 * concurrent writer's change is never overwritten with stale fields.
 */
export async function writeStatus(registry: RegistryStore, uid: string, status: WorkloadStatus): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const revision = await registry.revision();
    const record = await registry.get('workload', uid);
    if (!record || record.status === status) return false;
    try {
      await registry.apply([{ op: 'put', kind: 'workload', record: { ...record, status } }], { expectedRevision: revision });
      return true;
    } catch (err) {
      if (isWeftError(err) && err.code === 'WEFT_REGISTRY_CONFLICT') continue;
      throw err;
    }
  }
  return false;
}

/**
 * Makes the registry agree with the prober, one write at a time per workload. Called
 * after every check, so the registry follows a fresh result within one period whoever
 * wrote it last; calls made while a write is running only update what it ends on.
 */
export class StatusSync {
  private readonly desired = new Map<string, WorkloadStatus>();
  private readonly busy = new Set<string>();
  private failing = false;

  constructor(private readonly registry: RegistryStore, private readonly log: Logger) {}

  sync(uid: string, status: WorkloadStatus, why = ''): Promise<void> {
    this.desired.set(uid, status);
    if (this.busy.has(uid)) return Promise.resolve();
    this.busy.add(uid);
    return (async () => {
      try {
        for (;;) {
          const want = this.desired.get(uid);
          if (want === undefined) return;
          try {
            if (await writeStatus(this.registry, uid, want)) this.log.info({ workload: uid, status: want, why }, 'workload status written');
            if (this.failing) this.log.info('registry writable again');
            this.failing = false;
          } catch (err) {
            // Redis away: the next check retries; say so once, not every second.
            if (!this.failing) this.log.warn({ workload: uid, err: err instanceof Error ? err.message : String(err) }, 'cannot write workload status; retrying at the next check');
            this.failing = true;
            return;
          }
          if (this.desired.get(uid) === want) return;
        }
      } finally {
        this.busy.delete(uid);
      }
    })();
  }

  /** A target the prober no longer has: nothing more is written for it. */
  forget(uid: string): void {
    this.desired.delete(uid);
  }
}

export async function proberMain(argv: string[]): Promise<number> {
  const { values } = parseOptions(proberSpecs, argv);
  const log: Logger = createLogger({ level: 'info', component: 'lab-prober' }).child({ node: values.node });
  const labDir = values.labDir || defaultLabDir();
  const registry = RegistryStore.connect(redisTarget(values));
  const statuses = new StatusSync(registry, log);
  const reasons = new Map<string, string>();
  const prober = new Prober({
    check: realCheck,
    onResult: (uid, r) => log.info({ workload: uid, ok: r.ok, detail: r.detail }, 'probe result changed'),
    onChange: (c) => {
      log.info({ workload: c.uid, status: c.status, reason: c.reason }, 'readiness changed');
      reasons.set(c.uid, c.reason);
    },
    onCheck: (uid, status) => { void statuses.sync(uid, status, reasons.get(uid)); },
  });
  const refresh = () => {
    const state = readState(labDir);
    if (!state) return;
    const targets = probeTargets(state, values.node);
    prober.setTargets(targets);
    const kept = new Set(targets.map((x) => x.uid));
    for (const uid of [...reasons.keys()]) if (!kept.has(uid)) { reasons.delete(uid); statuses.forget(uid); }
  };
  refresh();
  log.info({ targets: prober.statuses().size }, 'prober running');
  const timer = setInterval(refresh, REFRESH_MS);
  await waitForShutdownSignal();
  clearInterval(timer);
  prober.stop();
  await registry.close();
  return 0;
}
