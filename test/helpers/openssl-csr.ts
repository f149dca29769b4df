import { execFileSync } from 'node:child_process';

/**
 * A PEM CSR made by the openssl command line for a fresh key, described by `req`'s key
 * options (e.g. ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'] or
 * ['-newkey', 'ed25519']): keys and signatures from another implementation than the
 * CA's, including kinds the CA must refuse. The key itself is thrown away.
 */
export function opensslCsr(newkey: readonly string[]): string {
  return execFileSync('openssl', ['req', '-new', ...newkey, '-nodes', '-keyout', '/dev/null', '-subj', '/CN=x', '-sha256'],
    { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}
