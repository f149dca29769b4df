import { createHash, sign as cryptoSign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

/**
 * DER building for certificates and CSRs with any key Node's crypto holds. forge's pki
 * writes RSA keys only, so the structures are assembled here from forge's ASN.1 module
 * (plus its extension and name encoders, which are key-neutral) and signed with
 * `crypto.sign` (OpenSSL). An ECDSA P-256 key costs ~0.1 ms to generate where RSA-2048
 * costs 50-300 ms, and that is what made a new workload's certificate slow.
 */

type Asn1 = forge.asn1.Asn1;
const { asn1 } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

const SHA256_WITH_RSA = forge.pki.oids.sha256WithRSAEncryption!;
export const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
/** PKCS#9 extensionRequest: the CSR attribute carrying requested extensions. */
export const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

/** forge encoders that exist at runtime but are missing from @types/node-forge. */
const pkiExtra = forge.pki as unknown as {
  certificateExtensionsToAsn1(exts: unknown[]): Asn1;
};

/** What forge's setSubject/setExtensions take; they fill in OIDs and encode values. */
export type NameAttrs = Array<{ name: string; value: string }>;
export type Extension = Record<string, unknown> & { name: string };

function oid(id: string): Asn1 {
  return asn1.create(U, T.OID, false, asn1.oidToDer(id).getBytes());
}

/** The AlgorithmIdentifier of a SHA-256 signature by `key`: NULL parameters for RSA (RFC 4055), none for ECDSA (RFC 5758 §3.2). */
export function signatureAlgorithm(key: KeyObject): Asn1 {
  return key.asymmetricKeyType === 'ec'
    ? asn1.create(U, T.SEQUENCE, true, [oid(ECDSA_WITH_SHA256)])
    : asn1.create(U, T.SEQUENCE, true, [oid(SHA256_WITH_RSA), asn1.create(U, T.NULL, false, '')]);
}

/** Parses DER without decoding BIT STRINGs: an EC point or an ECDSA signature is no ASN.1 and must stay opaque bytes. */
export function fromDer(der: Buffer | string): Asn1 {
  return asn1.fromDer(typeof der === 'string' ? der : der.toString('binary'), { decodeBitStrings: false } as unknown as boolean);
}

export function toDer(node: Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary');
}

export const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
export const PRIME256V1 = '1.2.840.10045.3.1.7';

/**
 * A public key's SubjectPublicKeyInfo as ASN.1. A P-256 key's is assembled from its
 * JWK coordinates (RFC 5480: id-ecPublicKey, prime256v1, uncompressed point): ~6 µs,
 * where OpenSSL 3's SPKI encoder takes ~140 µs, a quarter of making a key and its CSR.
 */
export function spkiAsn1(key: KeyObject): Asn1 {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const jwk = key.export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from([0, 4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    return asn1.create(U, T.SEQUENCE, true, [
      asn1.create(U, T.SEQUENCE, true, [oid(EC_PUBLIC_KEY), oid(PRIME256V1)]),
      asn1.create(U, T.BITSTRING, false, point.toString('binary')),
    ]);
  }
  return fromDer(key.export({ type: 'spki', format: 'der' }));
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (after the unused-bits octet); binary string. */
export function keyIdentifier(spki: Asn1): string {
  const bits = (spki.value as Asn1[])[1]!.value as string;
  return createHash('sha1').update(Buffer.from(bits.slice(1), 'binary')).digest('binary');
}

/** SIGNED{ToBeSigned} (X.509 and PKCS#10 alike): SEQUENCE { body, algorithm, BIT STRING signature }. */
function signedWith(body: Asn1, key: KeyObject, signature: Buffer): Buffer {
  return toDer(asn1.create(U, T.SEQUENCE, true, [
    body,
    signatureAlgorithm(key),
    asn1.create(U, T.BITSTRING, false, `\0${signature.toString('binary')}`),
  ]));
}

function signed(body: Asn1, key: KeyObject): Buffer {
  return signedWith(body, key, cryptoSign('sha256', toDer(body), key));
}

/**
 * `crypto.sign` with a callback: OpenSSL signs in libuv's threadpool, so the event
 * loop parses and answers other requests meanwhile and a second core can sign. An
 * error thrown before the job starts (an unusable key) rejects like one reported by it.
 */
export function signInPool(data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    try {
      cryptoSign('sha256', data, key, (err, signature) => (err ? reject(err) : resolve(signature)));
    } catch (err) {
      reject(err);
    }
  });
}

/** forge's name and extension encoders, fed through a throwaway certificate (the only way to fill in their OIDs). */
function encoded(subject: NameAttrs, extensions: Extension[]): { name: Asn1; extensions: Asn1 } {
  const holder = forge.pki.createCertificate();
  holder.setSubject(subject);
  holder.setExtensions(extensions);
  return { name: forge.pki.distinguishedNameToAsn1(holder.subject), extensions: pkiExtra.certificateExtensionsToAsn1(holder.extensions) };
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(date: Date): Asn1 {
  return date.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

export interface CertificateFields {
  /** Positive serial, hex, minimal DER (no leading zero octet needed). */
  serialHex: string;
  /** The issuer's subject Name, verbatim from its certificate (names match byte for byte); omitted = self-signed. */
  issuer?: Asn1;
  subject: NameAttrs;
  notBefore: Date;
  notAfter: Date;
  /** The certified key's SubjectPublicKeyInfo. */
  spki: Asn1;
  /** forge extension descriptions; every key identifier given as its value (forge would derive one from an RSA key only). */
  extensions: Extension[];
}

/** A v3 certificate signed by `signer` with SHA-256; DER. */
export function certificateDer(f: CertificateFields, signer: KeyObject): Buffer {
  return signed(tbsCertificate(f, signer), signer);
}

/** The same, signed in the threadpool (signInPool). */
export async function certificateDerInPool(f: CertificateFields, signer: KeyObject): Promise<Buffer> {
  const tbs = tbsCertificate(f, signer);
  return signedWith(tbs, signer, await signInPool(toDer(tbs), signer));
}

function tbsCertificate(f: CertificateFields, signer: KeyObject): Asn1 {
  const { name, extensions } = encoded(f.subject, f.extensions);
  return asn1.create(U, T.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(U, T.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    asn1.create(U, T.INTEGER, false, forge.util.hexToBytes(f.serialHex)),
    signatureAlgorithm(signer),
    f.issuer ?? name,
    asn1.create(U, T.SEQUENCE, true, [time(f.notBefore), time(f.notAfter)]),
    name,
    f.spki,
    extensions,
  ]);
}

/**
 * A PKCS#10 request for `key`'s public half, signed by it (proof of possession). `uri`
 * becomes the one SAN of an extensionRequest attribute (a waypoint states its identity).
 */
export function csrDer(opts: { key: KeyObject; publicKey: KeyObject; subject: NameAttrs; uri?: string | undefined }): Buffer {
  const { name, extensions } = encoded(opts.subject, opts.uri ? [{ name: 'subjectAltName', altNames: [{ type: 6, value: opts.uri }] }] : []);
  // attributes [0] IMPLICIT SET OF Attribute: required, possibly empty.
  const attributes = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, opts.uri ? [
    asn1.create(U, T.SEQUENCE, true, [oid(EXTENSION_REQUEST), asn1.create(U, T.SET, true, [(extensions.value as Asn1[])[0]!])]),
  ] : []);
  const info = asn1.create(U, T.SEQUENCE, true, [
    asn1.create(U, T.INTEGER, false, asn1.integerToDer(0).getBytes()),
    name,
    spkiAsn1(opts.publicKey),
    attributes,
  ]);
  return signed(info, opts.key);
}

export function toPem(type: 'CERTIFICATE' | 'CERTIFICATE REQUEST', der: Buffer): string {
  return `-----BEGIN ${type}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${type}-----\n`;
}
