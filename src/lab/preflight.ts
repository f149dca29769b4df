/**
 * Checks before `up` creates anything: root, the tools, and that no name, address or
 * port the plan needs is taken by something the lab did not record. Reads /run/netns,
 * /sys/class/net and /proc/net/route directly: no process spawns, so the checks cost
 * microseconds. The lab never removes what it did not make, so a conflict is reported
 * with what to do, never "fixed".
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { WeftError } from '../lib/errors';
import { LAB_NET, type LabPlan } from './plan';
import { LAB_RECORD_FILE, readState, recordedLabDir } from './state';
import { tcpReady } from './procs';
import { which } from './run';

/** Tools `up` needs, with the Debian package that provides each. */
export const REQUIRED_TOOLS: readonly { bin: string; pkg: string }[] = [
  { bin: 'ip', pkg: 'iproute2' },
  { bin: 'iptables-restore', pkg: 'iptables' },
  { bin: 'iptables-save', pkg: 'iptables' },
  { bin: 'redis-server', pkg: 'redis-server' },
];

export function checkRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new WeftError('WEFT_LAB_NOT_ROOT',
      'the lab creates network namespaces, links and iptables rules, which needs root; run it as root (e.g. sudo scripts/lab up)');
  }
}

export function checkTools(): void {
  const missing = REQUIRED_TOOLS.filter((t) => !which(t.bin));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => t.pkg))];
    throw new WeftError('WEFT_COMMAND_FAILED',
      `the lab needs ${missing.map((t) => t.bin).join(', ')}, not found on PATH; install them (apt-get install -y ${pkgs.join(' ')}) or run npm run lab, which does`,
      { details: { missing: missing.map((t) => t.bin) } });
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

interface Route {
  iface: string;
  dest: number;
  mask: number;
}

function hexToIp(hex: string): number {
  // /proc/net/route prints addresses in host (little-endian) byte order.
  const n = parseInt(hex, 16) >>> 0;
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | ((n >>> 24) & 0xff)) >>> 0;
}

export function parseProcRoutes(text: string): Route[] {
  return text.split('\n').slice(1).filter((l) => l.trim()).map((l) => {
    const f = l.trim().split(/\s+/);
    return { iface: f[0]!, dest: hexToIp(f[1]!), mask: hexToIp(f[7]!) };
  });
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

function formatRoute(r: Route): string {
  const ip = [24, 16, 8, 0].map((s) => (r.dest >>> s) & 0xff).join('.');
  const bits = r.mask === 0 ? 0 : 32 - Math.log2((~r.mask >>> 0) + 1);
  return `${ip}/${bits} dev ${r.iface}`;
}

/** Routes (other than the default) that overlap 198.18.0.0/15, where the lab lives. */
export function overlappingRoutes(routes: Route[]): Route[] {
  const lab = { dest: ipToInt('198.18.0.0'), mask: 0xfffe0000 };
  return routes.filter((r) => {
    if (r.mask === 0) return false;
    const common = (r.mask & lab.mask) >>> 0;
    return ((r.dest & common) >>> 0) === ((lab.dest & common) >>> 0);
  });
}

/** Everything the plan needs that something else already holds. */
export async function findConflicts(plan: LabPlan): Promise<string[]> {
  const conflicts: string[] = [];
  const netns = new Set(listDir('/run/netns'));
  for (const name of [...plan.nodes.map((n) => n.netns), ...plan.pods.map((p) => p.netns)]) {
    if (netns.has(name)) conflicts.push(`network namespace ${name} exists`);
    if (existsSync(`/etc/netns/${name}`)) conflicts.push(`/etc/netns/${name} exists`);
  }
  const links = new Set(listDir('/sys/class/net'));
  for (const name of [LAB_NET.bridge, ...plan.nodes.map((n) => n.hostLink)]) {
    if (links.has(name)) conflicts.push(`link ${name} exists`);
  }
  try {
    for (const r of overlappingRoutes(parseProcRoutes(readFileSync('/proc/net/route', 'utf8')))) {
      conflicts.push(`route ${formatRoute(r)} overlaps the lab's 198.18.0.0/15`);
    }
  } catch { /* no /proc/net/route: nothing to compare */ }
  if (await tcpReady('127.0.0.1', plan.redisPort, 300)) {
    conflicts.push(`something already listens on 127.0.0.1:${plan.redisPort} (the lab's Redis port; change redisPort in the topology or --redis-port)`);
  }
  return conflicts;
}

export function conflictError(conflicts: string[], labDir: string, recordFile = LAB_RECORD_FILE): WeftError {
  const other = recordedLabDir(recordFile);
  const remedy = other && other !== labDir && readState(other)
    ? `the lab recorded in ${other} is up (or was left by a run that was killed): run \`WEFT_LAB_DIR=${other} scripts/lab down\`, or wait for its owner to finish`
    : 'remove them yourself, or if another lab directory made them, run `WEFT_LAB_DIR=<that dir> scripts/lab down`';
  return new WeftError('WEFT_LAB_CONFLICT',
    `the lab cannot start: ${conflicts.join('; ')}. The lab in ${labDir} did not record these, so it will not touch them: ${remedy}`,
    { details: { conflicts, ...(other && other !== labDir ? { recordedLabDir: other } : {}) } });
}

/** True when bridged frames traverse the root namespace's iptables (br_netfilter). */
export function bridgeNetfilterOn(): boolean {
  try {
    return readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
