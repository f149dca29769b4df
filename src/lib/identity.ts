import { WeftError } from './errors';

/** A SPIFFE identity as Weft uses it: spiffe://<trust-domain>/ns/<ns>/sa/<sa>. */
export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const DNS_LABELS = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export function formatIdentity(id: Identity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a SPIFFE URI; returns undefined for anything not of Weft's shape. */
export function parseIdentity(uri: string): Identity | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) return undefined;
  const [, trustDomain, namespace, serviceAccount] = m as unknown as [string, string, string, string];
  if (!DNS_LABELS.test(trustDomain) || !SEGMENT.test(namespace) || !SEGMENT.test(serviceAccount)) return undefined;
  return { trustDomain, namespace, serviceAccount };
}

export function mustParseIdentity(uri: string, field = 'identity'): Identity {
  const id = parseIdentity(uri);
  if (!id) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `${field}=${JSON.stringify(uri)} is not a SPIFFE identity; expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`);
  }
  return id;
}

export function isValidTrustDomain(td: string): boolean {
  return DNS_LABELS.test(td) && td.length <= 255;
}
