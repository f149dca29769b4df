/**
 * `weft lab status`: what the state file says, checked against the machine: does each
 * namespace exist, is each recorded process alive (same PID and start time), does
 * each component answer (Redis port, CA port, ztunnel readiness, echo port).
 */
import { existsSync } from 'node:fs';
import { LAB_NET, type LabPlan, type PlannedWaypoint } from './plan';
import { httpStatus, isAlive, tcpReady } from './procs';
import { requireState, type ProcessResource } from './state';
import { waypointReadyUrl } from './waypoint-pod';

export interface ProcessStatus {
  name: string;
  pid?: number;
  alive: boolean;
  /** The component answers on its port (readiness for ztunnels). */
  ready: boolean;
  log: string;
}

export interface LabStatus {
  labDir: string;
  phase: string;
  startedAt: string;
  upMs?: number;
  ztunnels: boolean;
  redisUrl: string;
  nodes: { name: string; address: string; netns: string; netnsExists: boolean; podCidr: string }[];
  pods: { uid: string; node: string; ip: string; netns: string; netnsExists: boolean; serviceAccount: string; run: string }[];
  services: { name: string; namespace: string; vip: string; ports: string; endpoints: string[] }[];
  processes: ProcessStatus[];
  /** Up, every namespace present, every process alive and ready. */
  healthy: boolean;
}

async function readiness(p: ProcessResource, plan: LabPlan, waypoints: readonly PlannedWaypoint[]): Promise<boolean> {
  if (!isAlive(p)) return false;
  switch (p.role) {
    // The primary, a replica or a Sentinel: each listens on its own --port.
    case 'redis': return tcpReady('127.0.0.1', Number(p.argv[p.argv.indexOf('--port') + 1]) || plan.redisPort);
    case 'ca': return (await httpStatus(`http://${LAB_NET.gateway}:${LAB_NET.caMetricsPort}/healthz/ready`)) === 200;
    case 'ztunnel': {
      const node = plan.nodes.find((n) => n.netns === p.netns);
      return node !== undefined && (await httpStatus(`http://${node.address}:${LAB_NET.readinessPort}/healthz/ready`)) === 200;
    }
    case 'app': {
      const pod = plan.pods.find((x) => x.netns === p.netns);
      return pod !== undefined && tcpReady(pod.ip, LAB_NET.echoHttpPort);
    }
    case 'waypoint': {
      const w = waypoints.find((x) => x.netns === p.netns);
      return w !== undefined && (await httpStatus(waypointReadyUrl(w))) === 200;
    }
    default: return true;
  }
}

export async function labStatus(labDir: string): Promise<LabStatus> {
  const state = requireState(labDir);
  const { plan } = state;
  const procs = state.resources.filter((r): r is ProcessResource => r.type === 'process');
  const processes = await Promise.all(procs.map(async (p): Promise<ProcessStatus> => {
    const alive = isAlive(p);
    const ready = alive && (await readiness(p, plan, state.waypoints ?? []));
    const out: ProcessStatus = { name: p.name, alive, ready, log: p.log };
    if (p.pid !== undefined) out.pid = p.pid;
    return out;
  }));
  const nodes = plan.nodes.map((n) => ({ name: n.name, address: n.address, netns: n.netns, netnsExists: existsSync(`/run/netns/${n.netns}`), podCidr: n.podCidr }));
  // Waypoint pods are pods too (run: waypoint); their process is waypoint/<uid>.
  const pods = [...plan.pods, ...(state.waypoints ?? []).map((w) => ({ ...w, run: 'waypoint' }))].map((p) => ({
    uid: p.uid, node: p.node, ip: p.ip, netns: p.netns, netnsExists: existsSync(`/run/netns/${p.netns}`), serviceAccount: p.serviceAccount, run: p.run,
  }));
  const services = plan.services.map((s) => ({
    name: s.name, namespace: s.namespace, vip: s.vip,
    ports: s.ports.map((p) => `${p.port}->${p.targetPort}`).join(','),
    endpoints: s.endpoints.map((e) => e.uid),
  }));
  const status: LabStatus = {
    labDir, phase: state.phase, startedAt: state.startedAt, ztunnels: Boolean(state.ztunnels),
    redisUrl: `redis://127.0.0.1:${plan.redisPort}`,
    nodes, pods, services, processes,
    healthy: state.phase === 'up' && nodes.every((n) => n.netnsExists) && pods.every((p) => p.netnsExists) && processes.every((p) => p.alive && p.ready),
  };
  if (state.upMs !== undefined) status.upMs = state.upMs;
  return status;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd()).join('\n');
}

const yesNo = (b: boolean) => (b ? 'yes' : 'NO');

export function formatStatus(s: LabStatus): string {
  const head = `lab ${s.phase === 'up' ? 'up' : `${s.phase} (incomplete: run scripts/lab down, then up)`} since ${s.startedAt}`
    + `${s.upMs !== undefined ? ` (came up in ${(s.upMs / 1000).toFixed(2)}s)` : ''}; ${s.healthy ? 'healthy' : 'DEGRADED'}; dir ${s.labDir}`;
  const procByName = new Map(s.processes.map((p) => [p.name, p]));
  const nodeRows = [['NODE', 'ADDRESS', 'POD CIDR', 'NETNS', 'ZTUNNEL']];
  for (const n of s.nodes) {
    const z = procByName.get(`ztunnel/${n.name}`);
    nodeRows.push([n.name, n.address, n.podCidr, `${n.netns}${n.netnsExists ? '' : ' (MISSING)'}`,
      z ? `${z.alive ? `pid ${z.pid}` : 'DEAD'}${z.alive ? (z.ready ? ', ready' : ', NOT READY') : ''}` : s.ztunnels ? 'MISSING' : 'not started']);
  }
  const podRows = [['POD', 'NODE', 'IP', 'SERVICE ACCOUNT', 'APP']];
  for (const p of s.pods) {
    const a = procByName.get(`${p.run === 'waypoint' ? 'waypoint' : 'app'}/${p.uid}`);
    podRows.push([p.uid, p.node, p.ip, p.serviceAccount,
      `${p.netnsExists ? '' : 'NETNS MISSING, '}${p.run === 'none' ? '-' : a ? `${p.run} ${a.alive ? `pid ${a.pid}` : 'DEAD'}${a.alive && !a.ready ? ' NOT LISTENING' : ''}` : `${p.run} MISSING`}`]);
  }
  const svcRows = [['SERVICE', 'VIP', 'PORTS', 'ENDPOINTS']];
  for (const v of s.services) svcRows.push([`${v.namespace}/${v.name}`, v.vip, v.ports, v.endpoints.join(',') || '-']);
  const procRows = [['PROCESS', 'PID', 'ALIVE', 'READY', 'LOG']];
  for (const p of s.processes) procRows.push([p.name, String(p.pid ?? '-'), yesNo(p.alive), yesNo(p.ready), p.log]);
  return [head, '', table(nodeRows), '', table(podRows), '', table(svcRows), '', table(procRows)].join('\n');
}
