// `weft waypoint add|remove` and `weft namespace use-waypoint` on a cluster, against the
// API server stand-in (test/helpers/apiserver.ts): add creates a Gateway of class
// weft-waypoint, remove deletes it, and bindings are read from the Namespace and Service
// labels there (the source of truth on a cluster).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import namespace from '../src/cli/commands/namespace';
import waypoint from '../src/cli/commands/waypoint';
import { TestApiServer, namespaceObj, serviceObj } from './helpers/apiserver';
import { captureIo, tempDir } from './helpers/cli';
import { caught } from './helpers/wait';

const TOKEN = 'operator-token';

t.test('waypoints on a cluster', async (t) => {
  const tmp = tempDir('weft-wp-cluster-');
  t.teardown(tmp.remove);
  const api = await TestApiServer.start({ token: TOKEN });
  t.teardown(() => api.stop());
  api.put('namespaces', namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }));
  const kc = join(tmp.dir, 'kubeconfig');
  writeFileSync(kc, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'clusters:', '- name: test', '  cluster:', `    server: ${api.url}`,
    'users:', '- name: op', '  user:', `    token: ${TOKEN}`,
    'contexts:', '- name: test', '  context:', '    cluster: test', '    user: op',
  ].join('\n') + '\n');
  const env = { HOME: tmp.dir, WEFT_CONTEXT: '', WEFT_KUBECONFIG: kc };
  const run = async (cmd: typeof waypoint, argv: string[]) => {
    const cap = captureIo(env);
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };

  t.test('add creates the Gateway; a second add is WEFT_WAYPOINT_EXISTS', async (t) => {
    const r = await run(waypoint, ['add', 'demo/waypoint']);
    t.equal(r.code, 0);
    t.match(r.out, /waypoint demo\/waypoint: created Gateway demo\/waypoint \(class weft-waypoint\); the controller deploys it/);
    const gw = api.get('gateways', 'demo', 'waypoint')!;
    t.same(gw.spec, { gatewayClassName: 'weft-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] });
    t.equal(gw.apiVersion, 'gateway.networking.k8s.io/v1');
    t.equal((await caught(() => run(waypoint, ['add', 'demo/waypoint']))).code, 'WEFT_WAYPOINT_EXISTS');
    const sa = await caught(() => run(waypoint, ['add', 'demo/other', '--service-account', 'x']));
    t.equal(sa.code, 'WEFT_USAGE');
    t.match(sa.message, /--service-account applies to the lab only/);
  });

  t.test('without the Gateway API CRDs, add says so', async (t) => {
    api.setGatewayAPIInstalled(false);
    t.teardown(() => api.setGatewayAPIInstalled(true));
    const err = await caught(() => run(waypoint, ['add', 'demo/second']));
    t.equal(err.code, 'WEFT_K8S_REQUEST_FAILED');
    t.match(err.message, /no Gateway API \(CRDs not installed\)/);
    t.match(err.message, /kubectl apply -f https:\/\/github\.com\/kubernetes-sigs\/gateway-api\/releases\/download\/v[\d.]+\/standard-install\.yaml/, 'a command the user can run');
  });

  t.test('use-waypoint patches the Namespace; remove is refused while bound, --force deletes', async (t) => {
    t.equal((await caught(() => run(namespace, ['use-waypoint', 'demo', 'nope']))).code, 'WEFT_REGISTRY_NOT_FOUND', 'no such Gateway');
    const use = await run(namespace, ['use-waypoint', 'demo', 'waypoint']);
    t.equal(use.code, 0);
    t.match(use.out, /label weft\.io\/use-waypoint=waypoint set on Namespace demo/);
    t.equal(api.get('namespaces', undefined, 'demo')!.metadata.labels['weft.io/use-waypoint'], 'waypoint');
    api.put('services', serviceObj('demo', 'echo', { clusterIP: '10.96.0.10', labels: { 'weft.io/use-waypoint': 'waypoint' }, ports: [{ port: 80 }] }));
    api.put('services', serviceObj('demo', 'plain', { clusterIP: '10.96.0.11', ports: [{ port: 80 }] }));

    const refused = await caught(() => run(waypoint, ['remove', 'demo/waypoint']));
    t.equal(refused.code, 'WEFT_WAYPOINT_IN_USE');
    t.match(refused.message, /still used by namespace demo, service demo\/echo;/);
    t.ok(api.get('gateways', 'demo', 'waypoint'), 'Gateway kept');

    const forced = await run(waypoint, ['remove', 'demo/waypoint', '--force', '-o', 'json']);
    t.same(JSON.parse(forced.out), { namespace: 'demo', name: 'waypoint', usedBy: ['namespace demo', 'service demo/echo'], forced: true, object: 'Gateway demo/waypoint' });
    t.equal(api.get('gateways', 'demo', 'waypoint'), undefined, 'Gateway deleted');
    t.equal((await caught(() => run(waypoint, ['remove', 'demo/waypoint']))).code, 'WEFT_REGISTRY_NOT_FOUND');
  });
});
