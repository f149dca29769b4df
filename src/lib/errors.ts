/**
 * The one catalogue of Weft's errors. Users and tests match on `code`, never on
 * message text or class, so codes are stable forever; messages may improve.
 * Every code here must appear in docs/errors.md (test/errors.test.ts checks both ways).
 */
export const ERROR_CATALOGUE = {
  // Configuration and usage
  WEFT_CONFIG_INVALID: 'A flag, environment variable or config file value is invalid.',
  WEFT_USAGE: 'The command line does not match any command or is missing an argument.',
  WEFT_CONTEXT_MISSING: 'The CLI found no lab or cluster context to talk to.',
  WEFT_COMMAND_FAILED: 'An external command (ip, iptables, redis-server, ...) failed.',
  WEFT_MANIFEST_INVALID: 'A document given to weft apply or weft delete is unreadable, of a kind Weft does not support, or fails validation; nothing of that apply was written.',
  // Registry
  WEFT_REGISTRY_UNREACHABLE: 'Redis, which holds the registry, cannot be reached.',
  WEFT_REGISTRY_RECORD_INVALID: 'A registry record failed validation.',
  WEFT_REGISTRY_NOT_FOUND: 'A registry record that was asked for does not exist.',
  WEFT_REGISTRY_CONFLICT: 'A registry write kept losing a race with concurrent writers.',
  // CA and certificates
  WEFT_CA_ROOT_INVALID: 'The CA root certificate or key cannot be loaded or does not match.',
  WEFT_CA_ROOT_MISSING: 'The CA root is not where the CA was told to find it, and the CA was not asked to generate one.',
  WEFT_CA_CSR_INVALID: 'A certificate signing request is malformed or its signature is bad.',
  WEFT_CA_CSR_KEY_WEAK: 'A certificate signing request carries a key type or size the CA does not issue for.',
  WEFT_CA_SIGN_FAILED: 'The CA could not sign a certificate with its root key.',
  WEFT_CA_RATE_LIMITED: 'A caller (or all callers together) sent the CA more requests than its rate limits allow.',
  WEFT_CA_JOIN_TOKEN_DISABLED: 'A node tried to join with a Redis join token, but the CA admits nodes by ServiceAccount token only.',
  WEFT_CA_UNAUTHENTICATED: 'A CA caller presented no valid node client certificate.',
  WEFT_CA_PERMISSION_DENIED: 'A node asked for an identity that has no workload on that node.',
  WEFT_CA_JOIN_TOKEN_INVALID: 'A node join token is unknown, expired or for another node.',
  WEFT_CA_TTL_INVALID: 'A requested certificate lifetime is out of bounds.',
  WEFT_CA_SA_TOKEN_INVALID: 'A ServiceAccount token (sent to join, or with a node CSR) is missing, was not authenticated by the Kubernetes API server for the CA audience, or is not bound to a pod.',
  WEFT_CA_SA_TOKEN_DENIED: 'A valid ServiceAccount token does not entitle its pod to act as the requested node (any more).',
  WEFT_CA_SA_JOIN_DISABLED: 'A node tried to join with a ServiceAccount token, but the CA does not verify them.',
  WEFT_CA_IDENTITY_TOKEN_INVALID: 'A single-identity caller (a waypoint) sent no usable credential: an identity token unknown, expired or of another purpose, a node credential, or a ServiceAccount token the CA does not verify or the API server did not authenticate.',
  WEFT_CA_IDENTITY_DENIED: 'A valid single-identity credential (a waypoint) does not entitle its holder to what it asked for: another identity, extra names in the CSR, or a pod that is not (any more) a waypoint of that ServiceAccount.',
  WEFT_CA_UNREACHABLE: 'The CA could not be reached, or its serving certificate was not trusted.',
  WEFT_CERT_UNAVAILABLE: 'No valid certificate is available yet for a workload identity.',
  // Capture
  WEFT_IPTABLES_APPLY_FAILED: 'iptables-restore rejected the generated capture rules.',
  WEFT_ORIGINAL_DST_UNKNOWN: 'The original destination of a captured connection was not found in conntrack.',
  // Data path
  WEFT_HBONE_CONNECT_FAILED: 'An HBONE tunnel to a peer node could not be opened.',
  WEFT_HBONE_BAD_REQUEST: 'An HBONE request was not a valid CONNECT.',
  WEFT_HBONE_DENIED: 'An authorization policy denied the connection.',
  WEFT_HBONE_UPSTREAM_UNREACHABLE: 'The destination workload did not accept the connection.',
  WEFT_HBONE_LOOP: 'A connection targeted a Weft proxy port and was refused to prevent a loop.',
  WEFT_HBONE_IDENTITY_MISMATCH: "A peer's certificate did not carry the expected SPIFFE identity.",
  // Lab
  WEFT_LAB_TOPOLOGY_INVALID: 'The lab topology file is invalid.',
  WEFT_LAB_NOT_RUNNING: 'The lab is not running.',
  WEFT_LAB_NOT_ROOT: 'The lab needs root to create network namespaces.',
  WEFT_LAB_CONFLICT: 'A name, address or port the lab needs is already in use by something it did not create.',
  WEFT_LAB_COMPONENT_EXITED: 'A lab component (Redis, the CA, a ztunnel, an app, a prober, a waypoint) exited while starting (during lab up, or a start of one component).',
  WEFT_LAB_BUSY: 'Another lab user (an e2e test or the fault suite) held the machine-wide lab lock for too long.',
  // Waypoints
  WEFT_WAYPOINT_EXISTS: 'A waypoint (or a pod) with that name already exists in the namespace.',
  WEFT_WAYPOINT_IN_USE: 'A waypoint is still bound by a namespace or Service and was not removed.',
  // Kubernetes
  WEFT_K8S_UNREACHABLE: 'The Kubernetes API server cannot be reached or its certificate is not trusted.',
  WEFT_K8S_FORBIDDEN: 'The Kubernetes API server refused the credentials or the RBAC permissions for a call.',
  WEFT_K8S_REQUEST_FAILED: 'The Kubernetes API server answered a call with an error status.',
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface WeftErrorOptions {
  cause?: unknown;
  /** Extra structured facts for logs (field names, values); never secrets. */
  details?: Record<string, unknown>;
}

/**
 * Base of every error Weft raises on purpose. The message says what was wrong and
 * what to do; `code` is the stable key.
 */
export class WeftError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: WeftErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WeftError';
    this.code = code;
    if (options.details) this.details = options.details;
  }
}

export function isWeftError(err: unknown, code?: ErrorCode): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}
