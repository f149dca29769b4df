/**
 * TrafficPolicy section `spec.loadBalancer`: how the waypoint chooses one endpoint of
 * the Service per attempt.
 *
 *   loadBalancer:
 *     type: RoundRobin | LeastRequest | EWMA | ConsistentHash     # default: DEFAULT_BALANCER_TYPE
 *     consistentHash:                                           # only with ConsistentHash
 *       header: x-user                 # exactly one key source of these four
 *       cookie: { name: session, ttl: 1h, path: / }
 *       sourceIP: true
 *       queryParameter: user
 *       algorithm: Ring | Maglev       # default Ring (as Istio)
 *       minimumRingSize: 1024          # Ring only
 *       tableSize: 65537               # Maglev only; a prime
 *
 * The pure balancers are in balance.ts, the hash tables in balance-hash.ts, the key
 * taken from a request in balance-key.ts.
 */
import { parseDuration } from '../gateway/duration';
import { optDuration, optInt } from '../gateway/validate-common';
import { checkString, FieldError, join, Obj, type StringRule, type UnknownKeys } from '../registry/checks';

export const BALANCER_TYPES = ['RoundRobin', 'LeastRequest', 'EWMA', 'ConsistentHash'] as const;
export type BalancerType = typeof BALANCER_TYPES[number];

/**
 * The balancer of a Service whose TrafficPolicy leaves `loadBalancer` (or its `type`)
 * out. Peak EWMA measured best with one slow endpoint of four (docs/resilience.md,
 * test/e2e/resilience/hash.ts and src/bench/balance.ts print the figures). A
 * Service without any TrafficPolicy keeps plain round robin, which costs nothing per
 * request (no latency tracking).
 */
export const DEFAULT_BALANCER_TYPE: BalancerType = 'EWMA';

export const HASH_ALGORITHMS = ['Ring', 'Maglev'] as const;
export type HashAlgorithm = typeof HASH_ALGORITHMS[number];

/** Istio's and Envoy's defaults. */
export const DEFAULT_MINIMUM_RING_SIZE = 1024;
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/**
 * Bounds on a table build, which blocks the waypoint at each endpoint change (an
 * ejection and a return are two). The ring is the costly one: an md5 per four points,
 * about 0.1 s for 1 << 16 points on the lab machine, up to four times that once the
 * endpoints have grown (ringPointsPerHost); 1 << 20 took seconds.
 */
export const MAX_RING_SIZE = 1 << 16;
export const MAX_MAGLEV_TABLE_SIZE = 1_000_003;

/** Where the hash key of a request comes from. */
export type HashKeySource =
  | { kind: 'header'; /** lower case */ name: string }
  /** With `ttlMs`, a request without the cookie gets one (set-cookie) so its next requests stick. */
  | { kind: 'cookie'; name: string; ttlMs?: number; path?: string }
  | { kind: 'sourceIP' }
  | { kind: 'queryParameter'; name: string };

/**
 * As written, defaults filled in: exactly one key source, the algorithm, and that
 * algorithm's size. The spec is stored and read back through this validator, so its
 * output is valid input (hashKeySource() turns it into what a balancer runs).
 */
export interface ConsistentHashSpec {
  /** Lower case. */
  header?: string;
  cookie?: { name: string; ttl?: string; path?: string };
  sourceIP?: true;
  queryParameter?: string;
  algorithm: HashAlgorithm;
  /** Ring only: points on the ring in all (spread over the endpoints). */
  minimumRingSize?: number;
  /** Maglev only: lookup table entries (prime). */
  tableSize?: number;
}

export interface LoadBalancerSpec {
  type: BalancerType;
  /** Present exactly when `type` is ConsistentHash. */
  consistentHash?: ConsistentHashSpec;
}

/** The defaults in force for a TrafficPolicy without a `loadBalancer` section. */
export const DEFAULT_LOAD_BALANCER: LoadBalancerSpec = Object.freeze({ type: DEFAULT_BALANCER_TYPE });

/** RFC 9110 token: header and cookie names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const token: StringRule = (s) => (s.length > 0 && s.length <= 256 && TOKEN.test(s) ? undefined : 'must be an HTTP token (letters, digits and !#$%&\'*+-.^_`|~, 1-256 characters)');
const queryName: StringRule = (s) => (s.length > 0 && s.length <= 256 && !/[\s&=#\u0000-\u001f]/.test(s) ? undefined : 'must be 1-256 characters without spaces, "&", "=" or "#"');
const cookiePath: StringRule = (s) => (s.startsWith('/') && s.length <= 1024 && !/[\s;,\u0000-\u001f]/.test(s) ? undefined : 'must start with "/" and contain no spaces, ";" or ","');

/** Validates `spec.loadBalancer` at `path`; throws FieldError naming the field. */
export function validateLoadBalancer(v: unknown, path: string, unknown: UnknownKeys): LoadBalancerSpec {
  const o = new Obj(v, path, ['type', 'consistentHash'], unknown);
  const hashed = o.has('consistentHash');
  const type = o.optOneOf('type', BALANCER_TYPES) ?? (hashed ? 'ConsistentHash' : DEFAULT_BALANCER_TYPE);
  if (type === 'ConsistentHash') {
    if (!hashed) throw new FieldError(join(path, 'consistentHash'), 'is required with type ConsistentHash (the key: header, cookie, sourceIP or queryParameter)');
    return { type, consistentHash: validateConsistentHash(o.o.consistentHash, join(path, 'consistentHash'), unknown) };
  }
  if (hashed) throw new FieldError(join(path, 'consistentHash'), `applies only with type ConsistentHash, got type ${type}; remove it or set type: ConsistentHash`);
  return { type };
}

const KEY_SOURCES = ['header', 'cookie', 'sourceIP', 'queryParameter'] as const;

function validateConsistentHash(v: unknown, path: string, unknown: UnknownKeys): ConsistentHashSpec {
  const o = new Obj(v, path, [...KEY_SOURCES, 'algorithm', 'minimumRingSize', 'tableSize'], unknown);
  const given = KEY_SOURCES.filter((k) => o.has(k));
  if (given.length !== 1) {
    throw new FieldError(path, given.length === 0
      ? 'needs one hash key: header, cookie, sourceIP or queryParameter'
      : `takes exactly one hash key, got ${given.join(' and ')}; keep one`);
  }
  const out = keySource(o, given[0]!, unknown);
  const algorithm = o.optOneOf('algorithm', HASH_ALGORITHMS) ?? 'Ring';
  if (algorithm === 'Ring' && o.has('tableSize')) throw new FieldError(join(path, 'tableSize'), 'applies only with algorithm Maglev; Ring takes minimumRingSize');
  if (algorithm === 'Maglev' && o.has('minimumRingSize')) throw new FieldError(join(path, 'minimumRingSize'), 'applies only with algorithm Ring; Maglev takes tableSize');
  if (algorithm === 'Ring') return { ...out, algorithm, minimumRingSize: optInt(o, 'minimumRingSize', 1, MAX_RING_SIZE) ?? DEFAULT_MINIMUM_RING_SIZE };
  const tableSize = optInt(o, 'tableSize', 3, MAX_MAGLEV_TABLE_SIZE) ?? DEFAULT_MAGLEV_TABLE_SIZE;
  if (!isPrime(tableSize)) throw new FieldError(join(path, 'tableSize'), `must be a prime (Maglev's table is filled by stepping through it), got ${tableSize}; e.g. 65537 or 1009`);
  return { ...out, algorithm, tableSize };
}

function keySource(o: Obj, kind: typeof KEY_SOURCES[number], unknown: UnknownKeys): Omit<ConsistentHashSpec, 'algorithm'> {
  const p = join(o.path, kind);
  switch (kind) {
    case 'header':
      return { header: checkString(o.o.header, p, token).toLowerCase() };
    case 'queryParameter':
      return { queryParameter: checkString(o.o.queryParameter, p, queryName) };
    case 'sourceIP':
      if (o.o.sourceIP !== true) throw new FieldError(p, `must be true (hash on the original client's address), got ${JSON.stringify(o.o.sourceIP)}`);
      return { sourceIP: true };
    case 'cookie': {
      const c = new Obj(o.o.cookie, p, ['name', 'ttl', 'path'], unknown);
      const cookie: NonNullable<ConsistentHashSpec['cookie']> = { name: c.string('name', token) };
      const ttl = optDuration(c, 'ttl');
      if (ttl !== undefined) {
        if (parseDuration(ttl) === 0) throw new FieldError(join(p, 'ttl'), 'must be more than 0s (it is the generated cookie\'s Max-Age); leave ttl out to never generate one');
        cookie.ttl = ttl;
      }
      if (c.has('path')) cookie.path = c.string('path', cookiePath);
      return { cookie };
    }
  }
}

/** Where a validated consistentHash takes its key from, as balance-key.ts reads it. */
export function hashKeySource(ch: ConsistentHashSpec): HashKeySource {
  if (ch.header !== undefined) return { kind: 'header', name: ch.header };
  if (ch.queryParameter !== undefined) return { kind: 'queryParameter', name: ch.queryParameter };
  if (ch.cookie !== undefined) {
    return {
      kind: 'cookie', name: ch.cookie.name,
      ...(ch.cookie.ttl !== undefined ? { ttlMs: parseDuration(ch.cookie.ttl) } : {}),
      ...(ch.cookie.path !== undefined ? { path: ch.cookie.path } : {}),
    };
  }
  return { kind: 'sourceIP' };
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}
