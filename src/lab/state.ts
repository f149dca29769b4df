/**
 * The lab's memory of what it created. Every resource is recorded here BEFORE it is
 * created (processes: their PID right after spawn), so `down` after any crash removes
 * exactly what a previous run made: never a namespace, link or process it did not
 * record, even if it carries a weft name.
 *
 * The file is replaced atomically (write + rename) on every change: a crash leaves the
 * previous complete version, never a torn one.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../lib/errors';
import { readFileIfAny, readOptionalJson, writeFileAtomic } from '../lib/files';
import type { LabPlan, PlannedWaypoint } from './plan';

export type ProcessRole = 'redis' | 'ca' | 'ztunnel' | 'app' | 'waypoint' | 'prober';

export interface ProcessResource {
  type: 'process';
  /** Unique within the lab: `redis`, `ca`, `ztunnel/node-1`, `app/demo/echo-1`. */
  name: string;
  role: ProcessRole;
  /** Network namespace it runs in; absent for the root namespace. */
  netns?: string;
  argv: string[];
  log: string;
  pid?: number;
  /** /proc/<pid>/stat start time: tells our process from a later one reusing the PID. */
  startTime?: string;
}

export type Resource =
  | { type: 'netns'; name: string }
  /** A link in the root namespace. */
  | { type: 'link'; name: string }
  /** A root-namespace route spec for `ip route del`. */
  | { type: 'route'; spec: string }
  /** /etc/netns/<name>, bind-mounted over /etc by `ip netns exec`. */
  | { type: 'etc-netns'; name: string }
  /**
   * A chain and the built-in chain that jumps to it; in the root namespace unless
   * `netns` is set (then it goes with that namespace).
   */
  | { type: 'iptables-chain'; table: string; chain: string; hook: string; netns?: string }
  /** A directory the lab created (e.g. /etc/netns); removed only if empty. */
  | { type: 'dir'; path: string }
  | ProcessResource
  | { type: 'context'; path: string };

export type LabPhase = 'starting' | 'up';

export interface LabState {
  version: 1;
  labDir: string;
  repo: string;
  topologyFile: string;
  startedAt: string;
  phase: LabPhase;
  /** Milliseconds `up` took, once up. */
  upMs?: number;
  /** Whether ztunnels were started (false until `weft ztunnel` exists). */
  ztunnels?: boolean;
  caRootFile?: string;
  plan: LabPlan;
  /**
   * Waypoint pods the lab runs now (the topology's and those `weft waypoint add` made),
   * recorded before they are created; `weft waypoint remove` drops one again.
   */
  waypoints?: PlannedWaypoint[];
  resources: Resource[];
}

export function stateFile(labDir: string): string {
  return join(labDir, 'state.json');
}

/**
 * Which lab directory's lab is up on this machine. The lab's names are fixed, so a lab
 * left up from another directory (a killed run in another checkout) blocks every `up`;
 * this lets the conflict name that directory instead of "another lab directory". In
 * /run, so it goes with a reboot, as the namespaces do.
 */
export const LAB_RECORD_FILE = '/run/weft-lab.dir';

export function recordLabDir(labDir: string, file = LAB_RECORD_FILE): void {
  writeFileAtomic(file, `${labDir}\n`, 0o644);
}

/** Forgets the record only when it names this directory (another lab may have taken over). */
export function forgetLabDir(labDir: string, file = LAB_RECORD_FILE): void {
  if (recordedLabDir(file) === labDir) rmSync(file, { force: true });
}

export function recordedLabDir(file = LAB_RECORD_FILE): string | undefined {
  return readFileIfAny(file)?.trim() || undefined;
}

export function readState(labDir: string): LabState | undefined {
  const file = stateFile(labDir);
  return readOptionalJson(file, (value) => {
    const state = value as LabState;
    if (state?.version !== 1 || !Array.isArray(state.resources)) throw new Error('unknown format');
    return state;
  }, (why, cause) => new WeftError('WEFT_CONFIG_INVALID',
    `invalid lab state file ${file} (${why}); remove the lab's resources by hand (ip netns, ip link weft-*) and delete the file`,
    { cause, details: { file } }));
}

/** The recorded lab, or the refusal every lab command gives when there is none. */
export function requireState(labDir: string): LabState {
  const state = readState(labDir);
  if (!state) throw new WeftError('WEFT_LAB_NOT_RUNNING', `no lab is recorded in ${labDir}; start it with scripts/lab up (or npm run lab)`);
  return state;
}

/** Holds the state in memory and persists every change before the caller acts on it. */
export class StateStore {
  private constructor(readonly labDir: string, private state: LabState) {}

  static create(initial: Omit<LabState, 'version' | 'resources' | 'phase'>): StateStore {
    const store = new StateStore(initial.labDir, { version: 1, phase: 'starting', resources: [], ...initial });
    store.save();
    return store;
  }

  static open(state: LabState): StateStore {
    return new StateStore(state.labDir, state);
  }

  get current(): Readonly<LabState> {
    return this.state;
  }

  /** Records resources about to be created; returns once they are on disk. */
  record(...resources: Resource[]): void {
    this.state.resources.push(...resources);
    this.save();
  }

  /** Fills in a recorded process's PID (call right after spawn). */
  setPid(name: string, pid: number, startTime: string | undefined): void {
    const p = this.state.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === name);
    if (!p) throw new Error(`process ${name} was not recorded`);
    p.pid = pid;
    if (startTime !== undefined) p.startTime = startTime;
    this.save();
  }

  /** Records a waypoint pod about to be created (its resources are recorded apart). */
  addWaypoint(w: PlannedWaypoint): void {
    this.state.waypoints = [...(this.state.waypoints ?? []).filter((x) => x.uid !== w.uid), w];
    this.save();
  }

  /** Forgets a waypoint pod whose resources are gone. */
  removeWaypoint(uid: string): void {
    this.state.waypoints = (this.state.waypoints ?? []).filter((x) => x.uid !== uid);
    this.save();
  }

  update(patch: Partial<Pick<LabState, 'phase' | 'upMs' | 'ztunnels' | 'caRootFile'>>): void {
    Object.assign(this.state, patch);
    this.save();
  }

  /** Drops resources that are gone, keeping those that failed to go (for the next `down`). */
  retain(keep: (r: Resource) => boolean): void {
    this.state.resources = this.state.resources.filter(keep);
    this.save();
  }

  remove(): void {
    rmSync(stateFile(this.labDir), { force: true });
  }

  private save(): void {
    const file = stateFile(this.labDir);
    writeFileAtomic(file, JSON.stringify(this.state, null, 2) + '\n', 0o600);
  }
}
