import { spawn } from 'node:child_process';
import { WeftError } from '../lib/errors';

/** Options for one external command. */
export interface RunOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** Run inside this named network namespace (`ip netns exec <netns> <cmd> ...`). */
  netns?: string;
  /** Kill the command after this long (default 30 s); a hung iptables lock is the usual cause. */
  timeoutMs?: number;
  /**
   * When false, a non-zero exit is returned in `code` instead of thrown. A command
   * that cannot start at all (not installed) always throws.
   */
  check?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status; 0 on success. */
  code: number;
}

/**
 * Every `ip`/`iptables` invocation goes through this interface, so the rule applier
 * is one implementation away from a dry-run or a recording runner, and so the
 * `ip netns exec` plumbing lives in one place.
 */
export interface CommandRunner {
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** The command line as a human would type it, for messages and logs. */
export function formatCommand(cmd: string, args: readonly string[], netns?: string): string {
  const argv = netns ? ['ip', 'netns', 'exec', netns, cmd, ...args] : [cmd, ...args];
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** The real runner: child_process.spawn, no shell (arguments are never re-parsed). */
export class ExecCommandRunner implements CommandRunner {
  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const file = opts.netns ? 'ip' : cmd;
    const argv = opts.netns ? ['netns', 'exec', opts.netns, cmd, ...args] : [...args];
    const shown = formatCommand(cmd, args, opts.netns);
    return new Promise((resolve, reject) => {
      const child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      // A command that exits before reading stdin makes the write fail with EPIPE;
      // its exit status and stderr say more than the pipe error, so ignore the latter.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input ?? '');
      child.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const hint = e.code === 'ENOENT'
          ? `${file} is not installed or not on PATH; install it (Debian: apt-get install iptables iproute2)`
          : 'check that the command exists and that you run as root';
        reject(new WeftError('WEFT_COMMAND_FAILED', `cannot run ${shown}: ${e.message}; ${hint}`, {
          cause: e,
          details: { command: shown },
        }));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const result: RunResult = {
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          code: code ?? 128,
        };
        if (timedOut) {
          reject(new WeftError('WEFT_COMMAND_FAILED',
            `${shown} did not finish within ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms and was killed; another process may hold the xtables lock`,
            { details: { command: shown, stderr: result.stderr } }));
          return;
        }
        if (result.code !== 0 && opts.check !== false) {
          const why = result.stderr.trim() || (signal ? `killed by ${signal}` : '(no error output)');
          reject(new WeftError('WEFT_COMMAND_FAILED',
            `${shown} failed with exit code ${result.code}: ${why} (fix what it reports; most of these commands need root)`,
            { details: { command: shown, code: result.code, stderr: result.stderr } }));
          return;
        }
        resolve(result);
      });
    });
  }
}
