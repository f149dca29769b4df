/**
 * `weft ca` runs the mesh CA; `weft ca token --node <name>` creates a node join token;
 * `weft ca init-root --dir <dir>` creates a root on purpose (the CA never does so
 * silently). Flags are validated here, once; app.ts does the wiring.
 */
import { isIP } from 'node:net';
import type { Command } from '../cli/command';
import { commonOptions, redisOptionSpecs, redisTarget } from '../lib/common-options';
import { openRedis } from '../registry/connection';
import { WeftError } from '../lib/errors';
import { waitForShutdownSignal } from '../lib/signals';
import { createLogger } from '../lib/log';
import { formatDuration, optionsHelp, parse, parseOptions, type OptionSpec } from '../lib/options';
import { startCaApp, type CaAppConfig } from './app';
import { createJoinToken } from './join-tokens';
import { createIdentityToken } from './identity-tokens';
import { DEFAULT_JOIN_AUDIENCE, DEFAULT_JOIN_NAMESPACE, DEFAULT_JOIN_SERVICE_ACCOUNT } from './sa-token-join';
import { initRoot, ROOT_CERT_FILE, ROOT_KEY_FILE, type RootSource } from './root-store';
import { DEFAULT_CSR_RATE, DEFAULT_JOIN_RATE } from './rate-limit';
import { join } from 'node:path';
import { DEFAULT_CERT_TTL_MS, DEFAULT_MAX_CERT_TTL_MS, DEFAULT_NODE_CERT_TTL_MS, HOUR_MS, DAY_MS } from './server-options';

/** The longest certificate lifetime --max-cert-ttl may allow. */
export const MAX_CERT_TTL_CAP_MS = 90 * DAY_MS;

const rate = (raw: string): number => {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || !(n > 0) || n > 10_000) throw new Error('expected requests per second, more than 0 and at most 10000');
  return n;
};

const list = (check: (item: string) => string | undefined) => (raw: string): string[] => {
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    const why = check(item);
    if (why) throw new Error(`${JSON.stringify(item)} ${why}`);
  }
  return items;
};

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const namespacedName = (raw: string): { namespace: string; name: string } => {
  const [namespace, name, extra] = raw.split('/');
  if (extra !== undefined || !namespace || !name || !DNS_LABEL.test(namespace) || !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(name)) {
    throw new Error('expected <namespace>/<service account>, e.g. weft-system/weft-ztunnel');
  }
  return { namespace, name };
};

const hostPortOrOff = (raw: string): { host: string; port: number } | undefined =>
  raw === 'off' ? undefined : parse.hostPort()(raw);

export const caSpecs = {
  ...redisOptionSpecs,
  trustDomain: commonOptions.trustDomain,
  logLevel: commonOptions.logLevel,
  listen: {
    flag: 'listen', env: 'WEFT_CA_LISTEN', default: { host: '0.0.0.0', port: 15012 }, defaultText: '0.0.0.0:15012',
    description: 'gRPC/TLS address (CreateCertificate and Join)', parse: parse.hostPort(),
  } satisfies OptionSpec<{ host: string; port: number }>,
  metricsListen: {
    flag: 'metrics-listen', env: 'WEFT_CA_METRICS_LISTEN', default: { host: '0.0.0.0', port: 15014 } as { host: string; port: number } | undefined,
    defaultText: '0.0.0.0:15014', description: 'HTTP address for /metrics and /healthz/ready, or "off"', parse: hostPortOrOff,
  } satisfies OptionSpec<{ host: string; port: number } | undefined>,
  dnsName: {
    flag: 'dns-name', env: 'WEFT_CA_DNS_NAMES', default: [] as string[], defaultText: 'none',
    description: 'comma-separated DNS names for the CA serving certificate (localhost is always included)',
    parse: list((s) => (/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(s) ? undefined : 'is not a DNS name')),
  } satisfies OptionSpec<string[]>,
  ip: {
    flag: 'ip', env: 'WEFT_CA_IPS', default: [] as string[], defaultText: 'none',
    description: 'comma-separated IPs for the CA serving certificate (127.0.0.1 and a specific --listen host are always included)',
    parse: list((s) => (isIP(s) ? undefined : 'is not an IP address')),
  } satisfies OptionSpec<string[]>,
  rootCert: { flag: 'root-cert', env: 'WEFT_CA_ROOT_CERT', default: '', description: 'PEM root certificate file (with --root-key)', parse: parse.string() },
  rootKey: { flag: 'root-key', env: 'WEFT_CA_ROOT_KEY', default: '', description: 'PEM root private key file (with --root-cert)', parse: parse.string() },
  rootDir: {
    flag: 'root-dir', env: 'WEFT_CA_ROOT_DIR', default: '',
    description: 'directory holding root-cert.pem, root-key.pem and optionally trusted-roots.pem (earlier roots, during a rotation), e.g. the mounted weft-ca-root Secret; re-read every 10 s',
    parse: parse.string(),
  },
  rootInRedis: {
    flag: 'root-in-redis', env: 'WEFT_CA_ROOT_IN_REDIS', default: false, boolean: true,
    description: 'lab/dev only: keep the root (with its private key) in Redis weft:ca:root; refused with --kube-token-review',
    parse: parse.bool(),
  },
  generateRoot: {
    flag: 'generate-root', env: 'WEFT_CA_GENERATE_ROOT', default: false, boolean: true,
    description: 'generate a root when --root-dir or --root-in-redis holds none yet (lab/dev); without it a missing root fails the start',
    parse: parse.bool(),
  },
  rootOut: { flag: 'root-out', env: 'WEFT_CA_ROOT_OUT', default: '', description: 'also write the trust bundle (root certificates, public parts only) to this file for nodes to trust', parse: parse.string() },
  joinRate: {
    flag: 'join-rate', env: 'WEFT_CA_JOIN_RATE', default: DEFAULT_JOIN_RATE,
    description: 'Joins per second per caller address (bursts of 10x; all callers together 50x that, bursts of 100x)', parse: rate,
  },
  csrRate: {
    flag: 'csr-rate', env: 'WEFT_CA_CSR_RATE', default: DEFAULT_CSR_RATE,
    description: 'CreateCertificate requests per second per node (bursts of 10x; all nodes together 50x that, bursts of 100x)', parse: rate,
  },
  certTtl: {
    flag: 'cert-ttl', env: 'WEFT_CA_CERT_TTL', default: DEFAULT_CERT_TTL_MS, defaultText: formatDuration(DEFAULT_CERT_TTL_MS),
    description: 'workload certificate lifetime when a request asks for 0', parse: parse.duration({ min: 60_000 }),
  },
  maxCertTtl: {
    flag: 'max-cert-ttl', env: 'WEFT_CA_MAX_CERT_TTL', default: DEFAULT_MAX_CERT_TTL_MS, defaultText: formatDuration(DEFAULT_MAX_CERT_TTL_MS),
    description: 'longest lifetime a request may ask for (longer requests are refused); at most 90d', parse: parse.duration({ min: 60_000, max: MAX_CERT_TTL_CAP_MS }),
  },
  nodeCertTtl: {
    flag: 'node-cert-ttl', env: 'WEFT_CA_NODE_CERT_TTL', default: DEFAULT_NODE_CERT_TTL_MS, defaultText: formatDuration(DEFAULT_NODE_CERT_TTL_MS),
    description: 'node certificate lifetime (Join and renewal)', parse: parse.duration({ min: 60_000 }),
  },
  kubeTokenReview: {
    flag: 'kube-token-review', env: 'WEFT_CA_KUBE_TOKEN_REVIEW', default: false, boolean: true,
    description: 'admit nodes that join with a projected ServiceAccount token, checked with a Kubernetes TokenReview and the pod it is bound to',
    parse: parse.bool(),
  },
  kubeconfig: {
    flag: 'kubeconfig', env: 'WEFT_CA_KUBECONFIG', default: '', defaultText: 'in-cluster service account',
    description: 'kubeconfig file (its current-context) for --kube-token-review', parse: parse.string(),
  },
  joinSa: {
    flag: 'join-sa', env: 'WEFT_CA_JOIN_SA', default: { namespace: DEFAULT_JOIN_NAMESPACE, name: DEFAULT_JOIN_SERVICE_ACCOUNT },
    defaultText: `${DEFAULT_JOIN_NAMESPACE}/${DEFAULT_JOIN_SERVICE_ACCOUNT}`,
    description: 'the ServiceAccount (namespace/name) whose pods may join with their token, each as the node it runs on', parse: namespacedName,
  } satisfies OptionSpec<{ namespace: string; name: string }>,
  joinAudience: {
    flag: 'join-audience', env: 'WEFT_CA_JOIN_AUDIENCE', default: DEFAULT_JOIN_AUDIENCE,
    description: 'audience the ServiceAccount tokens must carry (the projected volume\'s audience)',
    parse: parse.string({ pattern: /^\S+$/, what: 'a non-empty audience without spaces' }),
  },
};

export const tokenSpecs = {
  ...redisOptionSpecs,
  node: { flag: 'node', env: 'WEFT_NODE_NAME', description: 'node the token admits', parse: parse.string({ pattern: /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, what: 'a node name' }) },
  ttl: { flag: 'ttl', default: HOUR_MS, defaultText: '1h', description: 'how long the token stays valid (reusable until then)', parse: parse.duration({ min: 1000, max: 30 * 24 * HOUR_MS }) },
};

export const identityTokenSpecs = {
  ...redisOptionSpecs,
  namespace: { flag: 'namespace', description: 'namespace of the one identity the token grants', parse: parse.string({ pattern: /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, what: 'a namespace name' }) },
  serviceAccount: { flag: 'service-account', description: 'service account of that identity (the waypoint\'s)', parse: parse.string({ pattern: /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, what: 'a service account name' }) },
  ttl: { flag: 'ttl', default: DAY_MS, defaultText: '24h', description: 'how long the token stays valid (reusable until then)', parse: parse.duration({ min: 1000, max: 30 * DAY_MS }) },
};

export const initRootSpecs = {
  trustDomain: commonOptions.trustDomain,
  dir: { flag: 'dir', env: 'WEFT_CA_ROOT_DIR', description: 'directory to create root-cert.pem and root-key.pem in (refused if either exists)', parse: parse.string({ pattern: /./, what: 'a directory' }) },
  ttl: { flag: 'ttl', default: 10 * 365 * DAY_MS, defaultText: '3650d', description: 'root lifetime', parse: parse.duration({ min: DAY_MS }) },
};

type CaValues = ReturnType<typeof parseOptions<typeof caSpecs>>['values'];

/** Cross-field rules, in one place: root source, serving names, TokenReview settings. */
export function caConfig(v: CaValues): CaAppConfig {
  if (Boolean(v.rootCert) !== Boolean(v.rootKey)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid ${v.rootCert ? '--root-cert without --root-key' : '--root-key without --root-cert'}: give both files, or neither`);
  }
  const sources = [v.rootCert && '--root-cert/--root-key', v.rootDir && '--root-dir', v.rootInRedis && '--root-in-redis'].filter(Boolean);
  if (sources.length > 1) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid ${sources.join(' together with ')}: choose one root source`);
  }
  if (sources.length === 0) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'no CA root given: set --root-dir (e.g. the mounted weft-ca-root Secret) or --root-cert/--root-key; create a root with `weft ca init-root --dir <dir>`. Lab/dev only: --root-in-redis');
  }
  if (v.rootInRedis && v.kubeTokenReview) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'invalid --root-in-redis together with --kube-token-review: a root key in Redis lets anyone who can read Redis mint any identity; give the root from a Secret (--root-dir)');
  }
  if (v.generateRoot && v.rootCert) {
    throw new WeftError('WEFT_CONFIG_INVALID', 'invalid --generate-root with --root-cert/--root-key: those files are yours to create; use `weft ca init-root --dir <dir>`');
  }
  const root: RootSource = v.rootCert
    ? { kind: 'files', certFile: v.rootCert, keyFile: v.rootKey }
    : v.rootDir ? { kind: 'dir', dir: v.rootDir } : { kind: 'redis' };
  if (!v.kubeTokenReview) {
    // The CA reads the Kubernetes API for nothing else: these alone are a mistake.
    const stray = v.kubeconfig ? '--kubeconfig' : undefined;
    if (stray) throw new WeftError('WEFT_CONFIG_INVALID', `invalid ${stray} without --kube-token-review: the CA uses the Kubernetes API only to review ServiceAccount tokens; add --kube-token-review or drop ${stray}`);
  }
  const ips = new Set(['127.0.0.1', ...v.ip]);
  if (v.listen.host !== '0.0.0.0' && v.listen.host !== '::' && isIP(v.listen.host)) ips.add(v.listen.host);
  return {
    redis: redisTarget(v), trustDomain: v.trustDomain, listen: v.listen, root,
    ...(v.generateRoot ? { generateRoot: true } : {}),
    joinRate: v.joinRate, csrRate: v.csrRate,
    ...(v.metricsListen ? { metricsListen: v.metricsListen } : {}),
    ...(v.rootOut ? { rootOut: v.rootOut } : {}),
    dnsNames: [...new Set(['localhost', ...v.dnsName])], ipAddresses: [...ips],
    certTtlMs: v.certTtl, maxCertTtlMs: v.maxCertTtl, nodeCertTtlMs: v.nodeCertTtl,
    ...(v.kubeTokenReview ? {
      tokenReview: {
        kubeconfig: v.kubeconfig,
        policy: { audience: v.joinAudience, namespace: v.joinSa.namespace, serviceAccount: v.joinSa.name },
      },
    } : {}),
  };
}

async function serve(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(caSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `weft ca takes no arguments (got ${positionals.join(' ')}); see weft ca --help`);
  const config = caConfig(values);
  const logger = createLogger({ level: values.logLevel, component: 'ca' });
  const app = await startCaApp(config, logger);
  const signal = await waitForShutdownSignal();
  logger.info({ signal }, 'weft ca stopping');
  await app.stop();
  logger.info('weft ca stopped');
  logger.flush();
  return 0;
}

async function token(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseOptions(tokenSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `weft ca token takes no arguments (got ${positionals.join(' ')}); use --node <name>`);
  const { token: tok, expiresAt } = await withRedis(values, (redis) => createJoinToken(redis, values.node, values.ttl));
  out(tok);
  process.stderr.write(`join token for node ${values.node}, valid until ${expiresAt.toISOString()} (replaces any earlier token for that node)\n`);
  return 0;
}

/** Connects to Redis for a token command, runs `fn`, disconnects. */
async function withRedis<T>(values: Parameters<typeof redisTarget>[0], fn: (redis: ReturnType<typeof openRedis>) => Promise<T>): Promise<T> {
  const redis = openRedis(redisTarget(values), { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', () => { /* reported by the command that fails */ });
  try {
    await redis.connect().catch((err: unknown) => {
      throw new WeftError('WEFT_REGISTRY_UNREACHABLE',
        `cannot reach Redis at --redis-url (${err instanceof Error ? err.message : String(err)}); check Redis runs and the URL`, { cause: err });
    });
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

async function identityToken(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseOptions(identityTokenSpecs, argv);
  if (positionals.length > 0) {
    throw new WeftError('WEFT_USAGE', `weft ca identity-token takes no arguments (got ${positionals.join(' ')}); use --namespace <ns> --service-account <sa>`);
  }
  const { token: tok, expiresAt } = await withRedis(values, (redis) =>
    createIdentityToken(redis, { namespace: values.namespace, serviceAccount: values.serviceAccount, ttlMs: values.ttl }));
  out(tok);
  process.stderr.write(`identity token for ${values.namespace}/${values.serviceAccount} (purpose waypoint), valid until ${expiresAt.toISOString()}; it gets that one identity from a CA without --kube-token-review\n`);
  return 0;
}

async function initRootCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseOptions(initRootSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `weft ca init-root takes no arguments (got ${positionals.join(' ')}); use --dir <dir>`);
  await initRoot(values.dir, { trustDomain: values.trustDomain, rootTtlMs: values.ttl });
  out(join(values.dir, ROOT_CERT_FILE));
  process.stderr.write(`new mesh root in ${values.dir} (${ROOT_KEY_FILE} is private, mode 0600); give it to the CA (Secret weft-ca-root) and ${ROOT_CERT_FILE} to every node (ConfigMap weft-root-cert) — see docs/ca.md\n`);
  return 0;
}

const command: Command = {
  summary: 'run the mesh certificate authority (gRPC, Istio-compatible)',
  help: () => [
    'Usage: weft ca [flags]                 run the CA (until SIGTERM/SIGINT)',
    '       weft ca token --node <name>     print a join token for a node (--ttl, default 1h)',
    '       weft ca identity-token --namespace <ns> --service-account <sa>',
    '                                       print a token that gets exactly that identity (a lab waypoint; --ttl, default 24h)',
    '       weft ca init-root --dir <dir>   create a new root (root-cert.pem, root-key.pem) in <dir>',
    '',
    'Serves istio.v1.auth.IstioCertificateService/CreateCertificate (mutual TLS with a node',
    'certificate) and weft.v1.NodeBootstrap/Join (join token, or with --kube-token-review a',
    'projected ServiceAccount token) on one TLS port. See docs/ca.md.',
    '',
    'Flags of weft ca:',
    optionsHelp(caSpecs),
    '',
    'Flags of weft ca token:',
    optionsHelp(tokenSpecs),
    '',
    'Flags of weft ca identity-token:',
    optionsHelp(identityTokenSpecs),
    '',
    'Flags of weft ca init-root:',
    optionsHelp(initRootSpecs),
  ].join('\n'),
  run: (argv) => {
    const print = (s: string) => { process.stdout.write(s + '\n'); };
    if (argv[0] === 'token') return token(argv.slice(1), print);
    if (argv[0] === 'init-root') return initRootCommand(argv.slice(1), print);
    if (argv[0] === 'identity-token') return identityToken(argv.slice(1), print);
    return serve(argv);
  },
};

export default command;
export { token as tokenCommand, initRootCommand, identityToken as identityTokenCommand };
