/**
 * Checks before `up` creates anything: root, the tools, and that no name, address or
 * port the plan needs is taken by something the lab did not record. Reads /run/netns,
 * /sys/class/net and /proc/net/route directly: no process spawns, so the checks cost
 * microseconds. The lab never removes what it did not make, so a conflict is reported
 * with what to do, never "fixed".
 */
import { labRedisPorts } from './redis';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { WeftError } from '../lib/errors';
import { readFileIfAny } from '../lib/files';
import { procCommandLine } from '../lib/proc';
import { LAB_NET, type LabPlan } from './plan';
import { LAB_RECORD_FILE, readState, recordedLabDir } from './state';
import { tcpReady } from './procs';
import { which } from './run';
import { ipv4Number } from '../lib/address';

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

function formatRoute(r: Route): string {
  const ip = [24, 16, 8, 0].map((s) => (r.dest >>> s) & 0xff).join('.');
  const bits = r.mask === 0 ? 0 : 32 - Math.log2((~r.mask >>> 0) + 1);
  return `${ip}/${bits} dev ${r.iface}`;
}

/** Routes (other than the default) that overlap 198.18.0.0/15, where the lab lives. */
export function overlappingRoutes(routes: Route[]): Route[] {
  const lab = { dest: ipv4Number('198.18.0.0')!, mask: 0xfffe0000 };
  return routes.filter((r) => {
    if (r.mask === 0) return false;
    const common = (r.mask & lab.mask) >>> 0;
    return ((r.dest & common) >>> 0) === ((lab.dest & common) >>> 0);
  });
}

/** A listening TCP socket of the root namespace, from /proc/net/tcp or tcp6. */
export interface Listener {
  address: string;
  port: number;
  inode: string;
}

function hexToIp6(hex: string): string {
  // Four 32-bit words, each in host (little-endian) byte order.
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  const full = groups.join(':');
  if (full === '0:0:0:0:0:0:0:0') return '::';
  if (full.startsWith('0:0:0:0:0:ffff:')) return `::ffff:${bytes.slice(12).join('.')}`;
  return full;
}

/** Sockets in state LISTEN (0A) of /proc/net/tcp (family 4) or /proc/net/tcp6 (family 6). */
export function parseProcNetTcp(text: string, family: 4 | 6): Listener[] {
  return text.split('\n').slice(1).filter((l) => l.trim()).flatMap((l) => {
    const f = l.trim().split(/\s+/);
    if (f[3] !== '0A') return [];
    const [addrHex, portHex] = f[1]!.split(':');
    const ipInt = family === 4 ? hexToIp(addrHex!) : 0;
    const address = family === 4 ? [24, 16, 8, 0].map((s) => (ipInt >>> s) & 0xff).join('.') : hexToIp6(addrHex!);
    return [{ address, port: parseInt(portHex!, 16), inode: f[9]! }];
  });
}

/** The lab's ports in the root namespace and the addresses it binds them on. */
export function labRootPorts(plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): { port: number; what: string; addresses: string[] }[] {
  return [
    ...labRedisPorts(plan).map((port) => ({
      port, what: `the lab's Redis port${port === plan.redisPort ? '' : ' (a replica or Sentinel of --redis-sentinel)'}; change redisPort in the topology or pass --redis-port`,
      addresses: [LAB_NET.gateway, '127.0.0.1'],
    })),
    { port: LAB_NET.caPort, what: "the lab CA's port", addresses: [LAB_NET.gateway] },
    { port: LAB_NET.caMetricsPort, what: "the lab CA's metrics and readiness port", addresses: [LAB_NET.gateway] },
  ];
}

/**
 * Listeners that would make a lab component's bind fail with EADDRINUSE: on a port the
 * lab needs, at the wildcard (0.0.0.0 or ::, which covers the bridge address too) or
 * at an address the lab binds.
 */
export function conflictingListeners(listeners: readonly Listener[], plan: Pick<LabPlan, 'redisPort' | 'redisHa'>): { listener: Listener; what: string }[] {
  const wanted = labRootPorts(plan);
  return listeners.flatMap((l) => {
    const need = wanted.find((w) => w.port === l.port);
    if (!need) return [];
    const wildcard = l.address === '0.0.0.0' || l.address === '::';
    const mapped = l.address.replace(/^::ffff:/, '');
    return wildcard || need.addresses.includes(mapped) ? [{ listener: l, what: need.what }] : [];
  });
}

/**
 * Which process holds a socket inode: pid and command line, read from /proc (only
 * when a conflict was found: it walks every process's fds). Undefined when the holder
 * cannot be seen (another PID namespace, or it exited meanwhile).
 */
export function socketHolder(inode: string, proc = '/proc'): { pid: number; command: string } | undefined {
  const target = `socket:[${inode}]`;
  for (const pid of listDir(proc).filter((d) => /^\d+$/.test(d))) {
    for (const fd of listDir(`${proc}/${pid}/fd`)) {
      let link: string;
      try { link = readlinkSync(`${proc}/${pid}/fd/${fd}`); } catch { continue; }
      if (link !== target) continue;
      return { pid: Number(pid), command: procCommandLine(Number(pid), 160, proc) ?? '?' };
    }
  }
  return undefined;
}

function readListeners(): Listener[] {
  const out: Listener[] = [];
  for (const [file, family] of [['/proc/net/tcp', 4], ['/proc/net/tcp6', 6]] as const) {
    // No IPv6, or no procfs: nothing listens there.
    out.push(...parseProcNetTcp(readFileIfAny(file) ?? '', family));
  }
  return out;
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
  // No /proc/net/route: nothing to compare.
  for (const r of overlappingRoutes(parseProcRoutes(readFileIfAny('/proc/net/route') ?? ''))) {
    conflicts.push(`route ${formatRoute(r)} overlaps the lab's 198.18.0.0/15`);
  }
  const held = conflictingListeners(readListeners(), plan);
  for (const { listener: l, what } of held) {
    const holder = socketHolder(l.inode);
    const who = holder ? `pid ${holder.pid} (${holder.command})` : 'a process this check cannot see (another PID namespace?)';
    conflicts.push(`${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port} is held by ${who}: ${what}; stop that process`);
  }
  if (!held.some((h) => h.listener.port === plan.redisPort) && await tcpReady('127.0.0.1', plan.redisPort, 300)) {
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
  return readFileIfAny('/proc/sys/net/bridge/bridge-nf-call-iptables')?.trim() === '1';
}
