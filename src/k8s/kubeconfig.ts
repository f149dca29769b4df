/**
 * Where the Kubernetes API is and how to authenticate: from a kubeconfig file (its
 * current-context) or from inside a pod (service account token + CA). Validated here,
 * once, so a bad file fails at start-up naming the field.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import YAML from 'yaml';
import { WeftError } from '../lib/errors';
import { readFileIfAny } from '../lib/files';

export interface ClusterConfig {
  /** https://host:port (or http:// for tests). */
  server: string;
  /** PEM CA bundle trusted for the API server; absent = system roots. */
  ca?: string;
  /** PEM client certificate + key (mutual TLS). */
  cert?: string;
  key?: string;
  /** Bearer token. */
  token?: string;
  /** Re-read per request when set: projected service account tokens rotate. */
  tokenFile?: string;
  insecureSkipTlsVerify?: boolean;
  /** Namespace of the context (or of the pod), when known. */
  namespace?: string;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

function invalid(source: string, field: string, why: string): WeftError {
  return new WeftError('WEFT_CONFIG_INVALID', `kubeconfig ${source}: ${field} ${why}; fix the file or pass another --kubeconfig`,
    { details: { source, field } });
}

/** In-cluster config: KUBERNETES_SERVICE_HOST/PORT, the token and CA mounted into the pod. */
export function inClusterConfig(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): ClusterConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig <file>');
  }
  const read = (name: string): string => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch (err) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        `cannot read the service account ${name} at ${join(dir, name)}: ${(err as Error).message}; mount the service account token (automountServiceAccountToken) or pass --kubeconfig`,
        { cause: err });
    }
  };
  const ca = read('ca.crt');
  read('token');
  const namespace = readFileIfAny(join(dir, 'namespace'))?.trim();
  const h = host.includes(':') ? `[${host}]` : host;
  const out: ClusterConfig = { server: `https://${h}:${port}`, ca, tokenFile: join(dir, 'token') };
  if (namespace) out.namespace = namespace;
  return out;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function named(list: unknown, name: string, what: string, source: string): Obj {
  if (!Array.isArray(list)) throw invalid(source, `${what}s`, 'is missing or not a list');
  const entry = list.find((e) => isObj(e) && e.name === name);
  if (!isObj(entry) || !isObj(entry[what])) throw invalid(source, `${what}s`, `has no ${what} named ${JSON.stringify(name)}`);
  return entry[what] as Obj;
}

/** Loads a kubeconfig file (default $KUBECONFIG's first entry, else ~/.kube/config). */
export function loadKubeconfig(path?: string, opts: { context?: string; env?: NodeJS.ProcessEnv } = {}): ClusterConfig {
  const env = opts.env ?? process.env;
  const file = path || env.KUBECONFIG?.split(':')[0] || join(homedir(), '.kube', 'config');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_CONFIG_INVALID', `cannot read kubeconfig ${file}: ${(err as Error).message}; pass --kubeconfig <file>`, { cause: err });
  }
  return parseKubeconfig(text, { source: file, context: opts.context });
}

/** Parses kubeconfig text; relative file paths resolve against the file's directory. */
export function parseKubeconfig(text: string, opts: { source?: string; context?: string } = {}): ClusterConfig {
  const source = opts.source ?? '(inline)';
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw invalid(source, '(file)', `is not YAML: ${(err as Error).message}`);
  }
  if (!isObj(doc)) throw invalid(source, '(file)', 'is not a mapping');
  const contextName = opts.context ?? doc['current-context'];
  if (typeof contextName !== 'string' || contextName === '') throw invalid(source, 'current-context', 'is not set');
  const context = named(doc.contexts, contextName, 'context', source);
  if (typeof context.cluster !== 'string') throw invalid(source, `contexts[${contextName}].cluster`, 'is missing');
  const cluster = named(doc.clusters, context.cluster, 'cluster', source);
  const user = typeof context.user === 'string' ? named(doc.users, context.user, 'user', source) : {};
  const base = source === '(inline)' ? process.cwd() : dirname(source);
  const file = (field: string, p: unknown): string => {
    if (typeof p !== 'string') throw invalid(source, field, 'must be a path');
    const full = isAbsolute(p) ? p : join(base, p);
    try {
      return readFileSync(full, 'utf8');
    } catch (err) {
      throw invalid(source, field, `names ${full}, which cannot be read (${(err as Error).message})`);
    }
  };
  const b64 = (field: string, v: unknown): string => {
    if (typeof v !== 'string') throw invalid(source, field, 'must be base64 text');
    return Buffer.from(v, 'base64').toString('utf8');
  };
  const pick = (o: Obj, key: string, where: string): string | undefined => {
    if (o[`${key}-data`] !== undefined) return b64(`${where}.${key}-data`, o[`${key}-data`]);
    if (o[key] !== undefined) return file(`${where}.${key}`, o[key]);
    return undefined;
  };
  const server = cluster.server;
  if (typeof server !== 'string') throw invalid(source, `clusters[${context.cluster}].server`, 'is missing');
  try {
    const u = new URL(server);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('bad protocol');
  } catch {
    throw invalid(source, `clusters[${context.cluster}].server`, `is not an http(s) URL: ${JSON.stringify(server)}`);
  }
  const out: ClusterConfig = { server: server.replace(/\/+$/, '') };
  const where = `clusters[${context.cluster}]`;
  const ca = pick(cluster, 'certificate-authority', where);
  if (ca !== undefined) out.ca = ca;
  if (cluster['insecure-skip-tls-verify'] === true) out.insecureSkipTlsVerify = true;
  const uwhere = `users[${String(context.user)}]`;
  const cert = pick(user, 'client-certificate', uwhere);
  const key = pick(user, 'client-key', uwhere);
  if ((cert === undefined) !== (key === undefined)) throw invalid(source, uwhere, 'needs both client-certificate and client-key');
  if (cert !== undefined && key !== undefined) {
    out.cert = cert;
    out.key = key;
  }
  if (typeof user.token === 'string') out.token = user.token;
  else if (typeof user.tokenFile === 'string') out.tokenFile = isAbsolute(user.tokenFile) ? user.tokenFile : join(base, user.tokenFile);
  if (typeof context.namespace === 'string') out.namespace = context.namespace;
  return out;
}
