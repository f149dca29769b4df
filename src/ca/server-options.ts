/**
 * The CA server's options: every setting, its default, and the checks across them
 * (lifetimes within bounds; Redis-minted tokens never together with TokenReview),
 * made once when the server is built.
 */
import type { Registry } from 'prom-client';
import { WeftError } from '../lib/errors';
import type { Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { formatDuration } from '../lib/options';
import type { NodeAuthorizer } from './authorize';
import type { IdentityTokenVerifier } from './identity-tokens';
import type { Issuer } from './issuer';
import type { JoinTokenVerifier } from './join-tokens';
import type { MethodLimits } from './rate-limit';
import { disabledSaJoin, type ServiceAccountJoinVerifier } from './sa-token-join';
import type { WaypointTokenVerifier } from './waypoint-sa';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const DEFAULT_CERT_TTL_MS = DAY_MS;
export const DEFAULT_MAX_CERT_TTL_MS = 90 * DAY_MS;
export const DEFAULT_MIN_CERT_TTL_MS = 60_000;
export const DEFAULT_NODE_CERT_TTL_MS = HOUR_MS;
export const DEFAULT_SERVING_CERT_TTL_MS = 30 * DAY_MS;

export interface CaServerOptions {
  issuer: Issuer;
  trustDomain: string;
  /** The registry question for impersonation; MeshState implements it. */
  authorizer: NodeAuthorizer;
  /**
   * Checks Redis join tokens; absent = join tokens are refused. Never together with an
   * enabled `saJoin`: whoever can write Redis could mint join tokens, which would undo
   * what the TokenReview checks prove.
   */
  joinTokens?: JoinTokenVerifier;
  /**
   * Checks Joins that carry a ServiceAccount token, and, when enabled, every node CSR
   * (which must then carry the node's current token); absent = such joins are refused
   * (no --kube-token-review).
   */
  saJoin?: ServiceAccountJoinVerifier;
  /**
   * Single-identity callers (waypoints) in the lab: identity-scoped tokens in Redis.
   * Never together with an enabled `saJoin`, for the join tokens' reason.
   */
  identityTokens?: IdentityTokenVerifier;
  /** Single-identity callers on a cluster: waypoint pods' ServiceAccount tokens (TokenReview). */
  waypointTokens?: WaypointTokenVerifier;
  /** Earlier roots (PEM) whose node certificates are still accepted: the rotation overlap. */
  trustedRoots?: string[];
  /** Rate limits (defaults limitsFor(DEFAULT_JOIN_RATE) and limitsFor(DEFAULT_CSR_RATE)). */
  joinLimits?: MethodLimits;
  csrLimits?: MethodLimits;
  /** Clock of the rate limiters and the refusal-log limits (tests). */
  clock?: Clock;
  logger: Logger;
  /** Metrics go here, never to prom-client's global registry. */
  metrics: Registry;
  /** Lifetime when a request asks for 0 (the default). */
  certTtlMs?: number;
  /** Longest lifetime a request may ask for. */
  maxCertTtlMs?: number;
  /** Shortest lifetime a request may ask for. Tests lower it to exercise rotation. */
  minCertTtlMs?: number;
  /** Lifetime of node certificates (Join and renewal); short, so a removed node falls out soon. */
  nodeCertTtlMs?: number;
  /** DNS names and IPs the CA's own serving certificate carries; clients check one of them. */
  dnsNames?: string[];
  ipAddresses?: string[];
  servingCertTtlMs?: number;
  /** False while the registry is not loaded: impersonation requests then get UNAVAILABLE. */
  isReady?: () => boolean;
}

type Optional = 'isReady' | 'joinTokens' | 'identityTokens' | 'waypointTokens' | 'clock' | 'joinLimits' | 'csrLimits';
/** The options with every default filled in (the optional verifiers stay optional). */
export type ResolvedCaOptions = Required<Omit<CaServerOptions, Optional>> & Pick<CaServerOptions, Optional>;

/** Fills in the defaults and refuses contradictory settings (WEFT_CONFIG_INVALID, naming the flag). */
export function resolveCaOptions(opts: CaServerOptions): ResolvedCaOptions {
  const resolved = {
    certTtlMs: DEFAULT_CERT_TTL_MS,
    maxCertTtlMs: DEFAULT_MAX_CERT_TTL_MS,
    minCertTtlMs: DEFAULT_MIN_CERT_TTL_MS,
    nodeCertTtlMs: DEFAULT_NODE_CERT_TTL_MS,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    servingCertTtlMs: DEFAULT_SERVING_CERT_TTL_MS,
    saJoin: disabledSaJoin,
    trustedRoots: [] as string[],
    // An option passed as undefined means "the default", not "unset".
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
  } as ResolvedCaOptions;
  const { minCertTtlMs: min, maxCertTtlMs: max } = resolved;
  const inBounds = (field: string, value: number) => {
    if (!(value >= min && value <= max)) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        `invalid ${field}=${formatDuration(value)}: expected between ${formatDuration(min)} and the max certificate TTL ${formatDuration(max)}`);
    }
  };
  if (!(min > 0 && min <= max)) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --max-cert-ttl=${formatDuration(max)}: expected at least ${formatDuration(min)}`);
  }
  inBounds('--cert-ttl', resolved.certTtlMs);
  inBounds('--node-cert-ttl', resolved.nodeCertTtlMs);
  if (resolved.saJoin.enabled && resolved.identityTokens) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'identity tokens cannot be accepted together with --kube-token-review: anyone who can write Redis could mint them; waypoints send their ServiceAccount token');
  }
  if (resolved.saJoin.enabled && resolved.joinTokens) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      'join tokens cannot be accepted together with --kube-token-review: anyone who can write Redis could mint them; nodes join with their ServiceAccount token');
  }
  return resolved;
}
