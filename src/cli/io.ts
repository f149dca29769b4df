/**
 * What operator commands share: where they write, which environment they read, and
 * how they are declared. Commands take a `CliIo` rather than touching `process`, so
 * tests run them in-process with a captured stdout and a private environment.
 */
import { WeftError } from '../lib/errors';
import { optionsHelp, parseOptions, type OptionSpecs, type ParsedOptions } from '../lib/options';
import type { Command } from './command';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The environment the command reads (WEFT_CONTEXT, WEFT_REDIS_URL, HOME, ...). */
  env: NodeJS.ProcessEnv;
  /** Ends `--watch`; when absent, SIGINT/SIGTERM do. */
  signal?: AbortSignal;
  /** All of stdin, for `-f -`; absent means there is none to read. */
  readStdin?: () => Promise<string>;
  /** stdout is a terminal (`weft top` redraws in place only then). */
  tty?: boolean;
}

/** Reading stdin stops past this: `-f -` takes manifests, not data. */
export const MAX_STDIN_BYTES = 8 * 1024 * 1024;

export const processIo: CliIo = {
  stdout: (text) => { process.stdout.write(text); },
  stderr: (text) => { process.stderr.write(text); },
  env: process.env,
  readStdin: () => readStream(process.stdin, MAX_STDIN_BYTES),
  tty: process.stdout.isTTY === true,
};

/** A stream's text, refused once it passes `max` bytes. */
export async function readStream(stream: NodeJS.ReadableStream, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer;
    size += b.length;
    if (size > max) throw new WeftError('WEFT_USAGE', `stdin holds more than ${max} bytes; pass the manifests as files (-f DIR)`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A command that tests can also run with their own io. */
export interface CliCommand extends Command {
  runWith(argv: string[], io: CliIo): Promise<number>;
}

/**
 * kubectl-style short flags that lib/options (long flags only) does not know:
 * `-o json`, `-ojson`, `-n demo`, `-w`, `-l app=echo`, `-f canary.yaml`. Everything after `--` is left alone.
 */
const SHORT_FLAGS: Record<string, { long: string; takesValue: boolean }> = {
  o: { long: 'output', takesValue: true },
  n: { long: 'namespace', takesValue: true },
  w: { long: 'watch', takesValue: false },
  l: { long: 'selector', takesValue: true },
  f: { long: 'filename', takesValue: true },
};

export function expandShortFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^-([A-Za-z])(=?)(.*)$/.exec(arg);
    const spec = m ? SHORT_FLAGS[m[1]!] : undefined;
    if (!m || !spec) {
      out.push(arg);
      continue;
    }
    if (!spec.takesValue) {
      if (m[3]) throw new WeftError('WEFT_USAGE', `flag -${m[1]} takes no value (got "${arg}")`);
      out.push(`--${spec.long}`);
    } else if (m[3]) {
      out.push(`--${spec.long}=${m[3]}`);
    } else {
      out.push(`--${spec.long}`);
    }
  }
  return out;
}

export interface CommandDefinition<S extends OptionSpecs> {
  /** e.g. `weft workloads [flags]` */
  usage: string;
  summary: string;
  /** Paragraphs shown between the usage line and the flags. */
  description?: string;
  specs: S;
  /** Extra help after the flags (examples, exit codes). */
  footer?: string;
  run(parsed: ParsedOptions<S>, io: CliIo): Promise<number>;
}

/** Builds a Command from a declaration: help text, short flags and option parsing in one place. */
export function defineCommand<S extends OptionSpecs>(def: CommandDefinition<S>): CliCommand {
  const help = () => [
    `Usage: ${def.usage}`,
    '',
    def.summary.charAt(0).toUpperCase() + def.summary.slice(1) + '.',
    ...(def.description ? ['', def.description] : []),
    '',
    'Flags:',
    optionsHelp(def.specs),
    ...(def.footer ? ['', def.footer] : []),
  ].join('\n');
  const runWith = (argv: string[], io: CliIo) => def.run(parseOptions(def.specs, expandShortFlags(argv), io.env), io);
  return { summary: def.summary, help, runWith, run: (argv) => runWith(argv, processIo) };
}

/** A command with subcommands (`weft namespace enroll`): dispatches on the first word. */
export function defineGroup(def: { usage: string; summary: string; subcommands: Record<string, CliCommand> }): CliCommand {
  const help = () => [
    `Usage: ${def.usage}`,
    '',
    def.summary.charAt(0).toUpperCase() + def.summary.slice(1) + '.',
    '',
    'Subcommands:',
    ...Object.entries(def.subcommands).map(([name, c]) => `  ${name.padEnd(12)}${c.summary}`),
  ].join('\n');
  const runWith = async (argv: string[], io: CliIo): Promise<number> => {
    const [name, ...rest] = argv;
    const sub = name === undefined ? undefined : def.subcommands[name];
    if (!sub) {
      const what = name === undefined ? 'a subcommand is needed' : `unknown subcommand "${name}"`;
      throw new WeftError('WEFT_USAGE', `${what}; expected one of ${Object.keys(def.subcommands).join(', ')} (${def.usage})`);
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout(sub.help() + '\n');
      return 0;
    }
    return sub.runWith(rest, io);
  };
  return { summary: def.summary, help, runWith, run: (argv) => runWith(argv, processIo) };
}

/** Refuses positional arguments a command does not take. */
export function noPositionals(positionals: string[], usage: string): void {
  if (positionals.length > 0) {
    throw new WeftError('WEFT_USAGE', `unexpected argument "${positionals.join(' ')}"; usage: ${usage}`);
  }
}
