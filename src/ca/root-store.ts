import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { WeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { generateRootCa, loadRootCa, type CaKeyPair } from './issuer';
import { watchFiles, writeFileAtomic } from '../lib/files';
import { parseTrustBundle } from './trust-bundle';

/**
 * Where the mesh root lives. Production: PEM files from a Secret (`files`, or a `dir`
 * holding root-cert.pem/root-key.pem), so the key never touches Redis. Redis-kept
 * roots exist for lab/dev only, behind --root-in-redis.
 *
 * A missing root is never replaced silently: a new root means every node must be
 * told to trust it, so generating one is always asked for explicitly (`weft ca
 * init-root`, or --generate-root), and otherwise a missing root fails the start with
 * WEFT_CA_ROOT_MISSING.
 */
export type RootSource =
  | { kind: 'files'; certFile: string; keyFile: string }
  | { kind: 'dir'; dir: string }
  | { kind: 'redis' };

/** The root the CA signs with, and the other roots it still trusts (rotation overlap). */
export interface CaRoot {
  pair: CaKeyPair;
  /** PEM certificates of earlier roots whose certificates are still honoured. */
  trusted: string[];
}

/** The root pair (certificate AND key) when stored in Redis. Dev/lab only (--root-in-redis). */
export const ROOT_REDIS_KEY = 'weft:ca:root';

export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';
/** Optional, in a root directory: earlier roots still trusted during a rotation. */
export const TRUSTED_ROOTS_FILE = 'trusted-roots.pem';

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WeftError(code === 'ENOENT' ? 'WEFT_CA_ROOT_MISSING' : 'WEFT_CA_ROOT_INVALID',
      `cannot read the CA root ${what} ${file} (${code ?? String(err)}); check the path and permissions (on Kubernetes: the weft-ca-root Secret and its mount). The CA never generates a root in place of a missing one`,
      { cause: err });
  }
}

export interface ObtainRootOptions {
  /** Only for the Redis source. */
  redis?: Redis;
  trustDomain: string;
  logger: Logger;
  /** Generate a root when none exists yet (--generate-root): an explicit choice, never a fallback. */
  generate?: boolean;
  rootTtlMs?: number;
}

export async function obtainRoot(source: RootSource, opts: ObtainRootOptions): Promise<CaRoot> {
  switch (source.kind) {
    case 'files': {
      const pair = loadRootCa({ certPem: readPem(source.certFile, 'certificate'), keyPem: readPem(source.keyFile, 'key') });
      opts.logger.info({ certFile: source.certFile }, 'loaded CA root from files');
      return { pair, trusted: [] };
    }
    case 'dir':
      return rootFromDir(source.dir, opts);
    case 'redis':
      return { pair: await rootFromRedis(opts), trusted: [] };
  }
}

async function rootFromDir(dir: string, opts: ObtainRootOptions): Promise<CaRoot> {
  const certFile = join(dir, ROOT_CERT_FILE);
  const keyFile = join(dir, ROOT_KEY_FILE);
  const haveCert = existsSync(certFile);
  const haveKey = existsSync(keyFile);
  if (haveCert !== haveKey) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `${dir} holds only ${haveCert ? ROOT_CERT_FILE : ROOT_KEY_FILE}; restore the missing half (nothing is generated over a partial root)`);
  }
  if (!haveCert) {
    if (!opts.generate) {
      throw new WeftError('WEFT_CA_ROOT_MISSING',
        `no CA root in --root-dir=${dir} (${ROOT_CERT_FILE} and ${ROOT_KEY_FILE} are missing); restore them (on Kubernetes the weft-ca-root Secret), or create a new root on purpose with \`weft ca init-root --dir ${dir}\` (every node must then trust it)`);
    }
    const pair = await initRoot(dir, opts);
    opts.logger.warn({ dir }, 'generated a new CA root in directory (--generate-root)');
    return { pair, trusted: [] };
  }
  const pair = loadRootCa({ certPem: readPem(certFile, 'certificate'), keyPem: readPem(keyFile, 'key') });
  const trustedFile = join(dir, TRUSTED_ROOTS_FILE);
  const trusted = existsSync(trustedFile)
    ? parseTrustBundle(readPem(trustedFile, 'trust bundle'), trustedFile).roots.map((r) => r.toString())
    : [];
  opts.logger.info({ dir, trustedRoots: trusted.length }, 'loaded CA root from directory');
  return { pair, trusted };
}

/**
 * Generates a root into `dir` (root-key.pem mode 0600, root-cert.pem), refusing to
 * overwrite either file. `weft ca init-root` and --generate-root use it.
 */
export async function initRoot(dir: string, opts: { trustDomain: string; rootTtlMs?: number }): Promise<CaKeyPair> {
  const certFile = join(dir, ROOT_CERT_FILE);
  const keyFile = join(dir, ROOT_KEY_FILE);
  for (const f of [certFile, keyFile]) {
    if (existsSync(f)) throw new WeftError('WEFT_CONFIG_INVALID', `${f} already exists; a root is never overwritten: move it away first if you really mean to replace it`);
  }
  const pair = await generateRootCa({ trustDomain: opts.trustDomain, ...(opts.rootTtlMs ? { ttlMs: opts.rootTtlMs } : {}) });
  // Key first: a crash in between leaves a key without certificate, which rootFromDir
  // reports instead of generating a second root.
  writeFileAtomic(keyFile, pair.keyPem, 0o600);
  writeFileAtomic(certFile, pair.certPem, 0o644);
  return pair;
}

async function rootFromRedis(opts: ObtainRootOptions): Promise<CaKeyPair> {
  const redis = opts.redis;
  if (!redis) throw new Error('rootFromRedis needs a Redis client');
  const existing = await redis.get(ROOT_REDIS_KEY);
  if (existing !== null) return parseStoredRoot(existing, opts.logger);
  if (!opts.generate) {
    throw new WeftError('WEFT_CA_ROOT_MISSING',
      `no CA root in Redis ${ROOT_REDIS_KEY} (Redis restarted without persistence, or the key was deleted); the CA does not mint a new one silently: add --generate-root to create one on purpose (every node must then trust it)`);
  }
  const pair = await generateRootCa({ trustDomain: opts.trustDomain, ...(opts.rootTtlMs ? { ttlMs: opts.rootTtlMs } : {}) });
  // NX: when two CA replicas start together, one root wins and both use it.
  const won = await redis.set(ROOT_REDIS_KEY, JSON.stringify(pair), 'NX');
  if (won === 'OK') {
    opts.logger.warn({ key: ROOT_REDIS_KEY }, 'generated a new CA root and stored it in Redis (--root-in-redis --generate-root, lab/dev only: the root key is readable by anyone who can read Redis)');
    return pair;
  }
  const winner = await redis.get(ROOT_REDIS_KEY);
  if (winner === null) throw new WeftError('WEFT_CA_ROOT_MISSING', `${ROOT_REDIS_KEY} vanished while starting; restart the CA`);
  return parseStoredRoot(winner, opts.logger);
}

function parseStoredRoot(raw: string, logger: Logger): CaKeyPair {
  let parsed: Partial<CaKeyPair>;
  try {
    parsed = JSON.parse(raw) as Partial<CaKeyPair>;
  } catch (err) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `Redis key ${ROOT_REDIS_KEY} is not JSON {certPem, keyPem}; restore it, or delete it and start once with --generate-root (nodes must then trust the new root)`,
      { cause: err });
  }
  const pair = loadRootCa({ certPem: String(parsed.certPem ?? ''), keyPem: String(parsed.keyPem ?? '') });
  logger.warn({ key: ROOT_REDIS_KEY }, 'loaded CA root from Redis (lab/dev only)');
  return pair;
}

/** The trust bundle a CA with `root` publishes: its signing root first, then the earlier roots. */
export function bundleOf(root: CaRoot): string {
  return [root.pair.certPem.trim(), ...root.trusted.map((p) => p.trim())].join('\n') + '\n';
}

/** Writes the trust bundle (public parts only) for nodes to trust (--root-out). */
export function publishRoot(root: CaRoot, outFile: string): void {
  writeFileAtomic(outFile, bundleOf(root), 0o644);
}

/**
 * Re-reads a file-backed root every `intervalMs` (watchFiles) and hands a changed, valid
 * root to `onChange`; an unreadable or invalid one (e.g. half of a Secret update), or an
 * `onChange` that fails, goes to `onError` and the current root stays in force until a
 * later poll applies it. Redis roots are not watched. Returns a stop function.
 */
export function watchRoot(
  source: RootSource,
  opts: ObtainRootOptions & { intervalMs: number; onChange: (root: CaRoot) => void | Promise<void>; onError: (err: unknown) => void },
): () => void {
  if (source.kind === 'redis') return () => undefined;
  const files = source.kind === 'files'
    ? [source.certFile, source.keyFile]
    : [ROOT_CERT_FILE, ROOT_KEY_FILE, TRUSTED_ROOTS_FILE].map((f) => join(source.dir, f));
  // The texts only tell that something changed; obtainRoot reads and checks the files itself.
  const watch = watchFiles(files, {
    intervalMs: opts.intervalMs,
    onChange: async () => opts.onChange(await obtainRoot(source, { ...opts, generate: false })),
    onError: opts.onError,
  });
  return () => watch.stop();
}
