/**
 * The credential a node joins the CA with, as the ztunnel was configured: a Weft join
 * token (`--join-token`, the lab), or its pod's projected ServiceAccount token
 * (`--join-sa-token-file`, Kubernetes), read at every join because the kubelet
 * rotates the file. A missing or empty file is a configuration error the caller
 * retries like a CA failure: the kubelet may not have written it yet.
 */
import { readFile } from 'node:fs/promises';
import { WeftError } from '../lib/errors';
import type { JoinCredential } from './client';

export interface JoinCredentialConfig {
  joinToken?: string;
  joinSaTokenFile?: string;
}

/** The credential to join with now, or undefined when none is configured. `joinToken` wins. */
export async function currentJoinCredential(cfg: JoinCredentialConfig): Promise<JoinCredential | undefined> {
  if (cfg.joinToken) return { kind: 'joinToken', token: cfg.joinToken };
  if (cfg.joinSaTokenFile) return { kind: 'serviceAccountToken', token: await readTokenFile(cfg.joinSaTokenFile) };
  return undefined;
}

/**
 * A single-identity caller's bearer credential (a waypoint): a fixed token (the lab's
 * identity token) or a file holding one, re-read at every request since the kubelet
 * rotates a projected ServiceAccount token. Exactly one of the two.
 */
export interface BearerCredentialConfig {
  token?: string;
  tokenFile?: string;
  /** The flag or field that named `tokenFile`, for error messages (default "tokenFile"). */
  field?: string;
}

/** The bearer token to send now. */
export async function currentBearerToken(cfg: BearerCredentialConfig): Promise<string> {
  if (cfg.token) return cfg.token;
  if (cfg.tokenFile) {
    return readTokenFile(cfg.tokenFile, cfg.field ?? 'tokenFile', 'the waypoint Deployment\'s projected serviceAccountToken volume');
  }
  throw new WeftError('WEFT_CONFIG_INVALID',
    'no CA credential for the single-identity process: give it an identity token (lab: `weft ca identity-token`) or the path of its projected ServiceAccount token');
}

async function readTokenFile(file: string, field = '--join-sa-token-file', volume = 'daemonset/ztunnel.yaml, volume weft-ca-token'): Promise<string> {
  let token: string;
  try {
    token = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid ${field}=${file}: cannot read it (${(err as Error).message}); mount the projected ServiceAccount token there (${volume})`,
      { cause: err });
  }
  if (!token) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid ${field}=${file}: the file is empty; the kubelet writes the projected token there, check the volume's serviceAccountToken source`);
  }
  return token;
}
