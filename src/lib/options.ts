import { WeftError } from './errors';
import { redactText } from './redact';

/**
 * Declarative flags + environment variables, validated once at start-up into a frozen
 * object. Precedence: flag, then environment variable, then default. A bad value names
 * the flag or variable, the value, and what was expected.
 */
export interface OptionSpec<T> {
  /** Long flag without dashes, e.g. `redis-url`. */
  flag: string;
  /** Environment variable, e.g. `WEFT_REDIS_URL`. */
  env?: string;
  description: string;
  /** Absent means the option is required. */
  default?: T;
  /** Parses the raw text; throws a string (or Error) saying what is expected. */
  parse: (raw: string) => T;
  /** Boolean flags take no value on the command line. */
  boolean?: boolean;
  /** Shown in help instead of the default when the default is computed. */
  defaultText?: string;
}

export type OptionSpecs = Record<string, OptionSpec<unknown>>;
export type OptionValues<S extends OptionSpecs> = { readonly [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

export interface ParsedOptions<S extends OptionSpecs> {
  values: OptionValues<S>;
  /** Positional arguments, in order. */
  positionals: string[];
}

function invalid(source: string, raw: string, why: string): WeftError {
  // The value may be a URL with a password in it: the refusal is printed and logged.
  const shown = redactText(raw);
  return new WeftError('WEFT_CONFIG_INVALID', `invalid ${source}=${JSON.stringify(shown)}: ${why}`, {
    details: { source, value: shown },
  });
}

export function parseOptions<S extends OptionSpecs>(
  specs: S,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedOptions<S> {
  const byFlag = new Map<string, [string, OptionSpec<unknown>]>();
  for (const [key, spec] of Object.entries(specs)) byFlag.set(spec.flag, [key, spec]);

  const rawFromFlags = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const entry = byFlag.get(name);
    if (!entry) {
      throw new WeftError('WEFT_USAGE', `unknown flag --${name}; run with --help to list the flags`);
    }
    const [key, spec] = entry;
    if (spec.boolean) {
      rawFromFlags.set(key, eq === -1 ? 'true' : arg.slice(eq + 1));
    } else if (eq !== -1) {
      rawFromFlags.set(key, arg.slice(eq + 1));
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw new WeftError('WEFT_USAGE', `flag --${name} needs a value: ${spec.description}`);
      rawFromFlags.set(key, next);
      i++;
    }
  }

  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    let raw: string | undefined;
    let source: string;
    if (rawFromFlags.has(key)) {
      raw = rawFromFlags.get(key);
      source = `--${spec.flag}`;
    } else if (spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      raw = env[spec.env];
      source = spec.env;
    } else {
      source = `--${spec.flag}`;
    }
    if (raw === undefined) {
      if (!('default' in spec)) {
        throw new WeftError('WEFT_CONFIG_INVALID',
          `missing --${spec.flag}${spec.env ? ` (or ${spec.env})` : ''}: ${spec.description}`);
      }
      values[key] = spec.default;
      continue;
    }
    try {
      values[key] = spec.parse(raw);
    } catch (err) {
      throw invalid(source, raw, err instanceof Error ? err.message : String(err));
    }
  }
  return { values: Object.freeze(values) as OptionValues<S>, positionals };
}

export function optionsHelp(specs: OptionSpecs): string {
  const rows = Object.values(specs).map((s) => {
    const left = `  --${s.flag}${s.boolean ? '' : ' <value>'}`;
    const def = s.defaultText ?? ('default' in s && s.default !== undefined && s.default !== '' ? JSON.stringify(s.default) : undefined);
    const right = `${s.description}${s.env ? ` [env ${s.env}]` : ''}${def !== undefined ? ` (default ${def})` : ''}`;
    return [left, right] as const;
  });
  const width = Math.max(0, ...rows.map(([l]) => l.length)) + 2;
  return rows.map(([l, r]) => l.padEnd(width) + r).join('\n');
}

// ---- parsers: each throws a sentence that says what is expected ----

export const parse = {
  string: (opts: { pattern?: RegExp; what?: string } = {}) => (raw: string): string => {
    if (opts.pattern && !opts.pattern.test(raw)) throw new Error(`expected ${opts.what ?? `a value matching ${opts.pattern}`}`);
    return raw;
  },
  int: (opts: { min?: number; max?: number } = {}) => (raw: string): number => {
    if (!/^-?\d+$/.test(raw)) throw new Error('expected a whole number');
    const n = Number(raw);
    if (opts.min !== undefined && n < opts.min) throw new Error(`expected at least ${opts.min}`);
    if (opts.max !== undefined && n > opts.max) throw new Error(`expected at most ${opts.max}`);
    return n;
  },
  port: () => parse.int({ min: 0, max: 65535 }),
  bool: () => (raw: string): boolean => {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new Error('expected true or false');
  },
  oneOf: <T extends string>(choices: readonly T[]) => (raw: string): T => {
    if (!(choices as readonly string[]).includes(raw)) throw new Error(`expected one of ${choices.join(', ')}`);
    return raw as T;
  },
  /** Durations like 500ms, 10s, 5m, 24h, 90d; returns milliseconds. */
  duration: (opts: { min?: number; max?: number } = {}) => (raw: string): number => {
    const ms = parseDuration(raw);
    if (ms === undefined) throw new Error('expected a duration such as 500ms, 30s, 5m, 24h or 90d');
    if (opts.min !== undefined && ms < opts.min) throw new Error(`expected at least ${formatDuration(opts.min)}`);
    if (opts.max !== undefined && ms > opts.max) throw new Error(`expected at most ${formatDuration(opts.max)}`);
    return ms;
  },
  url: (protocols: readonly string[]) => (raw: string): string => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`expected a URL such as ${protocols[0]}//host:port`);
    }
    if (!protocols.includes(u.protocol)) throw new Error(`expected a ${protocols.join(' or ')} URL`);
    return raw;
  },
  hostPort: () => (raw: string): { host: string; port: number } => {
    const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(raw);
    if (!m || Number(m[2]) > 65535) throw new Error('expected host:port, e.g. 127.0.0.1:15012');
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  },
};

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(raw: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(raw.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2]!]!);
}

export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNITS[unit]!;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
