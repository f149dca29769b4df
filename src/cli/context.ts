/**
 * Where the operator commands find the mesh. A context file (written by `scripts/lab
 * up`, later by a cluster installer) names the registry, the CA and each node's admin
 * endpoint; `--redis-url` alone is enough for the registry-only commands.
 *
 * Each context kind has its own parser returning the same `CliContext`, so a cluster
 * context is one more entry in CONTEXT_PARSERS, not a change to every command.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../lib/errors';
import { isValidTrustDomain } from '../lib/identity';
import { parse, type OptionSpec } from '../lib/options';

/** How the CLI reaches one node's ztunnel admin API (HTTP). */
export type AdminEndpoint =
  | { socketPath: string }
  | { baseUrl: string };

export interface ContextNode {
  name: string;
  address?: string;
  netns?: string;
  /** Absent when the context does not say how to reach this node's admin API. */
  admin?: AdminEndpoint;
}

export interface CliContext {
  kind: 'lab' | 'cluster' | 'flags';
  /** Where the context came from: a file path, or `--redis-url` when only flags were given. */
  source: string;
  redisUrl: string;
  /** Key prefix of the registry in Redis; default `weft:`. */
  registryPrefix?: string;
  trustDomain: string;
  /** host:port of the CA's gRPC endpoint. */
  caAddress?: string;
  nodes: ContextNode[];
  labDir?: string;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** The flags every operator command accepts to pick its context. */
export const contextOptions = {
  context: {
    flag: 'context', env: 'WEFT_CONTEXT', default: '', defaultText: '~/.weft/context.json',
    description: 'context file naming the registry, CA and nodes (written by scripts/lab up)', parse: parse.string(),
  } satisfies OptionSpec<string>,
  redisUrl: {
    flag: 'redis-url', env: 'WEFT_REDIS_URL', default: '',
    description: "registry Redis URL; overrides the context's", parse: parse.url(['redis:', 'rediss:']),
  } satisfies OptionSpec<string>,
};

export interface ContextFlags {
  context: string;
  redisUrl: string;
}

export function defaultContextFile(env: NodeJS.ProcessEnv): string {
  return join(env.HOME || homedir(), '.weft', 'context.json');
}

/**
 * Finds and validates the context. `--context`/WEFT_CONTEXT names the file (which must
 * then exist); otherwise ~/.weft/context.json is used if present. `--redis-url`
 * overrides the registry URL, and alone (no file) gives a registry-only context.
 */
export function loadContext(flags: ContextFlags, env: NodeJS.ProcessEnv): CliContext {
  const explicit = flags.context !== '';
  const file = explicit ? flags.context : defaultContextFile(env);
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      throw new WeftError('WEFT_CONFIG_INVALID', `cannot read context file ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (explicit) {
      throw new WeftError('WEFT_CONTEXT_MISSING',
        `context file ${file} (from --context/WEFT_CONTEXT) does not exist; start the lab with scripts/lab up, or pass --redis-url`);
    }
  }
  if (text === undefined) {
    if (flags.redisUrl) return { kind: 'flags', source: '--redis-url', redisUrl: flags.redisUrl, trustDomain: DEFAULT_TRUST_DOMAIN, nodes: [] };
    throw new WeftError('WEFT_CONTEXT_MISSING',
      `no weft context found (looked for ${file}); run scripts/lab up to start the lab (it writes the context), or pass --redis-url redis://host:port`);
  }
  const ctx = parseContext(text, file);
  return flags.redisUrl ? { ...ctx, redisUrl: flags.redisUrl } : ctx;
}

type ContextParser = (raw: Record<string, unknown>, file: string) => CliContext;

/** One parser per context kind. A cluster context (kubeconfig-like) is added here. */
const CONTEXT_PARSERS: Record<string, ContextParser> = {
  lab: parseLabContext,
};

export function parseContext(text: string, file: string): CliContext {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `is not JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid(file, 'is not a JSON object');
  const obj = raw as Record<string, unknown>;
  const kind = obj.kind;
  const parser = typeof kind === 'string' ? CONTEXT_PARSERS[kind] : undefined;
  if (!parser) {
    throw invalid(file, `has kind ${JSON.stringify(kind)}; this weft understands ${Object.keys(CONTEXT_PARSERS).map((k) => `"${k}"`).join(', ')}`);
  }
  return parser(obj, file);
}

function parseLabContext(raw: Record<string, unknown>, file: string): CliContext {
  const f = fields(raw, file);
  const redisUrl = f.string('redisUrl');
  try {
    parse.url(['redis:', 'rediss:'])(redisUrl);
  } catch (err) {
    throw invalid(file, `field redisUrl=${JSON.stringify(redisUrl)}: ${(err as Error).message}`);
  }
  const trustDomain = f.optionalString('trustDomain') ?? DEFAULT_TRUST_DOMAIN;
  if (!isValidTrustDomain(trustDomain)) throw invalid(file, `field trustDomain=${JSON.stringify(trustDomain)} is not a DNS name`);
  const nodesRaw = raw.nodes ?? [];
  if (!Array.isArray(nodesRaw)) throw invalid(file, 'field nodes is not a list');
  const nodes = nodesRaw.map((n: unknown, i): ContextNode => {
    if (typeof n !== 'object' || n === null) throw invalid(file, `field nodes[${i}] is not an object`);
    const nf = fields(n as Record<string, unknown>, file, `nodes[${i}].`);
    const node: ContextNode = { name: nf.string('name') };
    const address = nf.optionalString('address');
    const netns = nf.optionalString('netns');
    const socketPath = nf.optionalString('adminSocket');
    const baseUrl = nf.optionalString('adminUrl');
    if (address) node.address = address;
    if (netns) node.netns = netns;
    if (socketPath) node.admin = { socketPath };
    else if (baseUrl) node.admin = { baseUrl };
    return node;
  });
  const ctx: CliContext = { kind: 'lab', source: file, redisUrl, trustDomain, nodes };
  const caAddress = f.optionalString('caAddress');
  if (caAddress) {
    try {
      parse.hostPort()(caAddress);
    } catch (err) {
      throw invalid(file, `field caAddress=${JSON.stringify(caAddress)}: ${(err as Error).message}`);
    }
    ctx.caAddress = caAddress;
  }
  const labDir = f.optionalString('labDir');
  if (labDir) ctx.labDir = labDir;
  const prefix = f.optionalString('registryPrefix');
  if (prefix) ctx.registryPrefix = prefix;
  return ctx;
}

function fields(raw: Record<string, unknown>, file: string, path = '') {
  return {
    string(name: string): string {
      const v = raw[name];
      if (typeof v !== 'string' || v === '') throw invalid(file, `field ${path}${name} is missing or not a string`);
      return v;
    },
    optionalString(name: string): string | undefined {
      const v = raw[name];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'string') throw invalid(file, `field ${path}${name} is not a string`);
      return v;
    },
  };
}

function invalid(file: string, what: string): WeftError {
  return new WeftError('WEFT_CONFIG_INVALID',
    `context file ${file} ${what}; run scripts/lab up again to rewrite it, or point --context elsewhere`, { details: { file } });
}

/** Picks the nodes named by `--node` (all when empty); an unknown name is an error listing the known ones. */
export function selectNodes(ctx: CliContext, name: string): ContextNode[] {
  if (!name) return ctx.nodes;
  const node = ctx.nodes.find((n) => n.name === name);
  if (!node) {
    const known = ctx.nodes.map((n) => n.name).join(', ') || 'none';
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --node=${JSON.stringify(name)}: not a node of context ${ctx.source} (nodes: ${known})`);
  }
  return [node];
}
