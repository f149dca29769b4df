import { X509Certificate, createPrivateKey, generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import forge from 'node-forge';
import { WeftError } from '../lib/errors';
import { parseIdentity } from '../lib/identity';
import { Limiter } from './limiter';
import { certificateDer, certificateDerInPool, csrDer, fromDer, keyIdentifier, spkiAsn1, toPem, type CertificateFields, type Extension } from './der';
import { checkProof, checkProofInPool, readCsr, type CsrKey, type CsrRequest } from './csr-read';


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
   * root's signature, ~30 % of the CA's time per certificate with an RSA root) run in
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
 * reads and DNS lookups share; the other calls wait their turn in order (their number
 * is bounded by the CA's CSR rate limits, rate-limit.ts). At least one: with
 * UV_THREADPOOL_SIZE=1 that is the whole pool, as the operator asked.
 */
export function poolSlots(cores = availableParallelism(), threads = Number(process.env.UV_THREADPOOL_SIZE) || 4): number {
  return Math.max(1, Math.min(cores, threads - 1));
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
