import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { WeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { generateRootCa, loadRootCa, type CaKeyPair } from './issuer';
import { writeFileAtomic } from '../lib/files';

/**
 * Where the mesh root lives. Production gives PEM files (the key never touches
 * Redis); the lab and small setups let the CA generate a root on first start and keep
 * it in Redis (every CA replica then converges on one root) or in a directory.
 */
export type RootSource =
  | { kind: 'files'; certFile: string; keyFile: string }
  | { kind: 'dir'; dir: string }
  | { kind: 'redis' };

/** The root pair (certificate AND key) when stored in Redis. Dev/lab only. */
export const ROOT_REDIS_KEY = 'weft:ca:root';
/** The published root certificate (public part), for nodes to trust. */
export const ROOT_CERT_REDIS_KEY = 'weft:ca:root-cert';

export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `cannot read the CA root ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the path and permissions`,
      { cause: err });
  }
}

export async function obtainRoot(
  source: RootSource,
  opts: { redis: Redis; trustDomain: string; logger: Logger; rootTtlMs?: number },
): Promise<CaKeyPair> {
  const generate = () => generateRootCa({ trustDomain: opts.trustDomain, ...(opts.rootTtlMs ? { ttlMs: opts.rootTtlMs } : {}) });
  switch (source.kind) {
    case 'files': {
      const pair = loadRootCa({ certPem: readPem(source.certFile, 'certificate'), keyPem: readPem(source.keyFile, 'key') });
      opts.logger.info({ certFile: source.certFile }, 'loaded CA root from files');
      return pair;
    }
    case 'dir': {
      const certFile = join(source.dir, ROOT_CERT_FILE);
      const keyFile = join(source.dir, ROOT_KEY_FILE);
      const haveCert = existsSync(certFile);
      const haveKey = existsSync(keyFile);
      if (haveCert && haveKey) {
        const pair = loadRootCa({ certPem: readPem(certFile, 'certificate'), keyPem: readPem(keyFile, 'key') });
        opts.logger.info({ dir: source.dir }, 'loaded CA root from directory');
        return pair;
      }
      if (haveCert !== haveKey) {
        throw new WeftError('WEFT_CA_ROOT_INVALID',
          `${source.dir} holds only ${haveCert ? ROOT_CERT_FILE : ROOT_KEY_FILE}; restore the missing half, or remove both to generate a new root (nodes must then trust the new one)`);
      }
      const pair = await generate();
      // Key first: a crash in between leaves a key without certificate, which the
      // check above reports instead of silently generating a second root.
      writeFileAtomic(keyFile, pair.keyPem, 0o600);
      writeFileAtomic(certFile, pair.certPem, 0o644);
      opts.logger.warn({ dir: source.dir }, 'generated a new CA root in directory');
      return pair;
    }
    case 'redis': {
      const existing = await opts.redis.get(ROOT_REDIS_KEY);
      if (existing !== null) return parseStoredRoot(existing, opts.logger);
      const pair = await generate();
      // NX: when two CA replicas start together, one root wins and both use it.
      const won = await opts.redis.set(ROOT_REDIS_KEY, JSON.stringify(pair), 'NX');
      if (won === 'OK') {
        opts.logger.warn({ key: ROOT_REDIS_KEY }, 'generated a new CA root and stored it in Redis (lab/dev setting: the root key is readable by anyone who can read Redis)');
        return pair;
      }
      const winner = await opts.redis.get(ROOT_REDIS_KEY);
      if (winner === null) throw new WeftError('WEFT_CA_ROOT_INVALID', `${ROOT_REDIS_KEY} vanished while starting; restart the CA`);
      return parseStoredRoot(winner, opts.logger);
    }
  }
}

function parseStoredRoot(raw: string, logger: Logger): CaKeyPair {
  let parsed: Partial<CaKeyPair>;
  try {
    parsed = JSON.parse(raw) as Partial<CaKeyPair>;
  } catch (err) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `Redis key ${ROOT_REDIS_KEY} is not JSON {certPem, keyPem}; delete it to generate a new root (nodes must then trust the new one)`,
      { cause: err });
  }
  const pair = loadRootCa({ certPem: String(parsed.certPem ?? ''), keyPem: String(parsed.keyPem ?? '') });
  logger.info({ key: ROOT_REDIS_KEY }, 'loaded CA root from Redis');
  return pair;
}

/** Makes the root certificate (public part only) available to nodes. */
export async function publishRoot(certPem: string, opts: { redis: Redis; outFile?: string }): Promise<void> {
  if (opts.outFile) writeFileAtomic(opts.outFile, certPem, 0o644);
  await opts.redis.set(ROOT_CERT_REDIS_KEY, certPem);
}
