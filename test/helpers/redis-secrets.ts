/**
 * The Redis Secrets of daemonset/, made for a test the way an operator makes them
 * (scripts/redis-secrets), and a pod's Secret mounts mapped onto them, so that the
 * manifests' own paths (/var/run/secrets/weft/redis/password, ...) can be run here.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { podContainers, podSpec, type K8sObject } from './kustomize';

const SCRIPT = join(__dirname, '..', '..', 'scripts', 'redis-secrets');

/** Runs scripts/redis-secrets into `dir` (DIR/<secret>/<key>) and returns the Secret YAML it printed. */
export function makeRedisSecrets(dir: string, sans: string[] = []): string {
  return execFileSync(SCRIPT, ['--dir', dir, ...sans.flatMap((s) => ['--san', s])], { encoding: 'utf8' });
}

/** mountPath → the local copy of the Secret mounted there, for every Secret volume of the pod's first container. */
export function secretMounts(workload: K8sObject, secretsDir: string): Map<string, string> {
  const volumes = (podSpec(workload)!.volumes as { name: string; secret?: { secretName: string } }[] | undefined) ?? [];
  const mounts = (podContainers(workload)[0]!.volumeMounts as { name: string; mountPath: string }[] | undefined) ?? [];
  const out = new Map<string, string>();
  for (const m of mounts) {
    const secret = volumes.find((v) => v.name === m.name)?.secret;
    if (secret) out.set(m.mountPath, join(secretsDir, secret.secretName));
  }
  return out;
}

/** `value` with a leading mount path replaced by its local copy. */
export function localPath(value: string, mounts: Map<string, string>): string {
  for (const [mountPath, local] of mounts) {
    if (value === mountPath || value.startsWith(`${mountPath}/`)) return local + value.slice(mountPath.length);
  }
  return value;
}

/** Every value of `env` (or every arg) with mount paths replaced. */
export function localEnv(env: Record<string, string>, mounts: Map<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, localPath(v, mounts)]));
}
