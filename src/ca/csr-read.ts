import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { WeftError } from '../lib/errors';
import { ECDSA_WITH_SHA256, EC_PUBLIC_KEY, PRIME256V1, fromDer, keyIdentifier, toDer } from './der';

/**
 * Reading a CSR for the CA: its PEM and ASN.1, the key rule (what the CA issues for),
 * and its self-signature as a Proof the issuer checks, on the event loop or in
 * libuv's threadpool, before it signs anything.
 */

/** Signature algorithms accepted on CSRs (proof of possession only). */
const CSR_HASHES: Record<string, string> = {
  [forge.pki.oids.sha256WithRSAEncryption!]: 'sha256',
  [forge.pki.oids.sha384WithRSAEncryption!]: 'sha384',
  [forge.pki.oids.sha512WithRSAEncryption!]: 'sha512',
};
const ECDSA_HASHES: Record<string, string> = {
  [ECDSA_WITH_SHA256]: 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
};

/** What the CA issues for: RSA ≥ 2048 bits with e = 65537, or ECDSA on P-256 (as Istio's CA). */
export const MIN_RSA_BITS = 2048;
export const RSA_EXPONENT = 65537;
const REQUIRED_KEY = `an RSA key of at least ${MIN_RSA_BITS} bits with public exponent ${RSA_EXPONENT}, or an ECDSA P-256 key`;

/** A CSR's checked public key as its SubjectPublicKeyInfo; keyId: its RFC 5280 key identifier, as a binary string. */
export interface CsrKey { kind: 'rsa' | 'ec'; spki: forge.asn1.Asn1; keyId: string }

/** The CSR's self-signature, still to be checked (checkProof or checkProofInPool) before anything is signed. */
interface Proof { hash: string; info: Buffer; key: KeyObject; signature: Buffer }
export interface CsrRequest { key: CsrKey; proof: Proof }

/**
 * The key-strength rule, pure: undefined when the key is acceptable, else why not.
 * `details` is what Node's KeyObject reports (asymmetricKeyType, asymmetricKeyDetails).
 */
export function csrKeyProblem(type: string | undefined, details: { modulusLength?: number; publicExponent?: bigint; namedCurve?: string }): string | undefined {
  if (type === 'rsa') {
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS) return `the CSR's RSA key has ${details.modulusLength ?? 0} bits`;
    if (details.publicExponent !== BigInt(RSA_EXPONENT)) return `the CSR's RSA key has public exponent ${String(details.publicExponent)}`;
    return undefined;
  }
  if (type === 'ec') {
    return details.namedCurve === 'prime256v1' ? undefined : `the CSR's ECDSA key is on curve ${details.namedCurve ?? 'unknown'}`;
  }
  return `the CSR's key is of type ${type ?? 'unknown'}`;
}

function weak(why: string): WeftError {
  return new WeftError('WEFT_CA_CSR_KEY_WEAK', `${why}; the CA issues only for ${REQUIRED_KEY}: generate such a key and send a new CSR`);
}

const RSA_ENCRYPTION = forge.pki.oids.rsaEncryption!;

function csrInvalid(why: string, cause?: unknown): WeftError {
  return new WeftError('WEFT_CA_CSR_INVALID',
    `the CSR cannot be parsed (${why}); send a PEM PKCS#10 request (BEGIN CERTIFICATE REQUEST) with ${REQUIRED_KEY}`, cause ? { cause } : {});
}

/** Runs one step of reading a CSR; whatever it throws means the CSR cannot be parsed. */
function readingCsr<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw csrInvalid(err instanceof Error ? err.message : String(err), err);
  }
}

/** The DER of the CSR's PEM block. */
function csrPemBody(csrPem: string): string {
  const block = readingCsr(() => forge.pem.decode(csrPem).find((m) => m.type === 'CERTIFICATE REQUEST' || m.type === 'NEW CERTIFICATE REQUEST'));
  if (!block) throw csrInvalid('no CERTIFICATE REQUEST block');
  return block.body;
}

/**
 * Parses a CSR and checks its key is strong enough; its self-signature is left to
 * the caller (the Proof), so it can be checked in the threadpool. The key's
 * algorithm OID (in the request's SubjectPublicKeyInfo) picks the path. RSA (the
 * common case): forge parses (computeHash off), OpenSSL verifies — forge's JS
 * verification cost ~1 ms, more than half of a whole issuance. Other keys: forge
 * cannot read them, so the CSR's ASN.1 is read directly and OpenSSL does the rest.
 */
export function readCsr(csrPem: string): CsrRequest {
  const der = csrPemBody(csrPem);
  // CertificationRequest ::= SEQUENCE { info SEQUENCE { version, subject, spki SEQUENCE { algorithm SEQUENCE { oid, .. }, key }, .. }, .. }
  const top = readingCsr(() => forge.asn1.fromDer(der));
  const keyOid = readingCsr(() => {
    const spki = ((top.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[])[2]!;
    return forge.asn1.derToOid(((spki.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[])[0]!.value as string);
  });
  if (keyOid !== RSA_ENCRYPTION) return parseNonRsaCsr(der);
  const csr = readingCsr(() => forge.pki.certificationRequestFromAsn1(top, false)) as forge.pki.CertificateSigningRequest & { certificationRequestInfo?: forge.asn1.Asn1 };
  const rsa = csr.publicKey as forge.pki.rsa.PublicKey;
  const problem = csrKeyProblem('rsa', { modulusLength: rsa.n.bitLength(), publicExponent: BigInt(`0x${rsa.e.toString(16)}`) });
  if (problem) throw weak(problem);
  const hash = CSR_HASHES[csr.siginfo.algorithmOid ?? ''];
  if (!hash || !csr.certificationRequestInfo || typeof csr.signature !== 'string') {
    throw new WeftError('WEFT_CA_CSR_INVALID',
      `the CSR is signed with an unsupported algorithm (${csr.siginfo.algorithmOid ?? 'none'}); sign it with SHA-256 and RSA`);
  }
  const proof = { hash, info: toDer(csr.certificationRequestInfo), key: rsaPublicKey(rsa), signature: Buffer.from(csr.signature, 'binary') };
  return {
    key: {
      kind: 'rsa', spki: forge.pki.publicKeyToAsn1(rsa),
      // RFC 5280 §4.2.1.2 method 1, as keyIdentifier() computes for other keys.
      keyId: forge.pki.getPublicKeyFingerprint(rsa, { type: 'RSAPublicKey', encoding: 'binary' }) as string,
    },
    proof,
  };
}

/** Proof of possession: the CSR is signed by the private key of the public key it carries. */
export function checkProof(p: Proof): void {
  let ok: boolean;
  try {
    ok = cryptoVerify(p.hash, p.info, p.key, p.signature);
  } catch (err) {
    throw proofUncheckable(err);
  }
  if (!ok) throw proofMismatch();
}

/** checkProof with the verification in libuv's threadpool (crypto.verify with a callback). */
export function checkProofInPool(p: Proof): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      cryptoVerify(p.hash, p.info, p.key, p.signature, (err, ok) => {
        if (err) reject(proofUncheckable(err));
        else if (ok !== true) reject(proofMismatch());
        else resolve();
      });
    } catch (err) {
      reject(proofUncheckable(err));
    }
  });
}

function proofUncheckable(err: unknown): WeftError {
  return new WeftError('WEFT_CA_CSR_INVALID',
    `the CSR signature cannot be checked (${err instanceof Error ? err.message : String(err)}); sign the request with the private key it carries`,
    { cause: err });
}

function proofMismatch(): WeftError {
  return new WeftError('WEFT_CA_CSR_INVALID', 'the CSR signature does not match its public key; sign the request with the private key it carries');
}

/** CertificationRequest ::= SEQUENCE { info SEQUENCE { version, subject, spki, [0] attrs }, sigAlg, signature BIT STRING } */
function parseNonRsaCsr(der: string): CsrRequest {
  const { info, spki, sigOid, signature, key, p256 } = readingCsr(() => {
    // fromDer keeps BIT STRINGs opaque: an ECDSA signature is itself DER.
    const top = fromDer(der).value as forge.asn1.Asn1[];
    const info = top[0]!;
    const spki = (info.value as forge.asn1.Asn1[])[2]!;
    const p256 = namedP256Key(spki);
    return {
      info, spki, p256: p256 !== undefined,
      sigOid: forge.asn1.derToOid(((top[1]!.value as forge.asn1.Asn1[])[0]!.value) as string),
      // BIT STRING: a leading "unused bits" octet, then the DER signature.
      signature: Buffer.from((top[2]!.value as string).slice(1), 'binary'),
      key: p256 ?? createPublicKey({ key: toDer(spki), format: 'der', type: 'spki' }),
    };
  });
  // A key imported as a P-256 JWK was checked on the way in (namedP256Key: the named-curve
  // OID, an uncompressed point); only another key is asked about (OpenSSL's details cost ~40 µs).
  if (!p256) {
    const problem = csrKeyProblem(key.asymmetricKeyType, key.asymmetricKeyDetails ?? {});
    if (problem) throw weak(problem);
    // OpenSSL names P-256 given by its explicit parameters prime256v1 too, but the SPKI
    // goes into the certificate verbatim, and RFC 5480 §2.1.1 forbids specifiedCurve there
    // (Go's x509, Istio's CA, refuses such a key): only the namedCurve OID is issued for.
    // The key itself is fine: the way out is to name its curve, not a new kind of key.
    if (!namedCurveOid(spki, PRIME256V1)) {
      throw new WeftError('WEFT_CA_CSR_INVALID', 'the CSR\'s ECDSA P-256 key states its curve by explicit parameters, not by the P-256 OID, '
        + 'which a certificate must not carry (RFC 5480); write the key with its named curve (openssl ec -param_enc named_curve) and send a new CSR');
    }
  }
  const hash = ECDSA_HASHES[sigOid];
  if (!hash) throw new WeftError('WEFT_CA_CSR_INVALID', `the CSR is signed with an unsupported algorithm (${sigOid}); sign it with ECDSA and SHA-256`);
  return { key: { kind: 'ec', spki, keyId: keyIdentifier(spki) }, proof: { hash, info: toDer(info), key, signature } };
}

/**
 * The common CSR key, P-256 by its OID with an uncompressed point, imported from its
 * coordinates as a JWK: ~105 µs where OpenSSL 3's SPKI decoder takes ~260 µs, and the
 * import checks the point lies on the curve all the same. Anything else: undefined,
 * and the DER decoder reads it (and the checks after it say what is wrong).
 */
function namedP256Key(spki: forge.asn1.Asn1): KeyObject | undefined {
  const parts = spki.value as forge.asn1.Asn1[];
  const algorithm = parts[0]?.value as forge.asn1.Asn1[] | undefined;
  const bits = parts[1]?.value;
  if (!algorithm || typeof bits !== 'string' || bits.length !== 66 || bits.charCodeAt(0) !== 0 || bits.charCodeAt(1) !== 4) return undefined;
  if (forge.asn1.derToOid(algorithm[0]?.value as string) !== EC_PUBLIC_KEY || !namedCurveOid(spki, PRIME256V1)) return undefined;
  const point = Buffer.from(bits, 'binary');
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: point.subarray(2, 34).toString('base64url'), y: point.subarray(34).toString('base64url') },
    format: 'jwk',
  });
}

/** Whether a SubjectPublicKeyInfo's algorithm parameters are the named curve `curveOid` (ECParameters namedCurve). */
function namedCurveOid(spki: forge.asn1.Asn1, curveOid: string): boolean {
  const params = ((spki.value as forge.asn1.Asn1[])[0]?.value as forge.asn1.Asn1[] | undefined)?.[1];
  return params?.tagClass === forge.asn1.Class.UNIVERSAL && params.type === forge.asn1.Type.OID
    && forge.asn1.derToOid(params.value as string) === curveOid;
}

/** forge RSA key → KeyObject via JWK: ~25x cheaper than OpenSSL 3's PEM/DER decoders. */
function rsaPublicKey(key: forge.pki.rsa.PublicKey): KeyObject {
  const b64url = (n: forge.jsbn.BigInteger) => {
    const hex = n.toString(16);
    return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex').toString('base64url');
  };
  return createPublicKey({ key: { kty: 'RSA', n: b64url(key.n), e: b64url(key.e) }, format: 'jwk' });
}
