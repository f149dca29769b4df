/**
 * The bearer token `weft` shows the ztunnel admin views on a cluster (through the API
 * server's pod proxy, docs/kubernetes.md step 5) when the kubeconfig user's own will
 * not do: a client-certificate user has none. It comes from --admin-token-file (a file,
 * so the token is in no command line), or, as before, from WEFT_ADMIN_TOKEN. Either is
 * checked when the command starts, naming where it came from and never echoing it: a
 * bad token used to surface only as a header error or a 401 per node.
 */
import { WeftError } from '../lib/errors';
import { firstLine, readConfigFile, readFlagFile } from '../lib/files';
import type { OptionSpec } from '../lib/options';

/** RFC 6750 b64token: what a Bearer credential may hold (a ServiceAccount JWT does). */
const BEARER = /^[A-Za-z0-9\-._~+/]+=*$/;

function tokenProblem(token: string): string | undefined {
  if (token === '') return 'it is empty; expected a bearer token';
  return BEARER.test(token) ? undefined : `it is not a bearer token (${token.length} characters; expected letters, digits and -._~+/ only)`;
}

function tokenOf(text: string): string {
  return firstLine(text).trim();
}

export const adminTokenOption = {
  adminTokenFile: {
    flag: 'admin-token-file', env: 'WEFT_ADMIN_TOKEN_FILE', default: '', defaultText: "the kubeconfig user's token",
    description: 'file whose first line is the bearer token for the ztunnel admin views on a cluster (e.g. from kubectl create token)',
    parse: (raw: string) => {
      if (raw !== '') readConfigFile(raw, (text) => tokenProblem(tokenOf(text)));
      return raw;
    },
  } satisfies OptionSpec<string>,
};

/** The admin token the flags or the environment give, checked; undefined when neither does. */
export function adminToken(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const fromEnv = env.WEFT_ADMIN_TOKEN;
  if (file && fromEnv) {
    throw new WeftError('WEFT_USAGE', `both --admin-token-file/WEFT_ADMIN_TOKEN_FILE (${file}) and WEFT_ADMIN_TOKEN are given; pass only one`);
  }
  if (file) {
    // Read again here (the option parser checked it): it may have changed since.
    return tokenOf(readFlagFile('admin-token-file', file, (text) => tokenProblem(tokenOf(text))));
  }
  if (fromEnv === undefined || fromEnv === '') return undefined;
  const problem = tokenProblem(fromEnv);
  if (problem) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid WEFT_ADMIN_TOKEN: ${problem}; set it to the token alone (no "Bearer ", no newline), or use --admin-token-file`,
      { details: { source: 'WEFT_ADMIN_TOKEN' } });
  }
  return fromEnv;
}
