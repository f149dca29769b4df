/** The parts of the Kubernetes object shapes the controller reads (core/v1, discovery/v1, Weft's CRD). */
import type { KubeObject } from '../k8s/client';
import { GATEWAY_API_GROUP } from '../gateway/types';

export interface K8sNode extends KubeObject {
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: { type: string; address: string }[] };
}

export type K8sNamespace = KubeObject;

export interface ContainerPort { name?: string; containerPort: number; protocol?: string }

export interface K8sPod extends KubeObject {
  spec?: {
    nodeName?: string;
    serviceAccountName?: string;
    hostNetwork?: boolean;
    containers?: { name: string; image?: string; ports?: ContainerPort[] }[];
  };
  status?: {
    phase?: string;
    podIP?: string;
    podIPs?: { ip: string }[];
    conditions?: { type: string; status: string }[];
  };
}

export interface K8sServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  appProtocol?: string;
}

export interface K8sService extends KubeObject {
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    selector?: Record<string, string>;
    ports?: K8sServicePort[];
  };
}

export interface K8sEndpointSlice extends KubeObject {
  endpoints?: {
    addresses?: string[];
    conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
    targetRef?: { kind?: string; name?: string; namespace?: string; uid?: string };
  }[];
}

export interface K8sAuthorizationPolicy extends KubeObject {
  spec?: Record<string, unknown>;
}

/** Istio's PeerAuthentication (security.istio.io/v1). */
export interface K8sPeerAuthentication extends KubeObject {
  spec?: { selector?: { matchLabels?: Record<string, string> }; mtls?: { mode?: string }; portLevelMtls?: unknown };
}

export const AUTHZ_GROUP = 'security.weft.io';
export const AUTHZ_VERSION = 'v1alpha1';
export const AUTHZ_PLURAL = 'authorizationpolicies';

/** Istio's security API: AuthorizationPolicy (AUTHZ_PLURAL) and PeerAuthentication, mirrored when its CRDs are installed. */
export const ISTIO_SECURITY_GROUP = 'security.istio.io';
export const ISTIO_SECURITY_VERSION = 'v1';
export const PEER_AUTHN_PLURAL = 'peerauthentications';
/**
 * Istio's default root namespace: there a selector-less AuthorizationPolicy or
 * PeerAuthentication is mesh-wide. Weft's root namespace is weft-system, so one left
 * here would look accepted yet hold for this namespace only.
 */
export const ISTIO_ROOT_NAMESPACE = 'istio-system';

/** Gateway API (gateway.networking.k8s.io/v1): HTTPRoute, GRPCRoute and Gateway as the API server serves them. */
export interface K8sGatewayAPIObject extends KubeObject {
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export { GATEWAY_API_GROUP };
export const GATEWAY_API_VERSION = 'v1';
export const GATEWAY_API_PLURALS = { httproutes: 'HTTPRoute', grpcroutes: 'GRPCRoute', gateways: 'Gateway' } as const;
export type GatewayAPIPlural = keyof typeof GATEWAY_API_PLURALS;

/** The API path of a Gateway API object, or of its subresource. */
export function gatewayAPIPath(plural: GatewayAPIPlural, namespace: string, name: string, sub?: 'status'): string {
  return `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/namespaces/${namespace}/${plural}/${name}${sub ? `/${sub}` : ''}`;
}
