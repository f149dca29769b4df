/**
 * Runs external commands (ip, iptables-restore, sh) for the lab. Every failure becomes
 * WEFT_COMMAND_FAILED carrying the command and its stderr, because "exit status 2"
 * alone never tells a user which package or state is missing.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { WeftError } from '../lib/errors';
import { DIST } from './paths';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the command's stdin (then closed). */
  input?: string;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  env?: NodeJS.ProcessEnv;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', (e) => reject(new WeftError('WEFT_COMMAND_FAILED',
      `cannot run ${cmd}: ${(e as NodeJS.ErrnoException).code ?? e.message}; install it (see docs/lab.md)`, { cause: e })));
    child.once('close', (code, signal) => {
      const result = { code: code ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (result.code === 0 || opts.allowFailure) return resolve(result);
      const shown = [cmd, ...args].join(' ');
      reject(new WeftError('WEFT_COMMAND_FAILED',
        `${shown.length > 200 ? `${shown.slice(0, 200)}...` : shown} failed (${signal ?? `exit ${code}`}): ${result.stderr.trim() || result.stdout.trim() || 'no output'}`,
        { details: { cmd, args: [...args], code, stderr: result.stderr } }));
    });
    child.stdin.on('error', () => { /* the command may exit before reading; its exit status tells */ });
    child.stdin.end(opts.input ?? '');
  });
}

/** Absolute path of an executable found on PATH (plus the sbin dirs root uses), or undefined. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  const dirs = [...path.split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch { /* next */ }
  }
  return undefined;
}

/**
 * Runs the built `weft` CLI (never throws on its exit status: callers judge it), as an
 * operator would: the fault suite, the benchmarks and the e2e tests drive the lab
 * through it.
 */
export function runWeft(args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<RunResult> {
  return run(process.execPath, [DIST.main, ...args], { env, input, allowFailure: true });
}
