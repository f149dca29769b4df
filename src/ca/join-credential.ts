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
  if (cfg.joinSaTokenFile) return { kind: 'serviceAccountToken', token: await readSaToken(cfg.joinSaTokenFile) };
  return undefined;
}

async function readSaToken(file: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid --join-sa-token-file=${file}: cannot read it (${(err as Error).message}); mount the projected ServiceAccount token there (daemonset/ztunnel.yaml, volume weft-ca-token)`,
      { cause: err });
  }
  if (!token) {
    throw new WeftError('WEFT_CONFIG_INVALID',
      `invalid --join-sa-token-file=${file}: the file is empty; the kubelet writes the projected token there, check the volume's serviceAccountToken source`);
  }
  return token;
}
