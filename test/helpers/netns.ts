/**
 * Throwaway network topologies for tests that need real network namespaces (root).
 *
 * Everything created is named with a `weft` prefix plus a random id, recorded, and
 * removed by `teardown()` — registered with the tap test when one is given, and again
 * best-effort at process exit, so a crashed test leaves nothing behind. Only names this
 * topology created are ever deleted; only processes it started are ever killed (by PID).
 *
 * Typical use:
 *   const topo = await createTopology(t);
 *   const node = await topo.addNetns('node');
 *   const pod = await topo.addPod(node, { ip: '198.51.100.10' });
 *   const srv = topo.startNode(node, { script: '...' });
 *   await srv.waitForLine(/listening/);
 *   const { stdout } = await topo.exec(pod.netns, 'node', ['-e', '...']);
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { loadSendBufferHelper, raiseSendBuffer } from '../../src/hbone/send-buffer';
import { pathToFileURL } from 'node:url';
import { ExecCommandRunner, type RunOptions, type RunResult } from '../../src/iptables/runner';

const runner = new ExecCommandRunner();

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Why SO_SNDBUFFORCE (src/hbone/send-buffer.ts) cannot be tested here, or undefined when
 * it can: decided by trying on a loopback socket, since a user-namespaced root has
 * CAP_NET_ADMIN in CapEff and still gets EPERM. A missing helper is not a reason: npm
 * run build compiles it, and the tests must fail without it.
 */
export async function sendBufferForceRefused(): Promise<string | undefined> {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  try {
    await once(sock, 'connect');
    const out = raiseSendBuffer(sock, 65_536, loadSendBufferHelper() ?? null);
    return !out.applied && out.reason === 'not_permitted' ? 'SO_SNDBUFFORCE is not permitted here (needs CAP_NET_ADMIN in the initial user namespace)' : undefined;
  } finally {
    sock.destroy();
    server.close();
  }
}

/** Reason to skip a namespaced test, or false when it can run. */
export function netnsSkipReason(): string | false {
  if (!isRoot()) return 'needs root to create network namespaces';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 (ip)';
  }
  return false;
}

export function randomId(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

/** Runs a command inside `netns` (or in the current netns when undefined). Throws WEFT_COMMAND_FAILED on failure unless check: false. */
export function execIn(netns: string | undefined, cmd: string, args: readonly string[], opts: Omit<RunOptions, 'netns'> = {}): Promise<RunResult> {
  return runner.run(cmd, args, { ...opts, netns });
}

export interface StartNodeOptions {
  /** JavaScript/TypeScript source passed to `node -e`. */
  script?: string;
  /** Or a file to run. */
  file?: string;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Give the process a stdin pipe, written with `send()`. Default: no stdin. */
  stdin?: boolean;
  /**
   * Load TypeScript (default true): the child gets the same `--import` loader as this
   * test process, so `require('/abs/path/src/x.ts')` works in scripts.
   */
  typescript?: boolean;
}

/** A Node process running in a netns; its output is collected line by line. */
export interface NodeProcess {
  /** PID of the node process itself (`ip netns exec` execs into it). */
  readonly pid: number;
  readonly child: ChildProcess;
  /** Complete stdout lines so far. */
  readonly lines: readonly string[];
  /** stderr so far, for failure messages. */
  stderr(): string;
  /** Writes to the process's stdin (needs `stdin: true`). */
  send(text: string): void;
  /** Resolves with the first stdout line (past or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after 2 s; resolves once it exited. */
  kill(): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function typescriptLoaderArgs(): string[] {
  const fromParent = process.execArgv.filter((a) => a.includes('@tapjs/typescript') || a.includes('ts-node'));
  if (fromParent.length) return fromParent;
  return [`--import=${pathToFileURL(require.resolve('@tapjs/typescript/import')).href}`];
}

export function startNodeIn(netns: string | undefined, opts: StartNodeOptions): NodeProcess {
  if ((opts.script === undefined) === (opts.file === undefined)) throw new Error('startNodeIn: give exactly one of script or file');
  const nodeArgs = [
    ...(opts.typescript === false ? [] : typescriptLoaderArgs()),
    ...(opts.script !== undefined ? ['-e', opts.script] : [opts.file!]),
    ...(opts.args ?? []),
  ];
  const [file, argv] = netns
    ? ['ip', ['netns', 'exec', netns, process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  const child = spawn(file, argv, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  child.stdin?.on('error', () => {}); // the process may exit before reading
  const lines: string[] = [];
  let partial = '';
  let err = '';
  const watchers = new Set<(line: string) => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      for (const w of watchers) w(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { err += chunk; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let done = false;
  void exited.then(() => { done = true; });

  return {
    pid: child.pid!,
    child,
    lines,
    stderr: () => err,
    send(text) {
      if (!child.stdin) throw new Error('startNodeIn: started without stdin: true');
      child.stdin.write(text);
    },
    exited,
    waitForLine(re, timeoutMs = 15_000) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const cleanup = () => { watchers.delete(watch); clearTimeout(timer); };
        const watch = (line: string) => { if (re.test(line)) { cleanup(); resolve(line); } };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr: ${err}`)); }, timeoutMs);
        watchers.add(watch);
        void exited.then(({ code, signal }) => {
          if (!watchers.has(watch)) return;
          cleanup();
          reject(new Error(`process exited (code ${code}, signal ${signal}) before printing ${re}; stderr: ${err}`));
        });
      });
    },
    async kill() {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => { if (!done) child.kill('SIGKILL'); }, 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface PodOptions {
  /** Pod IPv4 address, put on the pod's eth0 as /32. */
  ip: string;
  /** Label in the netns name; default `pod`. */
  label?: string;
  /** Node-side link-local address on the host veth (Calico's layout). Default 169.254.1.1. */
  gateway?: string;
}

export interface Pod {
  netns: string;
  ip: string;
  /** Host-side veth, in the node netns. */
  hostIf: string;
  /** Pod-side interface, always eth0. */
  podIf: string;
}

/** Anything with tap's `teardown(fn)`. */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
}

const live = new Set<Topology>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort after a crash: synchronous, because nothing async runs at exit.
  process.once('exit', () => {
    for (const topo of live) topo.teardownSync();
  });
}

export class Topology {
  /** Random part of every name this topology creates. */
  readonly id = randomId();
  private readonly namespaces: string[] = [];
  /** Interfaces created in the current (root) netns; netns deletion takes the others. */
  private readonly rootLinks: string[] = [];
  private readonly processes = new Set<NodeProcess>();
  private ifCounter = 0;

  constructor() {
    live.add(this);
    installExitHook();
  }

  /** A fresh interface name (≤ 15 chars, the kernel's limit): weft<id><n>. */
  ifName(suffix = ''): string {
    const name = `weft${this.id}${this.ifCounter++}${suffix}`;
    if (name.length > 15) throw new Error(`interface name ${name} too long`);
    return name;
  }

  /** Creates netns `weft-<label>-<id>` with loopback up. */
  async addNetns(label: string): Promise<string> {
    const name = `weft-${label}-${this.id}`;
    await execIn(undefined, 'ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await execIn(name, 'ip', ['link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair; each end moved into its netns (undefined = current netns) and set up. */
  async addVeth(a: { netns?: string; name?: string }, b: { netns?: string; name?: string }): Promise<{ a: string; b: string }> {
    const aName = a.name ?? this.ifName('a');
    const bName = b.name ?? this.ifName('b');
    const args = ['link', 'add', aName];
    if (a.netns) args.push('netns', a.netns);
    args.push('type', 'veth', 'peer', 'name', bName);
    if (b.netns) args.push('netns', b.netns);
    await execIn(undefined, 'ip', args);
    if (!a.netns) this.rootLinks.push(aName);
    if (!b.netns) this.rootLinks.push(bName);
    await execIn(a.netns, 'ip', ['link', 'set', aName, 'up']);
    await execIn(b.netns, 'ip', ['link', 'set', bName, 'up']);
    return { a: aName, b: bName };
  }

  addAddress(netns: string | undefined, dev: string, cidr: string): Promise<RunResult> {
    return execIn(netns, 'ip', ['addr', 'add', cidr, 'dev', dev]);
  }

  /** `ip route add <args>` in netns. */
  addRoute(netns: string | undefined, args: readonly string[]): Promise<RunResult> {
    return execIn(netns, 'ip', ['route', 'add', ...args]);
  }

  sysctl(netns: string, key: string, value: string | number): Promise<RunResult> {
    return execIn(netns, 'sysctl', ['-qw', `${key}=${value}`]);
  }

  /**
   * A pod the way the lab wires one: its own netns, a veth to the node netns, the pod
   * IP as /32 on eth0 with a default route via a link-local gateway, and on the node
   * side the gateway address on the host veth plus a /32 route to the pod.
   */
  async addPod(nodeNetns: string, opts: PodOptions): Promise<Pod> {
    const gateway = opts.gateway ?? '169.254.1.1';
    const netns = await this.addNetns(opts.label ?? 'pod');
    const { a: hostIf } = await this.addVeth({ netns: nodeNetns }, { netns, name: 'eth0' });
    await this.addAddress(netns, 'eth0', `${opts.ip}/32`);
    await this.addRoute(netns, [gateway, 'dev', 'eth0']);
    await this.addRoute(netns, ['default', 'via', gateway, 'dev', 'eth0']);
    await this.addAddress(nodeNetns, hostIf, `${gateway}/32`);
    await this.addRoute(nodeNetns, [`${opts.ip}/32`, 'dev', hostIf]);
    return { netns, ip: opts.ip, hostIf, podIf: 'eth0' };
  }

  exec(netns: string | undefined, cmd: string, args: readonly string[], opts: Omit<RunOptions, 'netns'> = {}): Promise<RunResult> {
    return execIn(netns, cmd, args, opts);
  }

  /** Starts a Node process in netns; killed on teardown. */
  startNode(netns: string | undefined, opts: StartNodeOptions): NodeProcess {
    const proc = startNodeIn(netns, opts);
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
    return proc;
  }

  /** Kills started processes, deletes created namespaces and root-netns links. Idempotent. */
  async teardown(): Promise<void> {
    await Promise.all([...this.processes].map((p) => p.kill()));
    for (const link of this.rootLinks.splice(0)) await execIn(undefined, 'ip', ['link', 'del', link], { check: false });
    for (const ns of this.namespaces.splice(0).reverse()) await execIn(undefined, 'ip', ['netns', 'del', ns], { check: false });
    live.delete(this);
  }

  /** Synchronous variant for process exit. */
  teardownSync(): void {
    for (const p of this.processes) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    for (const link of this.rootLinks.splice(0)) {
      try { execFileSync('ip', ['link', 'del', link], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    for (const ns of this.namespaces.splice(0).reverse()) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    live.delete(this);
  }
}

/** A new topology whose teardown is registered with `t` (if given). */
export async function createTopology(t?: TeardownHost): Promise<Topology> {
  const topo = new Topology();
  t?.teardown(() => topo.teardown());
  return topo;
}
