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
 * With Sentinels (`--redis-sentinels`), ioredis asks them for the primary on every
 * connect, so a client that lost its connection in a failover reconnects to the new
 * primary; a client still connected to a demoted primary (a partition rather than a
 * crash) gets READONLY for a write and is made to reconnect too.
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
  const url = c.sentinel
    ? `Sentinel master ${c.sentinel.masterName} via ${c.sentinel.addresses.map((a) => `${a.host}:${a.port}`).join(',')}`
    : redactUrl(c.url);
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
  if (c.sentinel) Object.assign(opts, sentinelOptions(c, opts));
  return opts;
}

/** A write answered READONLY went to a demoted primary: reconnect (through the Sentinels) and resend it. */
export function isReadOnlyError(err: Error): boolean {
  return err.message.startsWith('READONLY');
}

/**
 * The Sentinel part of the options. The Sentinels are asked with the same TLS settings
 * as the servers (one CA signs both in the manifests); ioredis would otherwise speak
 * plain TCP to the primary it found, whatever the URL's scheme says.
 */
function sentinelOptions(c: RedisConnection, base: RedisOptions): RedisOptions {
  const s = c.sentinel!;
  const tls = new URL(c.url).protocol === 'rediss:';
  return {
    sentinels: s.addresses.map((a) => ({ host: a.host, port: a.port })),
    name: s.masterName,
    role: 'master',
    ...(s.username ? { sentinelUsername: s.username } : {}),
    ...(s.passwordFile ? { sentinelPassword: readRedisPassword(s.passwordFile, 'sentinelPasswordFile') } : {}),
    ...(tls ? { enableTLSForSentinelMode: true, tls: base.tls ?? {}, sentinelTLS: base.tls ?? {} } : {}),
    // When no Sentinel names a reachable primary, retry as the caller retries the
    // server: ioredis ends a client for good when this says stop, so a long-lived
    // writer (retrying) must keep asking through a failover, while the follower (no
    // retries: its own loop reconnects) sees the failure at once.
    ...('retryStrategy' in base ? { sentinelRetryStrategy: base.retryStrategy ?? (() => null) } : {}),
    reconnectOnError: (err) => (isReadOnlyError(err) ? 2 : false),
  };
}

/** A new client for `target`; every ioredis client in Weft is made here. */
export function openRedis(target: RedisTarget, extra: RedisOptions = {}): Redis {
  // With Sentinels the URL still gives user, password and database; its host is ignored.
  return new Redis(toConnection(target).url, redisOptions(target, extra));
}
