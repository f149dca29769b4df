import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { KubeClient, k8sStatus, type WatchEvent } from '../src/k8s/client';
import { inClusterConfig, parseKubeconfig } from '../src/k8s/kubeconfig';
import { isWeftError } from '../src/lib/errors';
import { TestApiServer, namespaceObj, podObj } from './helpers/apiserver';

type T = Test;

async function server(t: T, opts: ConstructorParameters<typeof TestApiServer>[0] = {}): Promise<{ api: TestApiServer; client: KubeClient }> {
  const api = await TestApiServer.start(opts);
  t.teardown(() => api.stop());
  const client = new KubeClient({ server: api.url });
  t.teardown(() => client.close());
  return { api, client };
}

async function servingCert(): Promise<{ ca: string; key: string; cert: string }> {
  const root = await generateRootCa({ trustDomain: 'cluster.local' });
  const issuer = new Issuer(root, { trustDomain: 'cluster.local' });
  const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: 'kube-apiserver' });
  const chain = issuer.signCsr(csrPem, {
    identity: 'spiffe://cluster.local/ns/kube-system/sa/apiserver', ttlMs: 3600_000, ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'],
  });
  return { ca: root.certPem, key: keyPem, cert: chain.slice(0, -1).join('') };
}

t.test('kubeconfig: current-context, inline data, files relative to the kubeconfig, token', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-kubeconfig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.pem'), 'CA-PEM');
  const text = `
apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: demo}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: {server: "https://10.0.0.1:6443/", certificate-authority: ca.pem}
- name: c2
  cluster: {server: "https://10.0.0.2:6443", insecure-skip-tls-verify: true}
users:
- name: u1
  user: {client-certificate-data: ${Buffer.from('CERT').toString('base64')}, client-key-data: ${Buffer.from('KEY').toString('base64')}}
- name: u2
  user: {token: abc}
`;
  const file = join(dir, 'config');
  writeFileSync(file, text);
  const c = parseKubeconfig(text, { source: file });
  t.same(c, { server: 'https://10.0.0.1:6443', ca: 'CA-PEM', cert: 'CERT', key: 'KEY', namespace: 'demo' });
  const o = parseKubeconfig(text, { source: file, context: 'other' });
  t.same(o, { server: 'https://10.0.0.2:6443', insecureSkipTlsVerify: true, token: 'abc' });
  t.throws(() => parseKubeconfig(text.replace('current-context: dev', 'current-context: nope'), { source: file }),
    { code: 'WEFT_CONFIG_INVALID', message: /no context named "nope"/ });
  t.throws(() => parseKubeconfig(text.replace('ca.pem', 'missing.pem'), { source: file }),
    { code: 'WEFT_CONFIG_INVALID', message: /certificate-authority names .*missing\.pem/ });
});

t.test('in-cluster config: service host/port, token file and CA', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-sa-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ca.crt'), 'CA');
  writeFileSync(join(dir, 'token'), 'tok\n');
  writeFileSync(join(dir, 'namespace'), 'weft-system');
  const c = inClusterConfig({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir);
  t.same(c, { server: 'https://10.96.0.1:443', ca: 'CA', tokenFile: join(dir, 'token'), namespace: 'weft-system' });
  t.throws(() => inClusterConfig({}, dir), { code: 'WEFT_CONFIG_INVALID', message: /--kubeconfig/ });
});

t.test('list, get, create, update with resourceVersion conflict, merge patch, delete', async (t) => {
  const { api, client } = await server(t);
  api.put('namespaces', namespaceObj('demo', { team: 'a' }));
  api.put('pods', podObj('demo', 'p1', { node: 'n1', ip: '203.0.113.5', labels: { app: 'x' } }));
  api.put('pods', podObj('demo', 'p2', { node: 'n1', ip: '203.0.113.6', labels: { app: 'y' } }));
  const all = await client.list('/api/v1/pods');
  t.equal(all.items.length, 2);
  t.equal(all.resourceVersion, String(api.resourceVersion));
  const sel = await client.list('/api/v1/pods', { labelSelector: 'app=y' });
  t.same(sel.items.map((p) => p.metadata.name), ['p2']);

  const lease = await client.create('/apis/coordination.k8s.io/v1/namespaces/weft-system/leases', {
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'weft-system' }, spec: { holderIdentity: 'a' },
  });
  const path = '/apis/coordination.k8s.io/v1/namespaces/weft-system/leases/l';
  const got = await client.get(path);
  t.equal(got.metadata.resourceVersion, lease.metadata.resourceVersion);
  await client.update(path, { ...got, spec: { holderIdentity: 'b' } });
  const stale = await client.update(path, { ...got, spec: { holderIdentity: 'c' } }).catch((e: unknown) => e);
  t.ok(isWeftError(stale, 'WEFT_K8S_REQUEST_FAILED'));
  t.equal(k8sStatus(stale), 409);
  const dup = await client.create('/apis/coordination.k8s.io/v1/namespaces/weft-system/leases', lease).catch((e: unknown) => e);
  t.equal(k8sStatus(dup), 409);
  const missing = await client.get('/api/v1/namespaces/nope').catch((e: unknown) => e);
  t.equal(k8sStatus(missing), 404);

  const patched = await client.patch('/api/v1/namespaces/demo', { metadata: { labels: { team: null, 'weft.io/dataplane-mode': 'ambient' } } });
  t.same(patched.metadata.labels, { 'kubernetes.io/metadata.name': 'demo', 'weft.io/dataplane-mode': 'ambient' });
  await client.delete('/api/v1/namespaces/demo/pods/p1');
  t.same((await client.list('/api/v1/pods')).items.map((p) => p.metadata.name), ['p2']);
});

t.test('watch streams events from a resourceVersion and stops on abort', async (t) => {
  const { api, client } = await server(t);
  const { resourceVersion } = await client.list('/api/v1/namespaces');
  const ac = new AbortController();
  const seen: WatchEvent[] = [];
  const done = (async () => {
    for await (const ev of client.watch('/api/v1/namespaces', resourceVersion, { allowWatchBookmarks: true, signal: ac.signal })) {
      seen.push(ev);
      if (seen.length === 4) ac.abort();
    }
  })();
  while (api.watcherCount('namespaces') === 0) await new Promise((r) => setTimeout(r, 5));
  api.put('namespaces', namespaceObj('a'));
  api.modify('namespaces', undefined, 'a', (o) => { o.metadata.labels.x = '1'; });
  api.bookmark();
  api.remove('namespaces', undefined, 'a');
  await done;
  t.same(seen.map((e) => e.type), ['ADDED', 'MODIFIED', 'BOOKMARK', 'DELETED']);
  t.equal(seen[1]!.object.metadata.labels?.x, '1');
  t.equal(seen[2]!.object.metadata.resourceVersion, String(Number(seen[1]!.object.metadata.resourceVersion)));
  const q = api.requests.find((r) => r.query.watch)!.query;
  t.same({ watch: q.watch, resourceVersion: q.resourceVersion, allowWatchBookmarks: q.allowWatchBookmarks }, { watch: '1', resourceVersion, allowWatchBookmarks: 'true' });
});

t.test('410 Gone on watch is an HTTP status the caller can see', async (t) => {
  const { api, client } = await server(t);
  api.put('namespaces', namespaceObj('a'));
  const { resourceVersion } = await client.list('/api/v1/namespaces');
  api.put('namespaces', namespaceObj('b'));
  api.compact();
  const err = await (async () => {
    for await (const _ of client.watch('/api/v1/namespaces', String(Number(resourceVersion) - 1))) { /* none */ }
  })().catch((e: unknown) => e);
  t.equal(k8sStatus(err), 410);
});

t.test('HTTPS with the cluster CA and a bearer token; 401 and unreachable are clear errors', async (t) => {
  const tls = await servingCert();
  const { api } = await server(t, { tls, token: 's3cret' });
  api.put('namespaces', namespaceObj('a'));
  const good = new KubeClient({ server: api.url, ca: tls.ca, token: 's3cret' });
  t.teardown(() => good.close());
  t.equal((await good.list('/api/v1/namespaces')).items.length, 1);

  const noToken = new KubeClient({ server: api.url, ca: tls.ca });
  t.teardown(() => noToken.close());
  const e1 = await noToken.list('/api/v1/namespaces').catch((e: unknown) => e);
  t.ok(isWeftError(e1, 'WEFT_K8S_FORBIDDEN'));
  t.match((e1 as Error).message, /RBAC|credentials/);

  const untrusted = new KubeClient({ server: api.url, token: 's3cret' });
  t.teardown(() => untrusted.close());
  const e2 = await untrusted.list('/api/v1/namespaces').catch((e: unknown) => e);
  t.ok(isWeftError(e2, 'WEFT_K8S_UNREACHABLE'));
  t.match((e2 as Error).message, /certificate/);

  const insecure = new KubeClient({ server: api.url, token: 's3cret', insecureSkipTlsVerify: true });
  t.teardown(() => insecure.close());
  t.equal((await insecure.list('/api/v1/namespaces')).items.length, 1);

  const dead = new KubeClient({ server: 'http://127.0.0.1:1' });
  const e3 = await dead.get('/api/v1/namespaces/a').catch((e: unknown) => e);
  t.ok(isWeftError(e3, 'WEFT_K8S_UNREACHABLE'));
  t.equal(k8sStatus(e3), 0);
});
