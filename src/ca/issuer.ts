import {
  X509Certificate, createPrivateKey, createPublicKey, generateKeyPair, randomBytes,
  verify as cryptoVerify, type KeyObject,
} from 'node:crypto';
import { availableParallelism } from 'node:os';
import forge from 'node-forge';
import { WeftError } from '../lib/errors';
import { parseIdentity } from '../lib/identity';
import { Limiter } from './limiter';
import { ECDSA_WITH_SHA256, EC_PUBLIC_KEY, PRIME256V1, certificateDer, certificateDerInPool, csrDer, fromDer, keyIdentifier, spkiAsn1, toDer, toPem, type CertificateFields, type Extension } from './der';

/**
 * The mesh CA's signing core: pure (no network, no storage), so the gRPC server, the
 * lab, tests and benchmarks all issue certificates the same way.
 *
 * Keys are generated and every private-key operation runs in Node's crypto (OpenSSL);
 * der.ts assembles the X.509/PKCS#10 structures (Node has no API to create them).
 * New workload and node keys are ECDSA P-256, as Istio's ztunnel uses: generating one
 * costs ~0.1 ms where RSA-2048 costs 50-300 ms, and its TLS handshakes are cheaper.
 * RSA keys and roots from peers keep working.
 */

export interface CaKeyPair {
  certPem: string;
  keyPem: string;
}

/** The key kinds Weft generates: ECDSA P-256 (the default for new keys) or RSA-2048. */
export type KeyType = 'ec' | 'rsa';

const TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000;
/** Backdating absorbs clock skew between the CA and the peers that verify its certs. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

interface NewKey { privateKey: KeyObject; publicKey: KeyObject; keyPem: string }

function generateKey(type: KeyType): Promise<NewKey> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject) => {
      if (err) reject(err);
      else resolve({ privateKey, publicKey, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
    };
    if (type === 'ec') generateKeyPair('ec', { namedCurve: 'prime256v1' }, done);
    else generateKeyPair('rsa', { modulusLength: 2048 }, done);
  });
}

/**
 * A random positive 128-bit serial (RFC 5280 allows up to 20 octets). The top bit is
 * cleared so DER does not read it as negative, and the next one set so the encoding is
 * always minimal (no leading zero octet) and always 16 octets long.
 */
function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function keyIdValue(id: string): forge.asn1.Asn1 {
  return forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, id);
}

/**
 * A new self-signed mesh root. `keyType` defaults to RSA-2048: a root signs once per
 * certificate but is verified in every handshake, where RSA is the cheaper (see
 * docs/performance.md, Certificates).
 */
export async function generateRootCa(opts: { trustDomain: string; ttlMs?: number; keyType?: KeyType }): Promise<CaKeyPair> {
  const key = await generateKey(opts.keyType ?? 'rsa');
  const spki = spkiAsn1(key.publicKey);
  const now = Date.now();
  const der = certificateDer({
    serialHex: randomSerialHex(),
    // The organisation carries the trust domain, as Istio's self-signed root does.
    subject: [{ name: 'organizationName', value: opts.trustDomain }, { name: 'commonName', value: 'Weft mesh root CA' }],
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + (opts.ttlMs ?? TEN_YEARS_MS)),
    spki,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier', value: keyIdValue(keyIdentifier(spki)) },
    ],
  }, key.privateKey);
  return { certPem: toPem('CERTIFICATE', der), keyPem: key.keyPem };
}

/** Checks a root pair before it is used: parseable, a CA, and the key belongs to the cert. */
export function loadRootCa(pair: CaKeyPair): CaKeyPair {
  let x509: X509Certificate;
  let key: KeyObject;
  try {
    x509 = new X509Certificate(pair.certPem);
  } catch (err) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      'the CA root certificate is not a PEM X.509 certificate; give the root certificate file (BEGIN CERTIFICATE), not the key or a CSR',
      { cause: err });
  }
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (err) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      'the CA root key is not an unencrypted PEM private key; give the key file (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)',
      { cause: err });
  }
  if (!x509.ca) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `the CA root certificate (subject ${JSON.stringify(x509.subject)}) is not a CA certificate (basicConstraints CA:TRUE missing); give the mesh root, not a leaf`);
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== 'rsa' && !(key.asymmetricKeyType === 'ec' && curve === 'prime256v1')) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `the CA root key is ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` on curve ${curve}` : ''}; Weft's CA signs with RSA or ECDSA P-256 keys only, generate such a root`);
  }
  if (!x509.checkPrivateKey(key)) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      'the CA root key does not belong to the root certificate; give the matching certificate and key');
  }
  if (Date.parse(x509.validTo) <= Date.now()) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `the CA root certificate expired at ${x509.validTo}; create a new root and redistribute it to the nodes`);
  }
  return { certPem: pair.certPem, keyPem: pair.keyPem };
}

export interface SignOptions {
  /** The one SPIFFE URI SAN of the issued certificate; must be in the issuer's trust domain. */
  identity: string;
  /** Requested lifetime; the result never outlives the root. */
  ttlMs: number;
  /** Subject CN; node certificates carry the node name here. */
  commonName?: string;
  /** Adds the serverAuth EKU (default true: workload certs serve on both sides of HBONE). */
  serverAuth?: boolean;
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** X.509 extension OID of subjectKeyIdentifier. */
const SUBJECT_KEY_ID = '2.5.29.14';

/**
 * What signing needs from a root certificate, read from its DER: its subject Name
 * verbatim (a leaf's issuer must match it byte for byte) and its key identifier (the
 * root's own subjectKeyIdentifier when present, so authorityKeyIdentifier matches it
 * even for a root made elsewhere; else RFC 5280 method 1).
 */
function rootFacts(x509: X509Certificate): { subject: forge.asn1.Asn1; keyId: string } {
  const tbs = (fromDer(x509.raw).value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[];
  // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serial, signature, issuer, validity, subject, spki, .., [3] extensions }
  const at = tbs[0]!.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = tbs[4 + at]!;
  const spki = tbs[5 + at]!;
  const exts = tbs.find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  for (const ext of ((exts?.value as forge.asn1.Asn1[] | undefined)?.[0]?.value as forge.asn1.Asn1[] | undefined) ?? []) {
    const parts = ext.value as forge.asn1.Asn1[];
    if (forge.asn1.derToOid(parts[0]!.value as string) !== SUBJECT_KEY_ID) continue;
    // extnValue OCTET STRING holds the DER of the KeyIdentifier OCTET STRING.
    return { subject, keyId: forge.asn1.fromDer(parts[parts.length - 1]!.value as string).value as string };
  }
  return { subject, keyId: keyIdentifier(spki) };
}

export class Issuer {
  readonly rootPem: string;
  private readonly rootSubject: forge.asn1.Asn1;
  private readonly rootKey: KeyObject;
  private readonly rootSki: string;
  private readonly rootNotAfter: number;
  private readonly trustDomain: string;
  /** Bounds issue()'s jobs in libuv's threadpool (see poolSlots). */
  private readonly pool = new Limiter(poolSlots());

  constructor(root: CaKeyPair, opts: { trustDomain: string }) {
    const pair = loadRootCa(root);
    const x509 = new X509Certificate(pair.certPem);
    this.rootPem = pair.certPem;
    ({ subject: this.rootSubject, keyId: this.rootSki } = rootFacts(x509));
    this.rootKey = createPrivateKey(pair.keyPem);
    this.rootNotAfter = Date.parse(x509.validTo);
    this.trustDomain = opts.trustDomain;
  }

  /**
   * Signs a PEM PKCS#10 CSR for exactly `identity`. The CSR only contributes its
   * public key (proof of possession is its signature): the CA alone decides names.
   * Returns the chain leaf first, root last. Synchronous: for tools, tests and the CA's
   * own serving certificate; the CA's gRPC server uses issue().
   */
  signCsr(csrPem: string, opts: SignOptions): string[] {
    const { key, proof } = this.request(csrPem, opts);
    checkProof(proof);
    return this.chain(certificateDer(this.fields(key, opts), this.rootKey));
  }

  /**
   * signCsr with both of its OpenSSL operations (the CSR's signature check and the
   * root's signature, ~40 % of the CA's CPU per certificate with an RSA root) run in
   * libuv's threadpool: the event loop goes on parsing and answering other calls, and
   * a second core verifies and signs. The same checks, in the same order: nothing is
   * signed before the CSR's signature verified. Fails with the same WeftErrors;
   * WEFT_CA_SIGN_FAILED when the root key could not sign.
   */
  async issue(csrPem: string, opts: SignOptions): Promise<string[]> {
    const { key, proof } = this.request(csrPem, opts);
    const fields = this.fields(key, opts);
    const der = await this.pool.run(async () => {
      await checkProofInPool(proof);
      return certificateDerInPool(fields, this.rootKey).catch((err: unknown) => {
        throw new WeftError('WEFT_CA_SIGN_FAILED',
          `the CA could not sign the certificate with its root key (${err instanceof Error ? err.message : String(err)}); check the root key the CA was given (weft ca init-root makes a valid one)`,
          { cause: err });
      });
    });
    return this.chain(der);
  }

  /** The caller-independent checks of a request: identity in this trust domain, a positive lifetime, a readable CSR with an acceptable key. */
  private request(csrPem: string, opts: SignOptions): CsrRequest {
    const id = parseIdentity(opts.identity);
    if (!id || id.trustDomain !== this.trustDomain) {
      throw new WeftError('WEFT_CA_PERMISSION_DENIED',
        `identity ${JSON.stringify(opts.identity)} is not spiffe://${this.trustDomain}/ns/<namespace>/sa/<service-account>; this CA only issues identities of its own trust domain`);
    }
    if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) {
      throw new WeftError('WEFT_CA_TTL_INVALID', `certificate lifetime ${opts.ttlMs} ms is not positive; ask for a positive lifetime`);
    }
    return readCsr(csrPem);
  }

  private fields(key: CsrKey, opts: SignOptions): CertificateFields {
    const now = Date.now();
    const subject = opts.commonName ? [{ name: 'commonName', value: opts.commonName }] : [];
    const altNames: Array<{ type: number; value?: string; ip?: string }> = [{ type: 6, value: opts.identity }];
    for (const dns of opts.dnsNames ?? []) altNames.push({ type: 2, value: dns });
    for (const ip of opts.ipAddresses ?? []) altNames.push({ type: 7, ip });
    const extensions: Extension[] = [
      { name: 'basicConstraints', cA: false, critical: true },
      // keyEncipherment only means something for RSA keys (RFC 5480 §3: not for ECDSA).
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: key.kind === 'rsa', critical: true },
      { name: 'extKeyUsage', serverAuth: opts.serverAuth ?? true, clientAuth: true },
      // RFC 5280: with an empty subject the SAN extension must be critical.
      { name: 'subjectAltName', altNames, critical: subject.length === 0 },
      { name: 'subjectKeyIdentifier', value: keyIdValue(key.keyId) },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.rootSki },
    ];
    return {
      serialHex: randomSerialHex(), issuer: this.rootSubject, subject, spki: key.spki, extensions,
      notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(Math.min(now + opts.ttlMs, this.rootNotAfter)),
    };
  }

  private chain(der: Buffer): string[] {
    return [toPem('CERTIFICATE', der), this.rootPem];
  }
}

/**
 * How many of issue()'s jobs may be in libuv's threadpool at once: one per core, but
 * never all of its threads (UV_THREADPOOL_SIZE, 4 by default), which the CA's file
 * reads and DNS lookups share; the other calls wait their turn in order.
 */
export function poolSlots(cores = availableParallelism(), threads = Number(process.env.UV_THREADPOOL_SIZE) || 4): number {
  return Math.max(1, Math.min(cores, threads - 1));
}

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
interface CsrRequest { key: CsrKey; proof: Proof }

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
function readCsr(csrPem: string): CsrRequest {
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
function checkProof(p: Proof): void {
  let ok: boolean;
  try {
    ok = cryptoVerify(p.hash, p.info, p.key, p.signature);
  } catch (err) {
    throw proofUncheckable(err);
  }
  if (!ok) throw proofMismatch();
}

/** checkProof with the verification in libuv's threadpool (crypto.verify with a callback). */
function checkProofInPool(p: Proof): Promise<void> {
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
  // A key imported as a P-256 JWK is one (asking OpenSSL for its details costs ~40 µs).
  const problem = p256 ? csrKeyProblem('ec', { namedCurve: 'prime256v1' }) : csrKeyProblem(key.asymmetricKeyType, key.asymmetricKeyDetails ?? {});
  if (problem) throw weak(problem);
  // OpenSSL names P-256 given by its explicit parameters prime256v1 too, but the SPKI
  // goes into the certificate verbatim, and RFC 5480 §2.1.1 forbids specifiedCurve there
  // (Go's x509, Istio's CA, refuses such a key): only the namedCurve OID is issued for.
  // The key itself is fine: the way out is to name its curve, not a new kind of key.
  if (!namedCurveOid(spki, PRIME256V1)) {
    throw new WeftError('WEFT_CA_CSR_KEY_WEAK', 'the CSR\'s ECDSA P-256 key states its curve by explicit parameters, not by the P-256 OID, '
      + 'which a certificate must not carry (RFC 5480); write the key with its named curve (openssl ec -param_enc named_curve) and send a new CSR');
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

/**
 * Makes a fresh key (ECDSA P-256 unless `keyType` says RSA-2048) and a CSR for it,
 * signed with SHA-256. A node's CSR names nothing: the CA assigns the identity. A
 * single-identity caller (a waypoint) names its identity as the one URI SAN (`uri`),
 * which the CA requires of it.
 */
export async function generateKeyAndCsr(opts: { commonName?: string; uri?: string; keyType?: KeyType } = {}): Promise<{ keyPem: string; csrPem: string }> {
  const key = await generateKey(opts.keyType ?? 'ec');
  const der = csrDer({
    key: key.privateKey, publicKey: key.publicKey,
    subject: opts.commonName ? [{ name: 'commonName', value: opts.commonName }] : [], uri: opts.uri,
  });
  return { keyPem: key.keyPem, csrPem: toPem('CERTIFICATE REQUEST', der) };
}
