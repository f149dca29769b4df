/**
 * daemonset/redis-sentinel.yaml, the highly available registry: three servers and
 * three Sentinels, with the posture of redis.yaml, and every file, user and name its
 * pods rely on made by `scripts/redis-secrets --sentinel` (so an operator following
 * the header gets a set that starts). The same users and config lines run for real in
 * test/registry-sentinel-failover.test.ts.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseYamlDocuments, podContainers, podSpec, type K8sObject } from './helpers/kustomize';
import { tempDir } from './helpers/cli';

const ROOT = join(__dirname, '..');
const file = join(ROOT, 'daemonset', 'redis-sentinel.yaml');
const objects = parseYamlDocuments(readFileSync(file, 'utf8'), file);
const one = (kind: string, name: string): K8sObject => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind}/${name} in ${file}`);
  return o;
};
type Container = { name: string; args?: string[]; command?: string[]; securityContext?: Record<string, unknown>; volumeMounts?: { name: string; mountPath: string }[] };

t.test('three servers and three Sentinels, one of each per pod, on stable names', async (t) => {
  const sts = one('StatefulSet', 'weft-redis');
  const spec = sts.spec as { replicas: number; serviceName: string };
  t.equal(spec.replicas, 3);
  const headless = one('Service', spec.serviceName).spec as { clusterIP: string; publishNotReadyAddresses: boolean };
  t.equal(headless.clusterIP, 'None', 'the governing Service is headless: weft-redis-N.<service> names');
  t.equal(headless.publishNotReadyAddresses, true, 'peers are found before they are ready');
  const containers = (podSpec(sts)!.containers as Container[]).map((c) => c.name);
  t.same(containers, ['redis', 'sentinel']);
  const sentinelSvc = one('Service', 'weft-redis-sentinel').spec as { ports: { port: number }[] };
  t.same(sentinelSvc.ports.map((p) => p.port), [26379], 'components reach the Sentinels on 26379');
});

t.test('the posture of redis.yaml: TLS only, ACL file, non-root, read-only root', async (t) => {
  const sts = one('StatefulSet', 'weft-redis');
  const ps = podSpec(sts)!;
  t.match(ps.securityContext, { runAsNonRoot: true, runAsUser: 999 });
  t.equal(ps.automountServiceAccountToken, false);
  for (const c of podContainers(sts) as Container[]) {
    t.match(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } }, `${c.name} locked down`);
  }
  const redis = (ps.containers as Container[])[0]!.args!;
  const arg = (flag: string) => redis[redis.indexOf(flag) + 1];
  t.equal(arg('--port'), '0', 'no plaintext port');
  t.equal(arg('--tls-port'), '6379');
  t.equal(arg('--aclfile'), '/etc/weft-redis/acl/users.acl');
  const init = (ps.initContainers as Container[])[0]!.args!.join('\n');
  t.match(init, /echo "port 0"/, 'the Sentinels: no plaintext port either');
  t.match(init, /tls-replication yes/, 'replication and monitoring over TLS');
  t.match(init, /user default off/, "the Sentinels' default user off");
});

t.test('every secret file, user and name the pods use is made by scripts/redis-secrets --sentinel', async (t) => {
  const tmp = tempDir('weft-sentinel-manifest-');
  t.teardown(() => tmp.remove());
  const yaml = execFileSync(join(ROOT, 'scripts', 'redis-secrets'), ['--dir', tmp.dir, '--sentinel'], { encoding: 'utf8' });
  const made = new Set(parseYamlDocuments(yaml, 'redis-secrets').map((o) => o.metadata.name));
  const sts = one('StatefulSet', 'weft-redis');
  const volumes = podSpec(sts)!.volumes as { name: string; secret?: { secretName: string } }[];
  for (const v of volumes.filter((x) => x.secret)) t.ok(made.has(v.secret!.secretName), `scripts/redis-secrets makes ${v.secret!.secretName}`);

  const init = (podSpec(sts)!.initContainers as Container[])[0]!.args!.join('\n');
  const keys = [...init.matchAll(/\/etc\/weft-redis\/sentinel\/([a-z0-9.-]+)/g)].map((m) => m[1]!);
  t.ok(keys.length >= 5, `the init container reads ${keys.length} keys of weft-redis-sentinel`);
  for (const k of new Set(keys)) t.ok(existsSync(join(tmp.dir, 'weft-redis-sentinel', k)), `weft-redis-sentinel has ${k}`);
  for (const c of ['controller', 'ztunnel', 'ca', 'operator', 'waypoint']) {
    t.ok(existsSync(join(tmp.dir, `weft-redis-user-${c}`, 'sentinel-password')), `weft-redis-user-${c} holds the Sentinel client password`);
  }

  const acl = readFileSync(join(tmp.dir, 'weft-redis-acl', 'users.acl'), 'utf8');
  for (const user of [/masteruser ([a-z-]+)/, /auth-user weft-registry ([a-z-]+)/]) {
    const name = init.match(user)![1]!;
    t.match(acl, new RegExp(`^user ${name} on #[0-9a-f]{64} `, 'm'), `${name} is a user of the servers`);
  }

  const sans = execFileSync('openssl', ['x509', '-in', join(tmp.dir, 'weft-redis-tls', 'tls.crt'), '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' });
  for (const name of ['weft-redis-2.weft-redis-headless.weft-system.svc.cluster.local', 'weft-redis-sentinel.weft-system.svc']) {
    const host = execFileSync('openssl', ['x509', '-in', join(tmp.dir, 'weft-redis-tls', 'tls.crt'), '-noout', '-checkhost', name], { encoding: 'utf8' });
    t.match(host, /does match certificate/, `the certificate covers ${name} (${sans.trim().split('\n').pop()!.trim().slice(0, 40)}...)`);
  }
});
