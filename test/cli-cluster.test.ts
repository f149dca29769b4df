/**
 * The CLI against a cluster: an API server stand-in speaking the real protocol
 * (test/helpers/apiserver.ts, with the pods/proxy subresource relaying to pod IPs) and
 * the ztunnel's own read-only admin view server (src/ztunnel/admin.ts) per node, whose
 * registry comes from a real Redis. The chain with the real controller and real
 * ztunnels is in test/e2e/cluster.test.ts.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { silentLogger } from '../src/lib/log';
import { MeshState } from '../src/registry/state';
import { DATAPLANE_MODE_LABEL, KINDS } from '../src/registry/types';
import { KubeClient } from '../src/k8s/client';
import { closeServer, listenTcp } from '../src/lib/http-endpoints';
import { AdminAuthenticator } from '../src/ztunnel/admin-auth';
import { adminViewServer } from '../src/ztunnel/admin-view';
import type { ConfigDump, RegistryDump } from '../src/ztunnel/admin-types';
import { contextOptions, loadContext } from '../src/cli/context';
import { parseOptions } from '../src/lib/options';
import { withRegistryStore } from '../src/cli/registry-session';
import namespace from '../src/cli/commands/namespace';
import status from '../src/cli/commands/status';
import tunnels from '../src/cli/commands/tunnels';
import workloads from '../src/cli/commands/workloads';
import { TestAccessReview } from './helpers/access-review';
import { TestApiServer, namespaceObj, podObj } from './helpers/apiserver';
import { captureIo, startDemoRegistry, writeContextFile } from './helpers/cli';
import { caught } from './helpers/wait';

const TOKEN = 'operator-token';

function kubeconfig(file: string, server: string, token: string): string {
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'clusters:', '- name: test', '  cluster:', `    server: ${server}`,
    'users:', '- name: op', '  user:', `    token: ${token}`,
    'contexts:', '- name: test', '  context:', '    cluster: test', '    user: op',
  ].join('\n') + '\n');
  return file;
}

t.test('weft against a cluster', async (t) => {
  const { store, dir, contextFile: labContext } = await startDemoRegistry(t);
  const api = await TestApiServer.start({ token: TOKEN });
  t.teardown(() => api.stop());
  // The ztunnels check the operator's token (relayed in X-Weft-Authorization) with the API server.
  const reviews = new TestAccessReview(api).addUser(TOKEN, 'operator')
    .allow({ user: 'operator', namespace: 'weft-system', verb: 'get', resource: 'pods', subresource: 'proxy' })
    // A token of its own for the admin views (--admin-token-file): the kubeconfig's stays for the API server.
    .addUser('viewer-token', 'viewer')
    .allow({ user: 'viewer', namespace: 'weft-system', verb: 'get', resource: 'pods', subresource: 'proxy' });
  const ztunnelClient = new KubeClient({ server: api.url, token: TOKEN });
  t.teardown(() => ztunnelClient.close());
  for (const name of ['demo', 'legacy', 'weft-system']) {
    api.put('namespaces', namespaceObj(name, name === 'demo' ? { [DATAPLANE_MODE_LABEL]: 'ambient', team: 'a' } : { team: 'b' }));
  }

  // The registry a ztunnel holds: Redis' demo mesh, with the namespace labels the API
  // server has now (what the controller would mirror), so enroll can be confirmed.
  const registryDump = async (node: string): Promise<RegistryDump> => {
    const snap = await store.snapshot();
    const records: RegistryDump['records'] = {};
    for (const kind of KINDS) records[kind] = snap.records[kind];
    records.namespace = snap.records.namespace.map((ns) => ({ ...ns, labels: api.get('namespaces', undefined, ns.name)?.metadata.labels ?? {} }));
    return { node, trustDomain: 'cluster.local', revision: snap.revision + api.resourceVersion, records };
  };
  const dumps = new Map<string, RegistryDump>();
  const status0 = (node: string) => ({ node, version: '0.1.0', ready: true, registryRevision: 7, registryStalenessSeconds: 0.2, startedAt: new Date().toISOString() });
  const servers: import('node:http').Server[] = [];
  for (const node of ['node-1', 'node-2']) {
    const server = adminViewServer({
      status: () => status0(node),
      tunnels: () => ({ node, tunnels: node === 'node-1' ? [{
        id: '1', state: 'READY', localAddress: '198.18.0.11:40000', peerAddress: '198.19.2.11:15008', peerNode: 'node-2',
        sourceIdentity: 'spiffe://cluster.local/ns/demo/sa/client', destinationIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
        activeStreams: 1, totalStreams: 3, bytesSent: 100, bytesReceived: 2000, openedAt: new Date().toISOString(), lastActivityAt: new Date().toISOString(),
      }] : [] }),
      connections: () => ({ node, connections: [] }),
      certificates: () => ({ node, certificates: [{ identity: 'spiffe://cluster.local/ns/demo/sa/echo', state: 'valid' }] }),
      configDump: () => ({ node, version: '0.1.0', config: {}, status: status0(node), workloads: [], services: [], policies: [], certificates: [] }) as ConfigDump,
      registry: () => dumps.get(node)!,
      logger: silentLogger(),
      metrics: new Registry(),
    }, { auth: new AdminAuthenticator({ client: () => ztunnelClient, namespace: 'weft-system' }) });
    await listenTcp(server, '127.0.0.1', 0);
    t.teardown(() => closeServer(server));
    servers.push(server);
    api.put('pods', podObj('weft-system', `weft-ztunnel-${node}`, {
      node, ip: '127.0.0.1', labels: { 'app.kubernetes.io/name': 'weft-ztunnel' },
      ports: [{ name: 'http-admin', containerPort: (server.address() as AddressInfo).port }],
    }));
  }
  const refreshDumps = async () => {
    for (const node of ['node-1', 'node-2']) dumps.set(node, await registryDump(node));
  };
  await refreshDumps();
  // A refresh still in flight when teardown closes the registry fails; that is not a finding.
  const timer = setInterval(() => { refreshDumps().catch(() => {}); }, 100);
  t.teardown(() => clearInterval(timer));
  api.put('pods', podObj('weft-system', 'weft-ztunnel-node-3', { node: 'node-3', phase: 'Pending', labels: { 'app.kubernetes.io/name': 'weft-ztunnel' } }));
  api.put('pods', podObj('demo', 'not-a-ztunnel', { node: 'node-1', ip: '127.0.0.1', labels: { app: 'echo' } }));

  const kc = kubeconfig(join(dir, 'kubeconfig'), api.url, TOKEN);
  // HOME has a lab context: --kubeconfig must win over it.
  writeContextFile(join(dir, '.weft-context.json'), {});
  const env = { HOME: dir, WEFT_CONTEXT: '' };
  const run = async (cmd: { runWith: typeof tunnels.runWith }, argv: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const cap = captureIo({ ...env, ...extraEnv });
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };
  /** The error a command stops with (main.ts prints it and exits 1). */
  const failure = async (cmd: { runWith: typeof tunnels.runWith }, argv: string[]): Promise<string> => {
    try {
      const r = await run(cmd, argv);
      return `no error (exit ${r.code}): ${r.err}`;
    } catch (err) {
      return (err as Error).message;
    }
  };

  t.test('context: --kubeconfig, then the lab context, then $KUBECONFIG', async (t) => {
    t.equal(loadContext({ context: '', redisUrl: '', kubeconfig: kc }, env).kind, 'cluster');
    t.match((await caught(() => loadContext({ context: labContext, redisUrl: '', kubeconfig: kc }, env))).message,
      /both a weft context .* and a cluster .* are given; pass only one/);
    t.equal(loadContext({ context: labContext, redisUrl: '' }, env).kind, 'lab');
    t.equal(loadContext({ context: '', redisUrl: '' }, { HOME: dir, KUBECONFIG: kc }).kind, 'cluster', 'no weft context: $KUBECONFIG');
    t.equal(loadContext({ context: '', redisUrl: 'redis://127.0.0.1:1' }, { HOME: dir, KUBECONFIG: kc }).kind, 'flags', '--redis-url alone beats an ambient kubeconfig');
    const file = writeContextFile(join(dir, 'cluster-context.json'), { kind: 'cluster', kubeconfig: kc, namespace: 'weft-system' });
    const ctx = loadContext({ context: file, redisUrl: '' }, env);
    t.equal(ctx.kind, 'cluster');
    t.equal(ctx.cluster?.config.server, api.url);
    const bad = writeContextFile(join(dir, 'bad-context.json'), { kind: 'cluster', kubeconfig: join(dir, 'missing') });
    const err = await caught(() => loadContext({ context: bad, redisUrl: '' }, env));
    t.equal(err.code, 'WEFT_CONFIG_INVALID');
    t.match(err.message, /cannot read kubeconfig .*missing/);
  });

  t.test('context: Redis flags on a cluster need --redis-url; opening Redis without one says so', async (t) => {
    const ignored = await caught(() => loadContext({ context: '', redisUrl: '', kubeconfig: kc, redisUsername: 'weft-operator' }, env));
    t.equal(ignored.code, 'WEFT_USAGE', 'a Redis flag without a Redis to use it with is refused, not dropped');
    t.match(ignored.message, /^--redis-username\/WEFT_REDIS_USERNAME given, but kubeconfig .* names no Redis to use them with; add --redis-url/);
    t.equal((await caught(() => loadContext({ context: '', redisUrl: '', redisUsername: 'weft-operator' }, { HOME: dir, KUBECONFIG: kc }))).code,
      'WEFT_USAGE', 'and on an ambient kubeconfig');
    t.same(loadContext({ context: '', redisUrl: 'redis://127.0.0.1:1', kubeconfig: kc, redisUsername: 'weft-operator' }, env).redis,
      { url: 'redis://127.0.0.1:1', username: 'weft-operator' }, 'with --redis-url they apply');
    const cluster = loadContext({ context: '', redisUrl: '', kubeconfig: kc }, env);
    const err = await caught(() => withRegistryStore(cluster, async () => 'write'));
    t.equal(err.code, 'WEFT_CONTEXT_MISSING', 'no Redis is guessed (redis://127.0.0.1:6379) for a cluster context');
    t.match(err.message, /names no registry Redis.*pass --redis-url/);
  });

  t.test('tunnels through the pod proxy; a pending ztunnel is reported, the others show', async (t) => {
    const { code, out, err } = await run(tunnels, ['--kubeconfig', kc, '-o', 'json']);
    t.equal(code, 0);
    const json = JSON.parse(out);
    t.same(json.items.map((x: { node: string; peerNode: string }) => `${x.node}->${x.peerNode}`), ['node-1->node-2']);
    t.match(json.unreachable, [{ node: 'node-3', error: /weft-ztunnel-node-3 is Pending/ }]);
    t.match(err, /node-3: not answering/);
    const proxied = api.requests.filter((r) => r.path.includes('/proxy/')).map((r) => r.path);
    t.ok(proxied.includes(`/api/v1/namespaces/weft-system/pods/weft-ztunnel-node-1:${(servers[0]!.address() as AddressInfo).port}/proxy/tunnels`),
      'GET pods/<pod>:<http-admin port>/proxy/tunnels');
    t.notOk(proxied.some((p) => p.includes('not-a-ztunnel')), 'only ztunnel pods are asked');
  });

  t.test('--admin-token-file: the token the ztunnels check, read and checked at start', async (t) => {
    const tokenFile = (name: string, text: string) => {
      const f = join(dir, name);
      writeFileSync(f, text);
      return f;
    };
    const viewer = tokenFile('viewer.token', 'viewer-token\n');
    const ok = await run(tunnels, ['--kubeconfig', kc, '--admin-token-file', viewer, '-o', 'json']);
    t.equal(ok.code, 0);
    t.same(JSON.parse(ok.out).items.map((x: { node: string }) => x.node), ['node-1'], 'the viewer token is let in');
    const unknown = tokenFile('unknown.token', 'nobody-token\n');
    const refused = JSON.parse((await run(tunnels, ['--kubeconfig', kc, '--admin-token-file', unknown, '-o', 'json'])).out);
    t.match(refused.unreachable, [{ node: 'node-1', error: /ztunnel of .* refused \(HTTP 401\)/ }], 'the file\'s token is the one sent, not the kubeconfig\'s');

    const bad = tokenFile('bad.token', 'Bearer hunter2 x\n');
    const flagErr = await caught(() => loadContext(parseOptions(contextOptions, ['--kubeconfig', kc, '--admin-token-file', bad], env).values, env));
    t.equal(flagErr.code, 'WEFT_CONFIG_INVALID');
    t.match(flagErr.message, /^invalid --admin-token-file=".*bad\.token": it is not a bearer token/, 'names the flag');
    t.notMatch(flagErr.message, /hunter2/, 'never shows the token');
    const envErr = await caught(() => parseOptions(contextOptions, [], { ...env, WEFT_ADMIN_TOKEN_FILE: join(dir, 'absent.token') }));
    t.match(envErr.message, /^invalid WEFT_ADMIN_TOKEN_FILE=.*absent\.token.*cannot read it \(ENOENT\)/, 'or the variable');
    t.match((await caught(() => parseOptions(contextOptions, ['--admin-token-file', tokenFile('empty.token', '\n')], env))).message,
      /--admin-token-file.*it is empty/);
    const envToken = await caught(() => loadContext({ context: '', redisUrl: '', kubeconfig: kc }, { ...env, WEFT_ADMIN_TOKEN: 'Bearer hunter2' }));
    t.equal(envToken.code, 'WEFT_CONFIG_INVALID');
    t.match(envToken.message, /^invalid WEFT_ADMIN_TOKEN: it is not a bearer token/);
    t.notMatch(envToken.message, /hunter2/);
    t.equal(loadContext({ context: '', redisUrl: '', kubeconfig: kc }, { ...env, WEFT_ADMIN_TOKEN: 'viewer-token' }).cluster?.adminToken, 'viewer-token',
      'WEFT_ADMIN_TOKEN still works');
    t.equal((await caught(() => loadContext({ context: '', redisUrl: '', kubeconfig: kc, adminTokenFile: viewer }, { ...env, WEFT_ADMIN_TOKEN: 'viewer-token' }))).code,
      'WEFT_USAGE', 'both: pass only one');
    const lab = await caught(() => loadContext({ context: labContext, redisUrl: '', adminTokenFile: viewer }, env));
    t.equal(lab.code, 'WEFT_USAGE', 'a lab takes no admin token');
    t.match(lab.message, /--admin-token-file\/WEFT_ADMIN_TOKEN_FILE given, but .* is not a cluster/);
  });

  t.test('--node picks one ztunnel pod by its node', async (t) => {
    const { code, out } = await run(tunnels, ['--kubeconfig', kc, '--node', 'node-2', '-o', 'json']);
    t.equal(code, 0);
    t.same(JSON.parse(out).items, []);
    t.match(await failure(tunnels, ['--kubeconfig', kc, '--node', 'node-9']), /not a node of context kubeconfig .*nodes: node-1, node-2, node-3/);
  });

  t.test('workloads: the registry as a ztunnel holds it', async (t) => {
    const { code, out } = await run(workloads, ['--kubeconfig', kc, '-n', 'demo', '-o', 'json']);
    t.equal(code, 0, out);
    const names = JSON.parse(out).items.map((w: { name: string }) => w.name).sort();
    t.same(names, ['client', 'echo-1', 'echo-2', 'echo-3', 'intruder', 'opt-out']);
  });

  t.test('status: registry via a ztunnel, CA not checked, every ztunnel pod a row', async (t) => {
    const { out } = await run(status, ['--kubeconfig', kc, '-o', 'json']);
    const s = JSON.parse(out);
    t.match(s.registry, { reachable: true, url: /ztunnel weft-ztunnel-node-\d on node-\d \(through the API server\)/ });
    t.match(s.ca.error, /not checked from outside the cluster/);
    t.same(s.ztunnels.map((z: { node: string; status: string }) => `${z.node}:${z.status}`), ['node-1:ready', 'node-2:ready', 'node-3:not answering']);
  });

  t.test('enroll patches the Namespace label and waits for the mesh to show it', async (t) => {
    const patchesBefore = api.requests.filter((r) => r.method === 'PATCH').length;
    const { code, out } = await run(namespace, ['enroll', 'legacy', '--kubeconfig', kc]);
    t.equal(code, 0, out);
    t.same(api.get('namespaces', undefined, 'legacy')?.metadata.labels,
      { 'kubernetes.io/metadata.name': 'legacy', team: 'b', [DATAPLANE_MODE_LABEL]: 'ambient' }, 'label set, others kept');
    t.match(out, /namespace legacy enrolled: label weft\.io\/dataplane-mode=ambient set on Namespace legacy \(kubeconfig /);
    t.match(out, /The ztunnels have it \(registry revision \d+\): 2 of 2 workloads in legacy are in the mesh/);
    t.equal(api.requests.filter((r) => r.method === 'PATCH').length, patchesBefore + 1);
    const again = await run(namespace, ['enroll', 'legacy', '--kubeconfig', kc, '-o', 'json']);
    t.match(JSON.parse(again.out), { changed: false, meshSynced: true });
    t.equal(api.requests.filter((r) => r.method === 'PATCH').length, patchesBefore + 1, 'no write when nothing changes');
  });

  t.test('unenroll removes the label', async (t) => {
    const { code, out } = await run(namespace, ['unenroll', 'legacy', '--kubeconfig', kc, '-o', 'json']);
    t.equal(code, 0, out);
    t.same(api.get('namespaces', undefined, 'legacy')?.metadata.labels, { 'kubernetes.io/metadata.name': 'legacy', team: 'b' });
    t.match(JSON.parse(out), { changed: true, before: 'ambient', meshSynced: true, workloads: { enrolled: 0, total: 2 } });
    const list = await run(namespace, ['list', '--kubeconfig', kc, '-o', 'json']);
    t.match(JSON.parse(list.out).items.find((n: { name: string }) => n.name === 'legacy'), { workloadsInMesh: 0 });
  });

  t.test('refusals name the cause and the fix', async (t) => {
    t.match(await failure(namespace, ['enroll', 'nope', '--kubeconfig', kc]),
      /namespace "nope" does not exist in kubeconfig .*; check the name with kubectl get namespaces/);
    const wrong = kubeconfig(join(dir, 'kubeconfig-wrong'), api.url, 'not-the-token');
    t.match(await failure(namespace, ['enroll', 'legacy', '--kubeconfig', wrong]),
      /does not let you read namespace legacy \(HTTP 401\); bind the weft-operator ClusterRole/);
    t.match(await failure(tunnels, ['--kubeconfig', wrong]), /list the ztunnel pods .*HTTP 401.*weft-operator/);
  });

  t.test('through the pod proxy the operator is checked by the ztunnel (TokenReview + SubjectAccessReview)', async (t) => {
    t.ok(reviews.reviews.some((r) => r.kind === 'TokenReview' && r.subject === TOKEN), 'the relayed token was reviewed');
    t.ok(reviews.reviews.some((r) => r.kind === 'SubjectAccessReview' && r.subject === 'operator'
      && r.attributes?.verb === 'get' && r.attributes?.resource === 'pods' && r.attributes?.subresource === 'proxy'));
    const port = (servers[1]!.address() as AddressInfo).port;
    const res = await fetch(`http://127.0.0.1:${port}/tunnels`, { headers: { 'x-weft-authorization': 'Bearer someone-else' } });
    t.equal(res.status, 401, 'an unknown token is refused');
  });

  t.test('the view server serves no writes', async (t) => {
    const port = (servers[0]!.address() as AddressInfo).port;
    const logging = await fetch(`http://127.0.0.1:${port}/logging?level=debug`);
    t.equal(logging.status, 404, '/logging is not on the view address');
    const post = await fetch(`http://127.0.0.1:${port}/status`, { method: 'POST' });
    t.equal(post.status, 405);
    t.equal((await fetch(`http://127.0.0.1:${port}/registry`)).status, 401, 'no token, no view');
    const reg = await (await fetch(`http://127.0.0.1:${port}/registry`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as RegistryDump;
    const state = new MeshState({ trustDomain: reg.trustDomain });
    t.ok(Array.isArray(reg.records.workload) && reg.records.workload.length === 8, 'GET /registry: every workload');
    t.equal(state.revision, 0);
  });
});
