import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { WeftError } from '../lib/errors';
import { watchFiles, type FileWatch } from '../lib/files';
import type { Logger } from '../lib/log';

/**
 * The mesh trust anchors: one root, or during a root rotation an explicit bundle of
 * several (old and new), as PEM certificates one after the other. A node trusts
 * exactly what this file says, obtained out of band (a ConfigMap on Kubernetes, a file
 * in the lab) and never from Redis or from the CA connection itself.
 */

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** A checked bundle: the PEM text to hand to TLS, and the parsed roots. */
export interface TrustBundle {
  /** The usable roots, PEM, one per line block (what TLS `ca` gets). */
  pem: string;
  roots: X509Certificate[];
}

/**
 * Parses and checks a bundle: every block a CA certificate. Expired roots are left out
 * (they can verify nothing); a bundle with no usable root is refused, so a truncated
 * or wrong file never replaces a good one. `what` names the source in errors.
 */
export function parseTrustBundle(text: string, what: string, now = Date.now()): TrustBundle {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    throw new WeftError('WEFT_CA_ROOT_INVALID',
      `${what} holds no PEM certificate (BEGIN CERTIFICATE); give the mesh root certificate, or during a rotation the old and new roots one after the other`);
  }
  const roots: X509Certificate[] = [];
  const kept: string[] = [];
  for (const [i, block] of blocks.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (err) {
      throw new WeftError('WEFT_CA_ROOT_INVALID', `${what}: certificate ${i + 1} of ${blocks.length} cannot be parsed; fix or remove it`, { cause: err });
    }
    if (!cert.ca) {
      throw new WeftError('WEFT_CA_ROOT_INVALID',
        `${what}: certificate ${i + 1} (subject ${JSON.stringify(cert.subject)}) is not a CA certificate; a trust bundle holds mesh roots only, not leaves`);
    }
    if (Date.parse(cert.validTo) <= now) continue;
    roots.push(cert);
    kept.push(block);
  }
  if (roots.length === 0) {
    throw new WeftError('WEFT_CA_ROOT_INVALID', `${what}: every root in it has expired; distribute the current mesh root`);
  }
  return { pem: kept.join('\n') + '\n', roots };
}

/** The root of `bundle` that issued and signed `leaf`, or undefined. */
export function issuingRoot(leaf: X509Certificate, bundle: TrustBundle): X509Certificate | undefined {
  return bundle.roots.find((root) => leaf.checkIssued(root) && leaf.verify(root.publicKey));
}

export interface TrustAnchorFileOptions {
  logger: Logger;
  /** How often to re-read the file (default 5 s). ConfigMap volumes change by symlink swap, which polling sees. */
  pollMs?: number;
  /** The flag that named the file, for error messages. */
  flag?: string;
}

/**
 * A trust-anchor file kept current: read at start (a bad file fails the start), then
 * re-read every `pollMs` (watchFiles); a changed, valid bundle replaces the current one
 * and emits `change`. A changed but invalid (or briefly missing) file is logged once
 * and retried at each poll: the last good bundle stays in force.
 */
export class TrustAnchorFile extends EventEmitter<{ change: [bundle: TrustBundle] }> {
  private current: TrustBundle;
  private readonly watch: FileWatch;
  private readonly log: Logger;
  private readonly what: string;

  constructor(readonly file: string, opts: TrustAnchorFileOptions) {
    super();
    this.log = opts.logger.child({ component: 'trust-anchors' });
    const flag = opts.flag ?? '--trust-anchor-file';
    this.what = `${flag}=${file}`;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new WeftError('WEFT_CONFIG_INVALID',
        `invalid ${flag}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)}); mount the mesh root bundle there (ConfigMap weft-root-cert on Kubernetes)`,
        { cause: err });
    }
    this.current = parseTrustBundle(text, this.what);
    this.watch = watchFiles([file], {
      intervalMs: opts.pollMs ?? 5000,
      initial: [text],
      onChange: ([next]) => this.apply(next),
      onError: (err) => this.log.error({ file, err: err instanceof Error ? err.message : String(err) }, 'trust anchors unreadable or invalid; keeping the current ones: put a valid PEM root (or bundle) back in the file (ConfigMap weft-root-cert on Kubernetes)'),
    });
    this.log.info({ file, roots: this.current.roots.length }, 'trust anchors loaded');
  }

  get bundle(): TrustBundle {
    return this.current;
  }

  get pem(): string {
    return this.current.pem;
  }

  /** Re-reads the file now; resolves true when a new bundle was installed. */
  poll(): Promise<boolean> {
    return this.watch.poll();
  }

  close(): void {
    this.watch.stop();
    this.removeAllListeners();
  }

  private apply(text: string | undefined): void {
    if (text === undefined) throw new Error(`${this.what} is missing (ENOENT); mount the mesh root bundle there (ConfigMap weft-root-cert on Kubernetes)`);
    const next = parseTrustBundle(text, this.what);
    this.current = next;
    this.log.info({ file: this.file, roots: next.roots.length, fingerprints: next.roots.map((r) => r.fingerprint256) }, 'trust anchors changed');
    this.emit('change', next);
  }
}
