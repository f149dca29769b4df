/**
 * The one place a Redis client is made. Redis holds the mesh's state, so reaching it is
 * a credential: every component authenticates as its own ACL user (docs/registry.md,
 * "Access control") and, with a `rediss://` URL, verifies the server's certificate
 * against a CA bundle and may present a client certificate. The password and the TLS
 * material come from files (a mounted Secret), never from the command line, where any
 * user of the node could read them in /proc.
 *
 * Files are read each time a client is made, not once: the registry follower makes new
 * clients on every reconnect, so a rotated password or CA bundle (a Secret update the
 * kubelet writes into the mount) is picked up without a restart.
 */
import { readFileSync } from 'node:fs';
import Redis, { type RedisOptions } from 'ioredis';
import { WeftError } from '../lib/errors';
import { parse, type OptionSpec } from '../lib/options';
import { redactUrl } from '../lib/redact';

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

/** What the registry and the CA accept: a bare URL (tests, the lab) or a full connection. */
export type RedisTarget = string | RedisConnection;

export function toConnection(target: RedisTarget): RedisConnection {
  return typeof target === 'string' ? { url: target } : target;
}

/** The target's URL with any password masked, for messages and logs. */
export function describeRedis(target: RedisTarget): string {
  const c = toConnection(target);
  const url = redactUrl(c.url);
  return c.username ? `${url} (user ${c.username})` : url;
}

/**
 * ioredis options for `target`, merged over `extra` (timeouts, retries: each caller's
 * own). Reads the password and TLS files now. A file that cannot be read is a
 * WEFT_CONFIG_INVALID naming its flag: it was checked at start, so it went away since.
 */
export function redisOptions(target: RedisTarget, extra: RedisOptions = {}): RedisOptions {
  const c = toConnection(target);
  const opts: RedisOptions = {
    // The ACL users (daemonset/redis-acl.rules) get neither INFO, which ioredis' ready
    // check sends, nor CLIENT SETINFO: asking would only fill Redis' ACL LOG with
    // denials. A Redis still loading its file answers LOADING, which every caller
    // already treats as a failed attempt and retries.
    enableReadyCheck: false,
    disableClientInfo: true,
    ...extra,
  };
  if (c.username) opts.username = c.username;
  if (c.passwordFile) opts.password = readPassword(c.passwordFile, '--redis-password-file');
  if (c.caFile || c.certFile) {
    opts.tls = {
      ...(c.caFile ? { ca: readFileFor(c.caFile, '--redis-ca-file') } : {}),
      ...(c.certFile ? { cert: readFileFor(c.certFile, '--redis-cert-file') } : {}),
      ...(c.keyFile ? { key: readFileFor(c.keyFile, '--redis-key-file') } : {}),
    };
  }
  return opts;
}

/** A new client for `target`; every ioredis client in Weft is made here. */
export function openRedis(target: RedisTarget, extra: RedisOptions = {}): Redis {
  return new Redis(toConnection(target).url, redisOptions(target, extra));
}

// ---- flags: validated at the edge, shared by every component ----

function fileParser(what: string, check?: (text: string) => string | undefined) {
  return (raw: string): string => {
    if (raw === '') return raw;
    let text: string;
    try {
      text = readFileSync(raw, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${what} ${raw} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); mount the Secret there or fix the path`);
    }
    const problem = check?.(text);
    if (problem) throw new Error(`${raw}: ${problem}`);
    return raw;
  };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** The Redis flags every component takes (spread into its option specs). */
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
  redisPasswordFile: {
    flag: 'redis-password-file', env: 'WEFT_REDIS_PASSWORD_FILE', default: '', defaultText: 'none',
    description: 'file holding the Redis password (first line)',
    parse: fileParser('the Redis password file', (t) => (passwordOf(t) === '' ? 'the first line is empty; expected the password' : undefined)),
  } satisfies OptionSpec<string>,
  redisCaFile: {
    flag: 'redis-ca-file', env: 'WEFT_REDIS_CA_FILE', default: '', defaultText: 'system CAs',
    description: 'PEM bundle of the CAs trusted to sign the Redis server certificate (rediss:// only)',
    parse: fileParser('the Redis CA bundle', (t) => (PEM_CERT.test(t) ? undefined : 'no PEM certificate in it')),
  } satisfies OptionSpec<string>,
  redisCertFile: {
    flag: 'redis-cert-file', env: 'WEFT_REDIS_CERT_FILE', default: '', defaultText: 'none',
    description: 'PEM client certificate for Redis (rediss:// only; with --redis-key-file)',
    parse: fileParser('the Redis client certificate', (t) => (PEM_CERT.test(t) ? undefined : 'no PEM certificate in it')),
  } satisfies OptionSpec<string>,
  redisKeyFile: {
    flag: 'redis-key-file', env: 'WEFT_REDIS_KEY_FILE', default: '', defaultText: 'none',
    description: 'PEM private key of --redis-cert-file',
    parse: fileParser('the Redis client key', (t) => (PEM_KEY.test(t) ? undefined : 'no PEM private key in it')),
  } satisfies OptionSpec<string>,
};

export interface RedisOptionValues {
  readonly redisUrl: string;
  readonly redisUsername: string;
  readonly redisPasswordFile: string;
  readonly redisCaFile: string;
  readonly redisCertFile: string;
  readonly redisKeyFile: string;
}

/** The cross-field rules of the Redis flags, and the connection they describe. */
export function redisConnection(v: RedisOptionValues): RedisConnection {
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

function passwordOf(text: string): string {
  return text.split(/\r?\n/, 1)[0] ?? '';
}

function readFileFor(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `cannot read ${flag}=${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it was readable at start: is the Secret still mounted?`,
      { cause: err });
  }
}

function readPassword(file: string, flag: string): string {
  const pw = passwordOf(readFileFor(file, flag));
  if (pw === '') throw new WeftError('WEFT_CONFIG_INVALID', `${flag}=${file} is empty now; expected the password on its first line`);
  return pw;
}
