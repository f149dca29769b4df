// Weft driven the Kubernetes way (issue 5), end to end on the lab: an API server
// stand-in (real protocol) holds the lab's nodes, namespaces, pods, services and
// endpoint slices plus one ztunnel pod per node; the real `weft controller` mirrors it
// into the lab's Redis; the real ztunnels capture and tunnel. The operator uses only a
// kubeconfig: `weft namespace unenroll|enroll` patches the Namespace, and `weft
// tunnels|workloads|status` reach the ztunnels through the API server's pod proxy.
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIST } from '../../src/lab/paths';
import { RegistryStore } from '../../src/registry/store';
import { ZTUNNEL_POD_SELECTOR } from '../../src/cli/context';
import { TestApiServer, authzPolicyObj, endpointSliceObj, namespaceObj, nodeObj, podObj, serviceObj } from '../helpers/apiserver';
import { waitFor } from '../helpers/wait';
import { freePort } from '../helpers/redis';
import { E2E_LAB_DIR, labSkipReason, startLab } from './helpers/lab';
import { runWeft } from '../../src/lab/run';
import { LAB_NET } from '../../src/lab/plan';
import { TestAccessReview } from '../helpers/access-review';

const skip = labSkipReason();
const TOKEN = 'weft-e2e-operator';
const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const ECHO = 'spiffe://cluster.local/ns/demo/sa/echo';

interface TunnelRow { node: string; sourceIdentity: string; destinationIdentity: string; peerNode?: string; totalStreams: number }

t.test('the lab run as a cluster: controller, kubeconfig CLI, pod proxy', { skip }, async (t) => {
  // The ztunnels check who reads their admin views with the API server (TokenReview +
  // SubjectAccessReview); they inherit this from `lab up` and read the file at the
  // first request, so it may be written once the API server runs.
  const ztunnelKubeconfig = join(E2E_LAB_DIR, 'ztunnel-kubeconfig');
  const lab = await startLab(t, { env: { WEFT_ADMIN_VIEW_KUBECONFIG: ztunnelKubeconfig } });
  const ctx = lab.context;

  // The API server's view of the lab, as a cluster would have it. On the lab bridge, so
  // the ztunnels in their node network namespaces reach it too.
  const api = await TestApiServer.start({ token: TOKEN, host: LAB_NET.gateway });
  t.teardown(() => api.stop());
  const reviews = new TestAccessReview(api).addUser(TOKEN, 'operator')
    .allow({ user: 'operator', namespace: 'weft-system', verb: 'get', resource: 'pods', subresource: 'proxy' });
  writeFileSync(ztunnelKubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: lab',
    'clusters:', '- name: lab', '  cluster:', `    server: ${api.url}`,
    'users:', '- name: ztunnel', '  user:', `    token: ${TOKEN}`,
    'contexts:', '- name: lab', '  context:', '    cluster: lab', '    user: ztunnel',
  ].join('\n') + '\n');
  const store = RegistryStore.connect(ctx.redisUrl);
  t.teardown(() => store.close());
  const { records } = await store.snapshot();
  for (const n of records.node) api.put('nodes', nodeObj(n.name, n.address, n.podCidr));
  for (const ns of [...records.namespace, { name: 'weft-system', labels: {} }]) api.put('namespaces', namespaceObj(ns.name, ns.labels));
  const pods = records.workload.map((w) => api.put('pods', podObj(w.namespace, w.name, {
    node: w.node, ip: w.addresses[0], labels: w.labels, sa: w.serviceAccount, ready: w.status === 'Healthy',
  })));
  for (const s of records.service) {
    api.put('services', serviceObj(s.namespace, s.name, { clusterIP: s.vips[0]!, selector: s.selector, ports: s.ports }));
    const members = pods.filter((p) => p.metadata.namespace === s.namespace
      && Object.entries(s.selector).every(([k, v]) => p.metadata.labels[k] === v));
    api.put('endpointslices', endpointSliceObj(s.namespace, `${s.name}-abc12`, s.name,
      members.map((p) => ({ ip: p.status.podIP, pod: p, ready: true }))));
  }
  // The DaemonSet's pods: hostNetwork, so the pod IP is the node IP, where the ztunnel
  // serves its read-only admin views (the lab starts it with --admin-view-address).
  for (const n of ctx.nodes) {
    api.put('pods', podObj('weft-system', `weft-ztunnel-${n.name}`, {
      node: n.name, ip: n.address, hostNetwork: true, sa: 'weft-ztunnel',
      labels: Object.fromEntries([ZTUNNEL_POD_SELECTOR.split('=') as [string, string]]),
      ports: [{ name: 'http-admin', containerPort: 15000 }],
    }));
  }
  const kubeconfig = join(lab.labDir, 'kubeconfig');
  writeFileSync(kubeconfig, [
    'apiVersion: v1', 'kind: Config', 'current-context: lab',
    'clusters:', '- name: lab', '  cluster:', `    server: ${api.url}`,
    'users:', '- name: op', '  user:', `    token: ${TOKEN}`,
    'contexts:', '- name: lab', '  context:', '    cluster: lab', '    user: op',
  ].join('\n') + '\n');

  // The real controller, mirroring the API server into the lab's Redis.
  const metricsPort = await freePort();
  const controller = spawn(process.execPath, [DIST.main, 'controller', '--kubeconfig', kubeconfig, '--redis-url', ctx.redisUrl,
    '--metrics-listen', `127.0.0.1:${metricsPort}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let controllerErr = '';
  controller.stderr.on('data', (c: Buffer) => { controllerErr += c.toString(); });
  t.teardown(() => { if (controller.exitCode === null) controller.kill('SIGTERM'); });
  await waitFor('controller ready', async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz/ready`).catch(() => undefined))?.status === 200,
    { timeoutMs: 20_000, intervalMs: 100 });
  // Converged: every workload now carries the pod uid the API server assigned.
  const uids = new Set(pods.map((p) => p.metadata.uid as string));
  await waitFor('the controller to mirror the pods', async () => {
    const snap = await store.snapshot();
    return snap.records.workload.length === pods.length && snap.records.workload.every((w) => uids.has(w.uid));
  }, { timeoutMs: 20_000, intervalMs: 100 });

  // Only the kubeconfig: no lab context file to fall back on.
  const clusterEnv: NodeJS.ProcessEnv = { ...lab.env, WEFT_KUBECONFIG: kubeconfig };
  delete clusterEnv.WEFT_CONTEXT;
  const weft = (args: string[]) => runWeft(args, clusterEnv);
  const echo2 = ctx.pods.find((p) => p.namespace === 'demo' && p.name === 'echo-2')!;
  const tunnelStreams = async (): Promise<number> => {
    const res = await weft(['tunnels', '-o', 'json']);
    if (res.code !== 0) throw new Error(`weft tunnels: ${res.stderr}`);
    const rows = (JSON.parse(res.stdout) as { items: TunnelRow[] }).items;
    return rows.filter((r) => r.node === 'node-1' && r.sourceIdentity === CLIENT && r.destinationIdentity === ECHO)
      .reduce((sum, r) => sum + r.totalStreams, 0);
  };
  const send = async () => {
    const r = await lab.tcp('demo/client', `${echo2.ip}:9000`, 20_000);
    return r.receivedSha256 === r.sentSha256;
  };

  await t.test('traffic is tunnelled, and weft tunnels sees it through the pod proxy', async (t) => {
    const before = await tunnelStreams();
    t.ok(await send(), 'demo/client -> demo/echo-2 bytes intact');
    t.ok(await tunnelStreams() > before, 'a new HBONE stream from node-1 for client -> echo');
    const proxied = api.requests.filter((r) => /\/pods\/weft-ztunnel-node-1:15000\/proxy\/tunnels$/.test(r.path));
    t.ok(proxied.length > 0, 'read through GET pods/weft-ztunnel-node-1:15000/proxy/tunnels');
    t.ok(reviews.reviews.some((r) => r.kind === 'SubjectAccessReview' && r.subject === 'operator'),
      'the ztunnel checked the operator (TokenReview + SubjectAccessReview for get pods/proxy)');
  });

  await t.test('the admin views refuse callers without a token, or without the right (issue 9, item 13)', async (t) => {
    const node1 = ctx.nodes.find((n) => n.name === 'node-1')!;
    // From a pod on node-1 (outside the mesh, so not captured), as any workload could: no token.
    const fromPod = await lab.exec('legacy/client', ['weft', 'lab', 'request', `http://${node1.address}:15000/tunnels`, '--timeout', '3s']);
    t.not(fromPod.code, 0, 'a pod without a token gets no view');
    t.match(fromPod.stderr, /answered 401/);
    // A user the API server knows, without get pods/proxy in weft-system.
    reviews.addUser('viewer-token', 'viewer');
    const res = await runWeft(['tunnels', '-o', 'json'], { ...clusterEnv, WEFT_ADMIN_TOKEN: 'viewer-token' });
    t.not(res.code, 0, 'no node answers a user without pods/proxy');
    t.match(res.stderr, /refused \(HTTP 403\): viewer may not get pods\/proxy in namespace weft-system/);
  });

  await t.test('unenroll patches the Namespace; the controller and ztunnels follow', async (t) => {
    const started = Date.now();
    const res = await weft(['namespace', 'unenroll', 'demo', '-o', 'json']);
    // Reported, not asserted: the whole chain (CLI start, PATCH, controller, Redis, ztunnel view).
    t.comment(`weft namespace unenroll returned, mesh synced, after ${Date.now() - started} ms`);
    t.equal(res.code, 0, res.stderr + res.stdout);
    t.match(JSON.parse(res.stdout), { changed: true, meshSynced: true, workloads: { enrolled: 0 } });
    t.notOk(api.get('namespaces', undefined, 'demo')?.metadata.labels['weft.io/dataplane-mode'], 'label gone from the Namespace');
    const ws = JSON.parse((await weft(['workloads', '-n', 'demo', '-o', 'json'])).stdout) as { items: { name: string; enrolled: boolean }[] };
    t.ok(ws.items.length > 0 && ws.items.every((w) => !w.enrolled), 'no demo workload in the mesh');
    const before = await tunnelStreams();
    t.ok(await send(), 'traffic still flows, as plain TCP');
    t.equal(await tunnelStreams(), before, 'and not through a tunnel');
  });

  await t.test('enroll puts it back', async (t) => {
    const started = Date.now();
    const res = await weft(['namespace', 'enroll', 'demo']);
    t.comment(`weft namespace enroll returned, mesh synced, after ${Date.now() - started} ms`);
    t.equal(res.code, 0, res.stderr + res.stdout);
    t.match(res.stdout, /The ztunnels have it \(registry revision \d+\): 3 of 3 workloads in demo are in the mesh/);
    // Capture is reconciled right after the registry change; allow it its moment.
    await waitFor('traffic back in the tunnel', async () => {
      const before = await tunnelStreams();
      return (await send()) && (await tunnelStreams()) > before;
    }, { timeoutMs: 10_000, intervalMs: 200 });
    t.pass('demo traffic goes through the tunnel again');
  });

  await t.test('weft status over the API server: every ztunnel ready', async (t) => {
    const res = await weft(['status', '-o', 'json']);
    t.equal(res.code, 0, res.stderr + res.stdout);
    const s = JSON.parse(res.stdout) as { healthy: boolean; ztunnels: { node: string; status: string }[] };
    t.same(s.ztunnels.map((z) => `${z.node}:${z.status}`), ctx.nodes.map((n) => `${n.name}:ready`));
    t.ok(s.healthy);
  });

  await t.test('an invalid edit of the ALLOW guarding demo/echo does not open it (issue 9, item 14)', async (t) => {
    const refused = async (from: string) => (await lab.exec(from, ['weft', 'lab', 'tcp', `${echo2.ip}:9000`, '--bytes', '1000', '--timeout', '3s'])).code !== 0;
    t.notOk(await refused('legacy/client'), 'before any policy, a client outside the mesh reaches echo-2');
    api.put('authorizationpolicies', authzPolicyObj('demo', 'allow-client', {
      action: 'ALLOW', selector: { matchLabels: { app: 'echo' } },
      rules: [{ clauses: [{ matches: [{ principals: [CLIENT] }] }] }],
    }));
    await waitFor('the ALLOW to guard echo-2', () => refused('legacy/client'), { timeoutMs: 10_000, intervalMs: 200 });
    t.ok(await send(), 'demo/client is admitted');

    // Not a spiffe:// URI: the controller cannot translate it. Before the fix it deleted the record.
    api.modify('authorizationpolicies', 'demo', 'allow-client', (o) => { o.spec.rules[0].clauses[0].matches[0].principals = ['client']; });
    await waitFor('Accepted=False on the object', () => api.get('authorizationpolicies', 'demo', 'allow-client')?.status?.conditions?.[0]?.status === 'False',
      { timeoutMs: 10_000, intervalMs: 100 });
    t.match(await store.get('policy', 'demo/allow-client'), { invalid: { state: 'LastGood' } }, 'the registry keeps the last valid version');
    // Give the ztunnels the time a deletion would take to reach them (registry change → view), then check they still refuse.
    const rev = await store.revision();
    await waitFor('the ztunnels to follow the registry', async () => {
      const res = await weft(['status', '-o', 'json']);
      const z = (JSON.parse(res.stdout || '{}') as { ztunnels?: { registryRevision?: number }[] }).ztunnels ?? [];
      return z.length > 0 && z.every((x) => (x.registryRevision ?? 0) >= rev);
    }, { timeoutMs: 10_000, intervalMs: 200 });
    t.ok(await refused('legacy/client'), 'a client the policy did not admit is still refused');
    t.ok(await send(), 'and demo/client is still admitted');
    const listed = await weft(['policies', '-n', 'demo']);
    t.match(listed.stdout, /demo\s+allow-client\s+AuthorizationPolicy\s+ALLOW\s+WORKLOAD_SELECTOR\s+app=echo\s+1\s+LastGood/, 'weft policies shows its last valid version held');

    api.remove('authorizationpolicies', 'demo', 'allow-client');
    await waitFor('access back once the policy is deleted', async () => !(await refused('legacy/client')), { timeoutMs: 10_000, intervalMs: 200 });
    t.pass('deleting the object is what removes the policy');
  });

  t.equal(controller.exitCode, null, `the controller kept running${controllerErr ? `: ${controllerErr.slice(0, 500)}` : ''}`);
});
