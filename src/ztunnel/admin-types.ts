/**
 * The JSON the ztunnel admin API (15000, and the admin unix socket) serves. The CLI
 * reads exactly these shapes, so they are a contract: add fields, never rename.
 */
import type { TunnelInfo } from '../hbone/tunnel';

/** One pooled HBONE tunnel (defined beside the pool that reports it). */
export type { TunnelInfo };

export interface ConnectionInfo {
  id: string;
  direction: 'outbound' | 'inbound' | 'inbound-plaintext';
  /** 'hbone' | 'passthrough' | 'plaintext' */
  protocol: string;
  sourceWorkload?: string;
  sourceAddress: string;
  sourceIdentity?: string;
  destinationWorkload?: string;
  destinationAddress: string;
  destinationService?: string;
  /** `<namespace>/<name>` of the waypoint an outbound connection goes through (the destination workload is then its pod). */
  destinationWaypoint?: string;
  destinationIdentity?: string;
  /** Id of the TunnelInfo it rides, for outbound HBONE. */
  tunnelId?: string;
  bytesSent: number;
  bytesReceived: number;
  openedAt: string;
}

export interface CertificateInfo {
  identity: string;
  state: string;
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  /** PEM chain, leaf first; never a private key. */
  certChainPem?: string[];
}

export interface ZtunnelStatus {
  node: string;
  version: string;
  ready: boolean;
  registryRevision: number;
  registryStalenessSeconds: number;
  startedAt: string;
}

export interface TunnelsResponse { node: string; tunnels: TunnelInfo[] }
export interface ConnectionsResponse { node: string; connections: ConnectionInfo[] }
export interface CertificatesResponse { node: string; certificates: CertificateInfo[] }
export interface ConfigDump {
  node: string;
  version: string;
  config: Record<string, unknown>;
  status: ZtunnelStatus;
  /** How original destinations are read: 'sockopt' (kernel, O(1)) or 'conntrack' (table read), with counts. */
  originalDst?: { method: string; sockopt: number; conntrack: number };
  workloads: unknown[];
  services: unknown[];
  policies: unknown[];
  certificates: CertificateInfo[];
}

/**
 * The registry as this ztunnel holds it (GET /registry): every record by kind, at
 * `revision`. The CLI rebuilds a MeshState from it when it cannot reach Redis (on a
 * cluster), so `weft workloads` shows what the data path enforces.
 */
export interface RegistryDump {
  node: string;
  trustDomain: string;
  revision: number;
  records: Record<string, unknown[]>;
}

/**
 * The header `weft` sends its Kubernetes bearer token in to the admin views off
 * loopback. Not `Authorization`: kube-apiserver strips that one from a request it has
 * authenticated, before its pod proxy relays it (src/ztunnel/admin-auth.ts).
 */
export const ADMIN_TOKEN_HEADER = 'x-weft-authorization';

/** The `reason` of a refusal by the admin views (401, 403, 429, 503), as in a Kubernetes Status. */
export const ADMIN_VIEW_REFUSED = 'AdminViewRefused';
