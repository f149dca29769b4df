/**
 * The one place a Redis client is made. Redis holds the mesh's state, so reaching it is
 * a credential: every component authenticates as its own ACL user (docs/registry.md,
 * "Access control") and, with a `rediss://` URL, verifies the server's certificate
 * against a CA bundle and may present a client certificate. The password and the TLS
 * material come from files (a mounted Secret), never from the command line, where any
 * user of the node could read them in /proc.
 *
 * The flags and their checks are in src/lib/common-options.ts (every component takes
 * them); this file turns the resulting connection into clients.
 *
 * Files are read each time a client is made, not once: the registry follower makes new
 * clients on every reconnect, so a rotated password or CA bundle (a Secret update the
 * kubelet writes into the mount) is picked up without a restart.
 */
import Redis, { type RedisOptions } from 'ioredis';
import { readRedisFile, readRedisPassword, type RedisConnection } from '../lib/common-options';
import { redactUrl } from '../lib/redact';

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
 * own). Reads the password and TLS files now, with the same check as at start: a file
 * gone or broken since is a WEFT_CONFIG_INVALID naming its flag.
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
  if (c.passwordFile) opts.password = readRedisPassword(c.passwordFile);
  if (c.caFile || c.certFile) {
    opts.tls = {
      ...(c.caFile ? { ca: readRedisFile('caFile', c.caFile) } : {}),
      ...(c.certFile ? { cert: readRedisFile('certFile', c.certFile) } : {}),
      ...(c.keyFile ? { key: readRedisFile('keyFile', c.keyFile) } : {}),
    };
  }
  return opts;
}

/** A new client for `target`; every ioredis client in Weft is made here. */
export function openRedis(target: RedisTarget, extra: RedisOptions = {}): Redis {
  return new Redis(toConnection(target).url, redisOptions(target, extra));
}
