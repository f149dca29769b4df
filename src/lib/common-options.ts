import type { LevelWithSilent } from 'pino';
import { WeftError } from './errors';
import { firstLine, readConfigFile, readFlagFile } from './files';
import { isValidTrustDomain } from './identity';
import { LOG_LEVELS } from './log';
import { parse, type OptionSpec, type OptionValues } from './options';
import { redactUrl } from './redact';

/** How to authenticate to Redis, beyond what the URL says. Every field optional. */
export interface RedisAuth {
  /** ACL user; overrides the URL's user name (one URL shared by components, a user each). */
  username?: string;
  /** File whose first line is the password (a Secret's key). */
  passwordFile?: string;
  /** PEM bundle of the CAs that may sign the server certificate (`rediss://` only). */
  caFile?: string;
  /** Client certificate and key, for a Redis with `tls-auth-clients yes` (`rediss://` only). */
  certFile?: string;
  keyFile?: string;
}

/** A Redis to reach: the URL plus the credentials kept out of it. */
export interface RedisConnection extends RedisAuth {
  url: string;
}

/** The files a Redis connection reads, each read (at start and per client) with readRedisFile. */
export type RedisFile = 'passwordFile' | 'caFile' | 'certFile' | 'keyFile';

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
const pemCert = (t: string) => (PEM_CERT.test(t) ? undefined : 'no PEM certificate in it');

/** Each file's flag and what its contents must hold: the one check at start and at every read. */
const REDIS_FILES: Record<RedisFile, { flag: string; check: (text: string) => string | undefined }> = {
  passwordFile: { flag: 'redis-password-file', check: (t) => (firstLine(t) === '' ? 'the first line is empty; expected the password' : undefined) },
  caFile: { flag: 'redis-ca-file', check: pemCert },
  certFile: { flag: 'redis-cert-file', check: pemCert },
  keyFile: { flag: 'redis-key-file', check: (t) => (PEM_KEY.test(t) ? undefined : 'no PEM private key in it') },
};

/**
 * The contents of a Redis file, checked, when a client is made: WEFT_CONFIG_INVALID
 * naming its flag when it became unreadable or wrong since start.
 */
export function readRedisFile(field: RedisFile, file: string): string {
  const { flag, check } = REDIS_FILES[field];
  return readFlagFile(flag, file, check);
}

/** The password in --redis-password-file (its first line). */
export function readRedisPassword(file: string): string {
  return firstLine(readRedisFile('passwordFile', file));
}

function fileOption(field: RedisFile, description: string, defaultText: string): OptionSpec<string> {
  const { flag } = REDIS_FILES[field];
  return {
    flag, env: `WEFT_${flag.toUpperCase().replace(/-/g, '_')}`, default: '', defaultText, description,
    // Read now so a missing Secret fails the start, not the first connection; the
    // refusal names the flag or the variable the path came from.
    parse: (raw) => {
      if (raw !== '') readConfigFile(raw, REDIS_FILES[field].check);
      return raw;
    },
  };
}

/**
 * The Redis flags, one group every component spreads into its specs (the CLI only
 * changes redisUrl's default); `redisTarget` turns their values into the connection.
 */
export const redisOptionSpecs = {
  redisUrl: {
    flag: 'redis-url', env: 'WEFT_REDIS_URL', default: 'redis://127.0.0.1:6379',
    description: 'Redis holding the registry (rediss:// for TLS; put the password in --redis-password-file, not here)',
    parse: parse.url(['redis:', 'rediss:']),
  } satisfies OptionSpec<string>,
  redisUsername: {
    flag: 'redis-username', env: 'WEFT_REDIS_USERNAME', default: '', defaultText: "the URL's, else default",
    description: 'Redis ACL user of this component',
    parse: parse.string({ pattern: /^[^\s@:/]+$/, what: 'an ACL user name without spaces, "@", ":" or "/"' }),
  } satisfies OptionSpec<string>,
  redisPasswordFile: fileOption('passwordFile', 'file holding the Redis password (first line)', 'none'),
  redisCaFile: fileOption('caFile', 'PEM bundle of the CAs trusted to sign the Redis server certificate (rediss:// only)', 'system CAs'),
  redisCertFile: fileOption('certFile', 'PEM client certificate for Redis (rediss:// only; with --redis-key-file)', 'none'),
  redisKeyFile: fileOption('keyFile', 'PEM private key of --redis-cert-file', 'none'),
};

export type RedisOptionValues = OptionValues<typeof redisOptionSpecs>;

/** The Redis flags' cross-field rules, and the one connection they describe (what a config holds). */
export function redisTarget(v: RedisOptionValues): RedisConnection {
  const url = new URL(v.redisUrl);
  const tls = url.protocol === 'rediss:';
  if (!tls) {
    const stray = v.redisCaFile ? '--redis-ca-file' : v.redisCertFile ? '--redis-cert-file' : v.redisKeyFile ? '--redis-key-file' : undefined;
    if (stray) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        `invalid ${stray} with a plain redis:// --redis-url (${redactUrl(v.redisUrl)}): TLS files need a rediss:// URL; change the scheme or drop ${stray}`);
    }
  }
  if (Boolean(v.redisCertFile) !== Boolean(v.redisKeyFile)) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid ${v.redisCertFile ? '--redis-cert-file without --redis-key-file' : '--redis-key-file without --redis-cert-file'}: a client certificate needs both`);
  }
  if (url.password && v.redisPasswordFile) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid --redis-url with a password together with --redis-password-file: give the password once, in the file (${redactUrl(v.redisUrl)})`);
  }
  return {
    url: v.redisUrl,
    ...(v.redisUsername ? { username: v.redisUsername } : {}),
    ...(v.redisPasswordFile ? { passwordFile: v.redisPasswordFile } : {}),
    ...(v.redisCaFile ? { caFile: v.redisCaFile } : {}),
    ...(v.redisCertFile ? { certFile: v.redisCertFile, keyFile: v.redisKeyFile } : {}),
  };
}

/** The option values that describe `c`: the inverse of redisTarget, for overlaying flags on a context's connection. */
export function redisValuesOf(c: RedisConnection): RedisOptionValues {
  return {
    redisUrl: c.url, redisUsername: c.username ?? '', redisPasswordFile: c.passwordFile ?? '',
    redisCaFile: c.caFile ?? '', redisCertFile: c.certFile ?? '', redisKeyFile: c.keyFile ?? '',
  };
}

/** Settings every component shares; each component spreads these into its own specs. */
export const commonOptions = {
  ...redisOptionSpecs,
  trustDomain: {
    flag: 'trust-domain', env: 'WEFT_TRUST_DOMAIN', default: 'cluster.local',
    description: 'SPIFFE trust domain of the mesh',
    parse: (raw: string) => {
      if (!isValidTrustDomain(raw)) throw new Error('expected a lower-case DNS name such as cluster.local');
      return raw;
    },
  } satisfies OptionSpec<string>,
  logLevel: {
    flag: 'log-level', env: 'WEFT_LOG_LEVEL', default: 'info' as LevelWithSilent,
    description: 'log level', parse: parse.oneOf(LOG_LEVELS),
  } satisfies OptionSpec<LevelWithSilent>,
};
