import { X509Certificate } from 'node:crypto';
import { WeftError } from '../lib/errors';
import { formatIdentity, parseIdentity } from '../lib/identity';

/**
 * Who may ask the CA for what. Pure decisions over already-verified facts (the TLS
 * layer has checked the caller's chain to the root); the gRPC server only maps the
 * outcome to a status.
 */

/** Namespace and service account of the node proxies (ztunnels) and of the CA itself. */
export const SYSTEM_NAMESPACE = 'weft-system';
export const NODE_SERVICE_ACCOUNT = 'ztunnel';
export const CA_SERVICE_ACCOUNT = 'weft-ca';

export function nodeIdentity(trustDomain: string): string {
  return formatIdentity({ trustDomain, namespace: SYSTEM_NAMESPACE, serviceAccount: NODE_SERVICE_ACCOUNT });
}

export function caIdentity(trustDomain: string): string {
  return formatIdentity({ trustDomain, namespace: SYSTEM_NAMESPACE, serviceAccount: CA_SERVICE_ACCOUNT });
}

/** The registry question behind node authorization; MeshState implements it. */
export interface NodeAuthorizer {
  hasIdentityOnNode(node: string, namespace: string, serviceAccount: string): boolean;
}

/** Node names as the registry and Kubernetes allow them (DNS-1123 subdomain). */
const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

export function isValidNodeName(name: string): boolean {
  return NODE_NAME.test(name);
}

/** What the CA reads from a verified client certificate. */
export interface PeerFacts {
  uris: string[];
  commonName?: string;
}

/** Extracts URI SANs and the subject CN from a DER certificate. */
export function peerFacts(der: Buffer): PeerFacts {
  const x = new X509Certificate(der);
  return factsFrom(x.subjectAltName, /(?:^|\n)CN=([^\n]*)/.exec(x.subject ?? '')?.[1]);
}

/**
 * The same from the fields TLS already parsed (`getPeerCertificate()`), which saves
 * parsing the certificate again on every call. A subject with several CNs names no node.
 */
export function peerFactsFromTls(cert: { subjectaltname?: string; subject?: { CN?: string | string[] } }): PeerFacts {
  const cn = cert.subject?.CN;
  return factsFrom(cert.subjectaltname, typeof cn === 'string' ? cn : undefined);
}

function factsFrom(subjectAltName: string | undefined, commonName: string | undefined): PeerFacts {
  const uris: string[] = [];
  // Node prints SANs as `URI:a, DNS:b`; values with separators are JSON-quoted.
  for (const part of (subjectAltName ?? '').split(/, (?=[A-Za-z ]+:)/)) {
    if (!part.startsWith('URI:')) continue;
    const raw = part.slice(4);
    uris.push(raw.startsWith('"') ? String(JSON.parse(raw)) : raw);
  }
  return commonName === undefined ? { uris } : { uris, commonName };
}

/**
 * The caller of CreateCertificate must be a node: its certificate carries exactly the
 * node proxy identity as URI SAN and the node's name as subject CN. The name lives in
 * the CN because an X.509-SVID carries exactly one URI SAN (SPIFFE), and that one is
 * the shared node-proxy identity, as in Istio.
 */
export function authenticateNode(peer: PeerFacts | undefined, trustDomain: string): string {
  if (!peer) {
    throw new WeftError('WEFT_CA_UNAUTHENTICATED',
      'no client certificate signed by this mesh\'s root was presented (none, expired, or from another CA); join the node first (weft ca token --node <name>, then the ztunnel joins with it) and call with the node certificate');
  }
  const expected = nodeIdentity(trustDomain);
  if (peer.uris.length !== 1 || peer.uris[0] !== expected) {
    throw new WeftError('WEFT_CA_UNAUTHENTICATED',
      `the client certificate identity ${JSON.stringify(peer.uris)} is not the node proxy identity ${expected}; only node proxies may call the CA, with the certificate they got from Join`);
  }
  if (!peer.commonName || !isValidNodeName(peer.commonName)) {
    throw new WeftError('WEFT_CA_UNAUTHENTICATED',
      'the node certificate carries no valid node name in its subject CN; re-join the node to get a proper node certificate');
  }
  return peer.commonName;
}

/** What to issue: the identity, plus the CN and usages that make a node certificate. */
export interface IssueDecision {
  identity: string;
  /** Set for node certificates only. */
  node?: string;
}

/**
 * Decides what `node` may get. Without impersonation the node renews its own node
 * certificate. With it, the identity must be a workload identity of the trust domain
 * whose namespace/service account runs on that very node (Istio's node authorizer).
 */
export function authorizeRequest(
  node: string, impersonated: string | undefined, trustDomain: string, authorizer: NodeAuthorizer,
): IssueDecision {
  if (impersonated === undefined) return { identity: nodeIdentity(trustDomain), node };
  const id = parseIdentity(impersonated);
  if (!id) {
    throw new WeftError('WEFT_CA_PERMISSION_DENIED',
      `ImpersonatedIdentity ${JSON.stringify(impersonated)} is not spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>; send a workload's SPIFFE id`);
  }
  if (id.trustDomain !== trustDomain) {
    throw new WeftError('WEFT_CA_PERMISSION_DENIED',
      `ImpersonatedIdentity ${impersonated} is outside this mesh's trust domain ${trustDomain}; check the ztunnel's --trust-domain`);
  }
  if (impersonated === nodeIdentity(trustDomain) || impersonated === caIdentity(trustDomain)) {
    throw new WeftError('WEFT_CA_PERMISSION_DENIED',
      `${impersonated} is a mesh system identity and is never issued by impersonation; nodes get theirs through Join and renewal`);
  }
  if (!authorizer.hasIdentityOnNode(node, id.namespace, id.serviceAccount)) {
    throw new WeftError('WEFT_CA_PERMISSION_DENIED',
      `node ${node} asked for ${impersonated}, but the registry has no workload of namespace ${id.namespace} with service account ${id.serviceAccount} on node ${node}; check the workload's node and serviceAccount in the registry (a pod just scheduled may need a moment to appear)`);
  }
  return { identity: impersonated };
}
