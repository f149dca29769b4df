/**
 * The lab for end-to-end tests. Every e2e file that needs the lab calls `startLab(t)`:
 *
 *   - takes the machine-wide lab lock first (src/lab/lock.ts): the lab's names are
 *     fixed, while tap runs test files in parallel and `npm run faults` may be running;
 *   - brings the lab up through the real CLI (`node dist/cli/main.js lab up`) in a lab
 *     dir shared by all e2e files (`<repo>/.weft-lab/e2e`), so a run that crashed is
 *     torn down by the next `up` from its state file;
 *   - registers `down` and the lock release in t.teardown, so they run on failure too.
 *
 * The context file goes to `<lab dir>/context.json`; pass `handle.env` to any `weft`
 * command under test so it finds the lab.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { TcpResult } from '../../../src/lab/client';
import type { LabContext } from '../../../src/lab/context';
import type { EchoAnswer } from '../../../src/lab/echo';
import { REPO_ROOT } from '../../../src/lab/paths';
import { REQUIRED_TOOLS } from '../../../src/lab/preflight';
import { assertDistFresh, assertNativeBuilt } from '../../helpers/built';
import { waitFor } from '../../helpers/wait';
import { acquireLabLock } from '../../../src/lab/lock';
import { runWeft, which, type RunResult } from '../../../src/lab/run';
import { readState, type LabState } from '../../../src/lab/state';

export const E2E_LAB_DIR = join(REPO_ROOT, '.weft-lab', 'e2e');

export type CliResult = RunResult;

/** Reason to skip lab tests on this machine, or false. */
export function labSkipReason(): string | false {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'the lab needs root';
  const missing = REQUIRED_TOOLS.filter((t) => !which(t.bin)).map((t) => t.bin);
  if (missing.length) return `the lab needs ${missing.join(', ')}`;
  return false;
}

/**
 * Fails loudly (not a skip) when dist is missing or stale, or the native helper is not
 * built: `npm test` builds both first; a bare `tap` run must too. Without the native
 * helper the ztunnels would quietly fall back to reading conntrack.
 */
export function assertBuilt(): void {
  assertDistFresh();
  assertNativeBuilt();
}

export interface LabHandle {
  labDir: string;
  contextFile: string;
  /** Environment pointing `weft` at this lab (WEFT_LAB_DIR, WEFT_CONTEXT). */
  env: NodeJS.ProcessEnv;
  /** The context file `up` wrote. */
  context: LabContext;
  /** stdout of `up` (progress lines). */
  upOutput: string;
  /** Runs `weft <args>` (the built CLI) with `env`. */
  weft(args: string[], input?: string): Promise<CliResult>;
  /** `weft lab exec <target> -- <cmd>`. */
  exec(target: string, cmd: string[]): Promise<CliResult>;
  /** HTTP GET from a pod via `weft lab request`; resolves with the echo app's answer. */
  request(pod: string, url: string): Promise<EchoAnswer>;
  /** Byte-exact TCP round trip from a pod via `weft lab tcp`. */
  tcp(pod: string, hostPort: string, bytes: number): Promise<TcpResult>;
  state(): LabState | undefined;
  /** `weft lab down`; throws if it fails. Also registered in teardown. */
  down(): Promise<CliResult>;
}

/** `env` adds to the environment of `lab up` (and so of the components it starts). */
export async function startLab(t: Test, opts: { topology?: string; env?: Record<string, string> } = {}): Promise<LabHandle> {
  assertBuilt();
  const asked = Date.now();
  const release = await acquireLabLock();
  const locked = Date.now();
  const labDir = E2E_LAB_DIR;
  const contextFile = join(labDir, 'context.json');
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, WEFT_LAB_DIR: labDir, WEFT_CONTEXT: contextFile };
  delete env.WEFT_LAB_TOPOLOGY;
  delete env.WEFT_LAB_REDIS_PORT;
  const weft = (args: string[], input?: string) => runWeft(args, env, input);
  const down = async () => {
    const res = await weft(['lab', 'down']);
    if (res.code !== 0) throw new Error(`lab down failed (${res.code}): ${res.stderr}${res.stdout}`);
    return res;
  };
  t.teardown(async () => {
    try {
      await down();
    } finally {
      release();
    }
  });
  const up = await weft(['lab', 'up', ...(opts.topology ? ['--topology', opts.topology] : [])]);
  if (up.code !== 0) throw new Error(`lab up failed (${up.code}):\n${up.stdout}\n${up.stderr}`);
  // Where a lab file's time goes: the lock wait is other lab users, not this file.
  t.comment(`lab lock after ${locked - asked} ms; lab up in ${Date.now() - locked} ms`);
  const context = JSON.parse(readFileSync(contextFile, 'utf8')) as LabContext;
  const exec = (target: string, cmd: string[]) => weft(['lab', 'exec', target, '--', ...cmd]);
  return {
    labDir, contextFile, env, context, upOutput: up.stdout, weft, exec, down,
    state: () => readState(labDir),
    async request(pod, url) {
      const res = await exec(pod, ['weft', 'lab', 'request', url]);
      if (res.code !== 0) throw new Error(`request ${url} from ${pod} failed (${res.code}): ${res.stderr}`);
      return JSON.parse(res.stdout) as EchoAnswer;
    },
    async tcp(pod, hostPort, bytes) {
      const res = await exec(pod, ['weft', 'lab', 'tcp', hostPort, '--bytes', String(bytes)]);
      if (res.code !== 0 && !res.stdout) throw new Error(`tcp ${hostPort} from ${pod} failed (${res.code}): ${res.stderr}${await accessLines(labDir, res.stderr)}`);
      return JSON.parse(res.stdout) as TcpResult;
    },
  };
}

/**
 * For a failed `weft lab tcp`: the ztunnels' log lines about its connection (the error
 * names the client's address, the access lines' src.addr), so a CI log says where it
 * stopped. A connection still waiting is logged when the ztunnel gives up on it, so
 * this waits a little for a line.
 */
async function accessLines(labDir: string, stderr: string): Promise<string> {
  const from = /round trip from (\S+) /.exec(stderr)?.[1];
  if (!from) return '';
  const needle = `"src.addr":"${from}"`;
  const logs = join(labDir, 'logs');
  let lines: string[] = [];
  let unreadable: Error | undefined;
  const read = (): boolean => {
    try {
      lines = readdirSync(logs).filter((f) => f.startsWith('ztunnel-'))
        .flatMap((f) => readFileSync(join(logs, f), 'utf8').split('\n').filter((l) => l.includes(needle)).map((l) => `${f}: ${l}`));
    } catch (err) {
      unreadable = err as Error;
    }
    return lines.length > 0 || unreadable !== undefined;
  };
  // No line within 3 s is an answer too (no ztunnel saw the connection end), not a failure of its own.
  await waitFor(`a ztunnel line for ${from}`, read, { timeoutMs: 3000, intervalMs: 100 }).catch(() => {});
  // The failure being explained matters more than why its logs could not be read.
  if (unreadable) return `\n(the ztunnels' logs in ${logs} could not be read: ${unreadable.message})`;
  return lines.length ? `\nthe ztunnels' lines for ${from}:\n${lines.join('\n')}` : `\nno ztunnel logged a line for ${from} within 3 s`;
}

/**
 * `weft namespace use-waypoint demo waypoint`, then demo/client's requests to echo.demo
 * until the waypoint (at `waypointIp`) counts one: the client's ztunnel has the binding.
 */
export async function bindDemoToWaypoint(lab: LabHandle, waypointIp: string): Promise<void> {
  const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint']);
  if (use.code !== 0) throw new Error(`weft namespace use-waypoint failed: ${use.stderr}`);
  for (let i = 0; i < 50; i++) {
    await lab.request('demo/client', 'http://echo.demo/');
    const m = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${waypointIp}:15020/metrics`]);
    if (m.code === 0 && /^istio_requests_total\{[^}]*destination_service_name="echo"/m.test(m.stdout)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('requests from demo/client to echo.demo did not reach demo/waypoint within 10 s of use-waypoint');
}
