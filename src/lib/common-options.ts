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

/**
 * Redis Sentinel: where to ask which server is the primary now. With it, the URL's host
 * and port are not used; its scheme (TLS), user, password and database still are.
 */
export interface RedisSentinel {
  /** The Sentinels to ask, in order (any one that answers will do). */
  addresses: { host: string; port: number }[];
  /** The monitored primary's name (`sentinel monitor NAME ...`). */
  masterName: string;
  /** ACL user on the Sentinels, when they require one. */
  username?: string;
  /** File whose first line is the Sentinels' password (`requirepass` of sentinel.conf). */
  passwordFile?: string;
}

/** A Redis to reach: the URL plus the credentials kept out of it. */
export interface RedisConnection extends RedisAuth {
  url: string;
  /** Present when the primary is found through Sentinels, which fail it over. */
  sentinel?: RedisSentinel;
}

/** The files a Redis connection reads, each read (at start and per client) with readRedisFile. */
export type RedisFile = 'passwordFile' | 'caFile' | 'certFile' | 'keyFile' | 'sentinelPasswordFile';

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
const pemCert = (t: string) => (PEM_CERT.test(t) ? undefined : 'no PEM certificate in it');

/** Each file's flag and what its contents must hold: the one check at start and at every read. */
const REDIS_FILES: Record<RedisFile, { flag: string; check: (text: string) => string | undefined }> = {
  passwordFile: { flag: 'redis-password-file', check: (t) => (firstLine(t) === '' ? 'the first line is empty; expected the password' : undefined) },
  caFile: { flag: 'redis-ca-file', check: pemCert },
  certFile: { flag: 'redis-cert-file', check: pemCert },
  keyFile: { flag: 'redis-key-file', check: (t) => (PEM_KEY.test(t) ? undefined : 'no PEM private key in it') },
  sentinelPasswordFile: { flag: 'redis-sentinel-password-file', check: (t) => (firstLine(t) === '' ? 'the first line is empty; expected the password' : undefined) },
};

/**
 * The contents of a Redis file, checked, when a client is made: WEFT_CONFIG_INVALID
 * naming its flag when it became unreadable or wrong since start.
 */
export function readRedisFile(field: RedisFile, file: string): string {
  const { flag, check } = REDIS_FILES[field];
  return readFlagFile(flag, file, check);
}

/** The password in --redis-password-file, or another password file (its first line). */
export function readRedisPassword(file: string, field: 'passwordFile' | 'sentinelPasswordFile' = 'passwordFile'): string {
  return firstLine(readRedisFile(field, file));
}

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[^\s:,[\]]+):(\d{1,5})$/;

/** `host:port,host:port` (IPv6 in brackets) into addresses; throws saying which entry is wrong. */
export function parseSentinelAddresses(raw: string): { host: string; port: number }[] {
  const parts = raw.split(',').map((p) => p.trim());
  return parts.map((p, i) => {
    const m = HOST_PORT.exec(p);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) {
      throw new Error(`entry ${i + 1} (${JSON.stringify(p)}) is not host:port; expected a comma-separated list such as redis-sentinel-0:26379,redis-sentinel-1:26379`);
    }
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
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

/** A Redis ACL user name, as Redis and a redis:// URL's user part accept it. */
const aclUserName = parse.string({ pattern: /^[^\s@:/]+$/, what: 'an ACL user name without spaces, "@", ":" or "/"' });

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
    parse: aclUserName,
  } satisfies OptionSpec<string>,
  redisPasswordFile: fileOption('passwordFile', 'file holding the Redis password (first line)', 'none'),
  redisCaFile: fileOption('caFile', 'PEM bundle of the CAs trusted to sign the Redis server certificate (rediss:// only)', 'system CAs'),
  redisCertFile: fileOption('certFile', 'PEM client certificate for Redis (rediss:// only; with --redis-key-file)', 'none'),
  redisKeyFile: fileOption('keyFile', 'PEM private key of --redis-cert-file', 'none'),
  // Sentinel: values stay text here (the CLI overlays flags on a context's values by
  // text); redisTarget turns them into RedisSentinel, once.
  redisSentinels: {
    flag: 'redis-sentinels', env: 'WEFT_REDIS_SENTINELS', default: '', defaultText: 'none: --redis-url is the server',
    description: 'Redis Sentinels to ask for the current primary, host:port,host:port (with --redis-master-name; the URL then gives only scheme, user and database)',
    parse: (raw: string) => { parseSentinelAddresses(raw); return raw; },
  } satisfies OptionSpec<string>,
  redisMasterName: {
    flag: 'redis-master-name', env: 'WEFT_REDIS_MASTER_NAME', default: '', defaultText: 'none',
    description: 'name the Sentinels monitor the registry primary under (with --redis-sentinels)',
    parse: parse.string({ pattern: /^[A-Za-z0-9._-]{1,64}$/, what: 'a Sentinel master name of letters, digits, ".", "_" or "-" (at most 64)' }),
  } satisfies OptionSpec<string>,
  redisSentinelUsername: {
    flag: 'redis-sentinel-username', env: 'WEFT_REDIS_SENTINEL_USERNAME', default: '', defaultText: 'none',
    description: 'ACL user on the Sentinels, when they require one',
    parse: aclUserName,
  } satisfies OptionSpec<string>,
  redisSentinelPasswordFile: fileOption('sentinelPasswordFile', 'file holding the Sentinels\' password (first line), when they require one', 'none'),
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
    ...sentinelOf(v),
  };
}

/** The Sentinel part of redisTarget: both of --redis-sentinels and --redis-master-name, or neither. */
function sentinelOf(v: RedisOptionValues): { sentinel?: RedisSentinel } {
  if (!v.redisSentinels) {
    const stray = v.redisMasterName ? '--redis-master-name' : v.redisSentinelUsername ? '--redis-sentinel-username'
      : v.redisSentinelPasswordFile ? '--redis-sentinel-password-file' : undefined;
    if (stray) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        `invalid ${stray} without --redis-sentinels: it only applies when the primary is found through Sentinels; add --redis-sentinels host:port,... or drop ${stray}`);
    }
    return {};
  }
  if (!v.redisMasterName) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'invalid --redis-sentinels without --redis-master-name: the Sentinels monitor primaries by name; add --redis-master-name (e.g. weft-registry, as in sentinel.conf)');
  }
  return {
    sentinel: {
      addresses: parseSentinelAddresses(v.redisSentinels),
      masterName: v.redisMasterName,
      ...(v.redisSentinelUsername ? { username: v.redisSentinelUsername } : {}),
      ...(v.redisSentinelPasswordFile ? { passwordFile: v.redisSentinelPasswordFile } : {}),
    },
  };
}

/** The option values that describe `c`: the inverse of redisTarget, for overlaying flags on a context's connection. */
export function redisValuesOf(c: RedisConnection): RedisOptionValues {
  return {
    redisUrl: c.url, redisUsername: c.username ?? '', redisPasswordFile: c.passwordFile ?? '',
    redisCaFile: c.caFile ?? '', redisCertFile: c.certFile ?? '', redisKeyFile: c.keyFile ?? '',
    redisSentinels: c.sentinel ? c.sentinel.addresses.map((a) => `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`).join(',') : '',
    redisMasterName: c.sentinel?.masterName ?? '',
    redisSentinelUsername: c.sentinel?.username ?? '', redisSentinelPasswordFile: c.sentinel?.passwordFile ?? '',
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

/** How a component reaches the CA and checks its certificate: the ztunnel and the waypoint both spread these into their specs. */
export const caClientOptions = {
  caAddress: {
    flag: 'ca-address', env: 'WEFT_CA_ADDRESS', default: { host: '127.0.0.1', port: 15012 },
    defaultText: '127.0.0.1:15012', description: 'CA gRPC address host:port', parse: parse.hostPort(),
  },
  trustAnchorFile: {
    flag: 'trust-anchor-file', env: 'WEFT_TRUST_ANCHOR_FILE',
    description: 'PEM file with the mesh root certificate, or during a rotation the bundle of old and new roots (ConfigMap weft-root-cert); re-read every 5 s',
    parse: parse.string({ pattern: /./, what: 'a file path' }),
  },
  caServerName: {
    flag: 'ca-server-name', env: 'WEFT_CA_SERVER_NAME', default: '',
    description: 'name expected in the CA serving certificate (empty: the CA address host)', parse: parse.string(),
  },
};
