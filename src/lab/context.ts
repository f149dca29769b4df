/**
 * The context file tells every `weft` command where the running lab is, so operators
 * type `weft tunnels` rather than a list of addresses. Written by `lab up`, removed by
 * `lab down` (only when it still points at that lab). Format: docs/lab.md.
 */
import { labContextRedis } from './redis';
import { rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../lib/errors';
import { readOptionalJson, writeFileAtomic } from '../lib/files';
import { LAB_NET, type LabPlan } from './plan';

export interface LabContextNode {
  name: string;
  /** Address on the cluster network; the ztunnel's HBONE, metrics and readiness ports listen here. */
  address: string;
  /** Dual-stack labs: the node IPv6 address (ULA). */
  address6?: string;
  netns: string;
  podCidr: string;
  /** http://<address>:15021/healthz/ready */
  readinessUrl: string;
  /** Unix socket serving the ztunnel's admin API (absent when no ztunnel runs). */
  adminSocket?: string;
}

export interface LabContextPod {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  ip: string;
  /** Dual-stack labs: the pod IPv6 address (ULA). */
  ip6?: string;
  netns: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

export interface LabContextService {
  namespace: string;
  name: string;
  hostname: string;
  vip: string;
  ports: { name?: string; port: number; targetPort: number; nodePort?: number }[];
}

export interface LabContext {
  kind: 'lab';
  version: 1;
  /** Redis as reached from the root namespace (where the CLI runs). */
  redisUrl: string;
  /** Redis as reached from inside the lab (node netns). */
  clusterRedisUrl: string;
  /** With `lab up --redis-sentinel`: the Sentinels (host:port,...) and the primary's name there. */
  redisSentinels?: string;
  redisMasterName?: string;
  /** host:port of `weft ca`. */
  caAddress: string;
  /** PEM of the mesh root, once the CA has written it. */
  caRootFile?: string;
  trustDomain: string;
  labDir: string;
  createdAt: string;
  nodes: LabContextNode[];
  pods: LabContextPod[];
  services: LabContextService[];
}

export function contextPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.WEFT_CONTEXT || join(homedir(), '.weft', 'context.json');
}

export function buildContext(plan: LabPlan, labDir: string, caRootFile: string | undefined, adminSocket?: (node: string) => string): LabContext {
  const ctx: LabContext = {
    kind: 'lab',
    version: 1,
    redisUrl: `redis://127.0.0.1:${plan.redisPort}`,
    clusterRedisUrl: `redis://${LAB_NET.gateway}:${plan.redisPort}`,
    ...labContextRedis(plan),
    caAddress: `${LAB_NET.gateway}:${LAB_NET.caPort}`,
    trustDomain: LAB_NET.clusterDomain,
    labDir,
    createdAt: new Date().toISOString(),
    nodes: plan.nodes.map((n) => ({
      name: n.name, address: n.address, ...(n.address6 ? { address6: n.address6 } : {}), netns: n.netns, podCidr: n.podCidr,
      readinessUrl: `http://${n.address}:${LAB_NET.readinessPort}/healthz/ready`,
      ...(adminSocket ? { adminSocket: adminSocket(n.name) } : {}),
    })),
    pods: plan.pods.map((p) => ({
      uid: p.uid, namespace: p.namespace, name: p.name, node: p.node, ip: p.ip, ...(p.ip6 ? { ip6: p.ip6 } : {}), netns: p.netns,
      serviceAccount: p.serviceAccount, labels: { ...p.labels },
    })),
    services: plan.services.map((s) => ({
      namespace: s.namespace, name: s.name, hostname: s.hostname, vip: s.vip, ports: s.ports.map((p) => ({ ...p })),
    })),
  };
  if (caRootFile) ctx.caRootFile = caRootFile;
  return ctx;
}

export function writeContext(file: string, ctx: LabContext): void {
  writeFileAtomic(file, JSON.stringify(ctx, null, 2) + '\n');
}

/** The context, or undefined when there is none. */
export function readContext(file = contextPath()): LabContext | undefined {
  return readOptionalJson(file, (value) => {
    const ctx = value as LabContext;
    if (ctx?.kind !== 'lab' || typeof ctx.redisUrl !== 'string') throw new Error('not a weft lab context');
    return ctx;
  }, (why, cause) => new WeftError('WEFT_CONFIG_INVALID',
    `invalid context file ${file} (${why}); run \`weft lab up\` again or delete it`, { cause, details: { file } }));
}

/** Like readContext, but a missing context is an error that says how to get one. */
export function requireContext(file = contextPath()): LabContext {
  const ctx = readContext(file);
  if (!ctx) {
    throw new WeftError('WEFT_CONTEXT_MISSING',
      `no context at ${file}; start the lab (scripts/lab up) or pass --redis-url`);
  }
  return ctx;
}

/** Removes the context file if it still describes the lab in `labDir`; another lab's context is left alone. */
export function removeContextIfOurs(file: string, labDir: string): boolean {
  try {
    const ctx = readContext(file);
    if (!ctx || ctx.labDir !== labDir) return false;
  } catch {
    return false;
  }
  rmSync(file, { force: true });
  return true;
}
