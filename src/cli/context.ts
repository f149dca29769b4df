/**
 * Where the operator commands find the mesh:
 *   - the lab: a context file (written by `scripts/lab up`) names the registry, the CA
 *     and each node's admin endpoint;
 *   - a cluster: a kubeconfig. Nodes are the ztunnel pods, reached through the API
 *     server's pod proxy; the registry view comes from a ztunnel (Redis stays inside
 *     the cluster); enrolment is a Namespace label patched through the API server;
 *   - `--redis-url` alone, for the registry-only commands.
 *
 * Each context kind has its own parser returning the same `CliContext`, so a new kind
 * is one more entry in CONTEXT_PARSERS, not a change to every command.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../lib/errors';
import { isValidTrustDomain } from '../lib/identity';
import {
  redisOptionSpecs, redisTarget, redisValuesOf, type RedisConnection, type RedisOptionValues,
} from '../lib/common-options';
import { parse, type OptionSpec } from '../lib/options';
import { redactUrl } from '../lib/redact';
import { loadKubeconfig, type ClusterConfig } from '../k8s/kubeconfig';
import { adminToken, adminTokenOption } from './admin-token';

/** A ztunnel pod's admin views through the API server: GET .../pods/<pod>:<port>/proxy/<path>. */
export interface PodProxyTarget {
  namespace: string;
  pod: string;
  port: number;
  /** Why the pod cannot be asked (not running, no IP), when it cannot. */
  unavailable?: string;
}

/** How the CLI reaches one node's ztunnel admin API (HTTP). */
export type AdminEndpoint =
  | { socketPath: string }
  | { baseUrl: string }
  | { podProxy: PodProxyTarget };

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
  /**
   * The registry's Redis with the operator's ACL user, password and TLS files (from the
   * context file, overridden by the flags). Absent on a cluster reached only through
   * its API server: the registry views then come from a ztunnel.
   */
  redis?: RedisConnection;
  /** Key prefix of the registry in Redis; default `weft:`. */
  registryPrefix?: string;
  trustDomain: string;
  /** host:port of the CA's gRPC endpoint. */
  caAddress?: string;
  nodes: ContextNode[];
  labDir?: string;
  /** For kind 'cluster': how to reach the API server, and where Weft runs in it. */
  cluster?: ClusterTarget;
}

export interface ClusterTarget {
  config: ClusterConfig;
  /** The kubeconfig file (and context) it came from, for messages. */
  source: string;
  /** Namespace of Weft's own pods. */
  namespace: string;
  /** Selects the ztunnel pods in `namespace`. */
  ztunnelSelector: string;
  /** Bearer token for the ztunnel admin views (--admin-token-file, WEFT_ADMIN_TOKEN); default the kubeconfig user's. */
  adminToken?: string;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const WEFT_SYSTEM_NAMESPACE = 'weft-system';
export const ZTUNNEL_POD_SELECTOR = 'app.kubernetes.io/name=weft-ztunnel';

/** The flags every operator command accepts to pick its context. */
export const contextOptions = {
  context: {
    flag: 'context', env: 'WEFT_CONTEXT', default: '', defaultText: '~/.weft/context.json',
    description: 'context file naming the registry, CA and nodes (written by scripts/lab up)', parse: parse.string(),
  } satisfies OptionSpec<string>,
  // The operator's own ACL user and files (weft-operator in daemonset/redis-acl.example).
  ...redisOptionSpecs,
  // No default URL: without one the context's registry is used.
  redisUrl: { ...redisOptionSpecs.redisUrl, default: '', defaultText: "the context's", description: "registry Redis URL; overrides the context's" },
  kubeconfig: {
    flag: 'kubeconfig', env: 'WEFT_KUBECONFIG', default: '', defaultText: '$KUBECONFIG or ~/.kube/config when there is no weft context',
    description: 'use the cluster of this kubeconfig (through its API server) instead of the lab', parse: parse.string(),
  } satisfies OptionSpec<string>,
  kubeContext: {
    flag: 'kube-context', env: 'WEFT_KUBE_CONTEXT', default: '', defaultText: 'current-context',
    description: 'kubeconfig context to use', parse: parse.string(),
  } satisfies OptionSpec<string>,
  ...adminTokenOption,
};

/** The context flags' values; a Redis value left empty keeps the context's. */
export interface ContextFlags extends Partial<RedisOptionValues> {
  context: string;
  kubeconfig?: string;
  kubeContext?: string;
  adminTokenFile?: string;
}

export function defaultContextFile(env: NodeJS.ProcessEnv): string {
  return join(env.HOME || homedir(), '.weft', 'context.json');
}

/**
 * Finds and validates the context, first match wins:
 *   1. `--context`/WEFT_CONTEXT names a file (which must exist), or
 *   2. `--kubeconfig`/WEFT_KUBECONFIG names a cluster (giving both is an error);
 *   3. ~/.weft/context.json, when present (the lab writes it);
 *   4. `--redis-url` alone: a registry-only context;
 *   5. a kubeconfig at $KUBECONFIG or ~/.kube/config: that cluster.
 * `--redis-url` also overrides the registry URL of a file context.
 */
export function loadContext(flags: ContextFlags, env: NodeJS.ProcessEnv): CliContext {
  const explicit = flags.context !== '';
  const file = explicit ? flags.context : defaultContextFile(env);
  if (explicit && flags.kubeconfig) {
    throw new WeftError('WEFT_USAGE',
      `both a weft context (--context/WEFT_CONTEXT=${flags.context}) and a cluster (--kubeconfig/WEFT_KUBECONFIG=${flags.kubeconfig}) are given; pass only one`);
  }
  if (flags.kubeconfig) return withFlags(clusterContext(flags.kubeconfig, flags.kubeContext, env), flags, env);
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
        `context file ${file} (from --context/WEFT_CONTEXT) does not exist; start the lab with scripts/lab up, or pass --kubeconfig or --redis-url`);
    }
  }
  if (text === undefined) {
    if (flags.redisUrl || flags.redisSentinels) {
      const source = flags.redisUrl ? '--redis-url' : '--redis-sentinels';
      return withFlags({ kind: 'flags', source, trustDomain: DEFAULT_TRUST_DOMAIN, nodes: [] }, flags, env);
    }
    const kubeconfig = defaultKubeconfig(env);
    if (kubeconfig) return withFlags(clusterContext(kubeconfig, flags.kubeContext, env), flags, env);
    throw new WeftError('WEFT_CONTEXT_MISSING',
      `no weft context found (looked for ${file}, $KUBECONFIG and ~/.kube/config); run scripts/lab up to start the lab (it writes the context), pass --kubeconfig FILE for a cluster, or --redis-url redis://host:port`);
  }
  return withFlags(parseContext(text, file, env), flags, env);
}

/** The flags that refine whichever context was found: its Redis, and a cluster's admin token. */
function withFlags(ctx: CliContext, flags: ContextFlags, env: NodeJS.ProcessEnv): CliContext {
  return withAdminToken(withRedis(ctx, flags), flags, env);
}

/**
 * The admin token goes with a cluster. Elsewhere the admin views take none (the lab's
 * sockets), so --admin-token-file there is a mistake said out loud; WEFT_ADMIN_TOKEN,
 * often left in a shell, is ignored there as it always was.
 */
function withAdminToken(ctx: CliContext, flags: ContextFlags, env: NodeJS.ProcessEnv): CliContext {
  if (!ctx.cluster) {
    if (!flags.adminTokenFile) return ctx;
    throw new WeftError('WEFT_USAGE',
      `--admin-token-file/WEFT_ADMIN_TOKEN_FILE given, but ${ctx.source} is not a cluster and its admin views take no token; pass --kubeconfig for a cluster, or drop it`);
  }
  const token = adminToken(flags.adminTokenFile, env);
  return token ? { ...ctx, cluster: { ...ctx.cluster, adminToken: token } } : ctx;
}

/**
 * --redis-url and the --redis-* credential flags override the context's Redis, each
 * flag given replacing that one value; the result passes the same rules as every
 * component's flags (redisTarget), once.
 */
function withRedis(ctx: CliContext, flags: ContextFlags): CliContext {
  const keys = Object.keys(redisOptionSpecs) as (keyof RedisOptionValues)[];
  const given: { -readonly [K in keyof RedisOptionValues]?: string } = {};
  for (const k of keys) if (flags[k]) given[k] = flags[k];
  if (!ctx.redis && !given.redisUrl && !given.redisSentinels) {
    const names = keys.filter((k) => given[k]).map((k) => `--${redisOptionSpecs[k].flag}/${redisOptionSpecs[k].env}`).join(', ');
    if (!names) return ctx;
    throw new WeftError('WEFT_USAGE',
      `${names} given, but ${ctx.source} names no Redis to use them with; add --redis-url (the registry's Redis) or --redis-sentinels, or drop ${names}`);
  }
  // Sentinels alone: the URL only carries scheme and user, so the components' default serves.
  const base = ctx.redis ?? { url: given.redisUrl || redisOptionSpecs.redisUrl.default };
  const values: RedisOptionValues = { ...redisValuesOf(base), ...given };
  return { ...ctx, redis: redisTarget(values) };
}

/** $KUBECONFIG's first file, else ~/.kube/config, when it exists. */
function defaultKubeconfig(env: NodeJS.ProcessEnv): string | undefined {
  const file = env.KUBECONFIG?.split(':').find((f) => f !== '') || join(env.HOME || homedir(), '.kube', 'config');
  return existsSync(file) ? file : undefined;
}

/**
 * A cluster context. The registry URL stays empty: Redis is inside the cluster, so the
 * registry views come from a ztunnel unless `--redis-url` names a reachable Redis.
 */
export function clusterContext(kubeconfig: string, kubeContext: string | undefined, env: NodeJS.ProcessEnv,
  opts: { namespace?: string; trustDomain?: string } = {}): CliContext {
  const config = loadKubeconfig(kubeconfig, { env, ...(kubeContext ? { context: kubeContext } : {}) });
  const source = `kubeconfig ${kubeconfig}${kubeContext ? ` (context ${kubeContext})` : ''}`;
  return {
    kind: 'cluster', source, trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN, nodes: [],
    cluster: { config, source, namespace: opts.namespace ?? WEFT_SYSTEM_NAMESPACE, ztunnelSelector: ZTUNNEL_POD_SELECTOR },
  };
}

type ContextParser = (raw: Record<string, unknown>, file: string, env: NodeJS.ProcessEnv) => CliContext;

/** One parser per context kind. */
const CONTEXT_PARSERS: Record<string, ContextParser> = {
  lab: parseLabContext,
  cluster: parseClusterContext,
};

export function parseContext(text: string, file: string, env: NodeJS.ProcessEnv = process.env): CliContext {
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
  return parser(obj, file, env);
}

/** `{"kind":"cluster","kubeconfig":"...","kubeContext":"...","namespace":"weft-system","trustDomain":"..."}`; all optional. */
function parseClusterContext(raw: Record<string, unknown>, file: string, env: NodeJS.ProcessEnv): CliContext {
  const f = fields(raw, file);
  const kubeconfig = f.optionalString('kubeconfig') || defaultKubeconfig(env);
  if (!kubeconfig) throw invalid(file, 'has kind "cluster" but no field kubeconfig, and there is no $KUBECONFIG or ~/.kube/config');
  const trustDomain = f.optionalString('trustDomain');
  if (trustDomain !== undefined && !isValidTrustDomain(trustDomain)) throw invalid(file, `field trustDomain=${JSON.stringify(trustDomain)} is not a DNS name`);
  const namespace = f.optionalString('namespace');
  const ctx = clusterContext(kubeconfig, f.optionalString('kubeContext'), env, {
    ...(namespace ? { namespace } : {}), ...(trustDomain ? { trustDomain } : {}),
  });
  return { ...ctx, source: file };
}

function parseLabContext(raw: Record<string, unknown>, file: string): CliContext {
  const f = fields(raw, file);
  const redisUrl = f.string('redisUrl');
  try {
    parse.url(['redis:', 'rediss:'])(redisUrl);
  } catch (err) {
    throw invalid(file, `field redisUrl=${JSON.stringify(redactUrl(redisUrl))}: ${(err as Error).message}`);
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
  // A lab run with Redis ACL users names the operator's user and password file (never
  // the password); loadContext checks the whole connection once the flags are on it.
  const redis: RedisConnection = { url: redisUrl };
  const username = f.optionalString('redisUsername');
  const passwordFile = f.optionalString('redisPasswordFile');
  const caFile = f.optionalString('redisCaFile');
  if (username) redis.username = username;
  if (passwordFile) redis.passwordFile = passwordFile;
  if (caFile) redis.caFile = caFile;
  // A lab run with Sentinels (scripts/lab up --redis-sentinels) names them and the master.
  const sentinels = f.optionalString('redisSentinels');
  const masterName = f.optionalString('redisMasterName');
  if (sentinels || masterName) {
    try {
      redis.sentinel = redisTarget({ ...redisValuesOf(redis), redisSentinels: sentinels ?? '', redisMasterName: masterName ?? '' }).sentinel!;
    } catch (err) {
      throw invalid(file, `fields redisSentinels/redisMasterName: ${(err as Error).message}`);
    }
  }
  const ctx: CliContext = { kind: 'lab', source: file, redis, trustDomain, nodes };
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
export function selectNodes(ctx: CliContext, name: string, nodes: ContextNode[] = ctx.nodes): ContextNode[] {
  if (!name) return nodes;
  const node = nodes.find((n) => n.name === name);
  if (!node) {
    const known = nodes.map((n) => n.name).join(', ') || 'none';
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --node=${JSON.stringify(name)}: not a node of context ${ctx.source} (nodes: ${known})`);
  }
  return [node];
}
