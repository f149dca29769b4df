import forge from 'node-forge';
import { WeftError } from '../lib/errors';
import { EXTENSION_REQUEST, fromDer } from './der';

/**
 * The subject alternative names a PKCS#10 CSR asks for (its extensionRequest
 * attribute). The CA ignores them for nodes (it alone names node and workload
 * certificates), but a single-identity caller (a waypoint) states the one identity it
 * wants there, as Istio's proxies do, and anything else it names is a refusal: so the
 * names must be read exactly, whatever the key type. Read from the ASN.1 directly
 * because forge cannot parse CSRs with ECDSA keys.
 */

export interface CsrNames {
  /** URI SANs, in order. */
  uris: string[];
  /** Every other SAN, printed as `DNS:x`, `IP:...`, `email:x`, `other:[n]`. */
  others: string[];
}

const SUBJECT_ALT_NAME = '2.5.29.17';
const CONTEXT = forge.asn1.Class.CONTEXT_SPECIFIC;

function invalid(why: string): WeftError {
  return new WeftError('WEFT_CA_CSR_INVALID', `the CSR's names cannot be read (${why}); send a PEM PKCS#10 request whose only subject alternative name is the URI of the identity asked for`);
}

function children(node: forge.asn1.Asn1 | undefined, what: string): forge.asn1.Asn1[] {
  if (!node || !Array.isArray(node.value)) throw invalid(`${what} is not a constructed value`);
  return node.value as forge.asn1.Asn1[];
}

/** One GeneralName as text; URIs separately. */
function generalName(n: forge.asn1.Asn1, out: CsrNames): void {
  const text = typeof n.value === 'string' ? n.value : '';
  if (n.tagClass !== CONTEXT) { out.others.push('other:?'); return; }
  switch (n.type) {
    case 6: out.uris.push(text); return;
    case 2: out.others.push(`DNS:${text}`); return;
    case 1: out.others.push(`email:${text}`); return;
    case 7: out.others.push(`IP:${Buffer.from(text, 'binary').toString('hex')}`); return;
    default: out.others.push(`other:[${n.type}]`);
  }
}

/** The SANs of a PEM CSR; throws WEFT_CA_CSR_INVALID when it cannot be read. */
export function csrSubjectAltNames(csrPem: string): CsrNames {
  const out: CsrNames = { uris: [], others: [] };
  let info: forge.asn1.Asn1[];
  try {
    const block = forge.pem.decode(csrPem).find((m) => m.type === 'CERTIFICATE REQUEST' || m.type === 'NEW CERTIFICATE REQUEST');
    if (!block) throw invalid('no CERTIFICATE REQUEST block');
    // The signature (and an ECDSA key) stay opaque bytes.
    const top = fromDer(block.body);
    info = children(children(top, 'the request')[0], 'the request info');
  } catch (err) {
    if (err instanceof WeftError) throw err;
    throw invalid(err instanceof Error ? err.message : String(err));
  }
  // CertificationRequestInfo ::= SEQUENCE { version, subject, spki, attributes [0] IMPLICIT SET OF Attribute }
  const attributes = info[3];
  if (!attributes || attributes.tagClass !== CONTEXT || attributes.type !== 0) return out;
  try {
    for (const attr of children(attributes, 'an attribute set')) {
      const [type, values] = children(attr, 'an attribute');
      if (forge.asn1.derToOid(type!.value as string) !== EXTENSION_REQUEST) continue;
      for (const extensions of children(values, 'the extension request')) {
        for (const ext of children(extensions, 'the extensions')) {
          const parts = children(ext, 'an extension');
          if (forge.asn1.derToOid(parts[0]!.value as string) !== SUBJECT_ALT_NAME) continue;
          // extnValue is an OCTET STRING holding the DER of GeneralNames.
          const value = parts[parts.length - 1]!;
          const der = typeof value.value === 'string' ? value.value : forge.asn1.toDer(children(value, 'the SAN value')[0]!).getBytes();
          for (const name of children(forge.asn1.fromDer(der), 'the SAN list')) generalName(name, out);
        }
      }
    }
  } catch (err) {
    if (err instanceof WeftError) throw err;
    throw invalid(err instanceof Error ? err.message : String(err));
  }
  return out;
}
