import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import apply from '../src/cli/commands/apply';
import del from '../src/cli/commands/delete';
import type { CliIo } from '../src/cli/io';
import { TestApiServer } from './helpers/apiserver';
import { captureIo, tempDir } from './helpers/cli';
import { caught } from './helpers/wait';

const TOKEN = 'operator-token';

function kubeconfig(file: string, server: string): string {
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: test',
    'clusters:', '- name: test', '  cluster:', `    server: ${server}`,
    'users:', '- name: op', '  user:', `    token: ${TOKEN}`,
    'contexts:', '- name: test', '  context:', '    cluster: test', '    user: op', '    namespace: demo',
  ].join('\n') + '\n');
  return file;
}

const route = (weights: [number, number]) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'canary', labels: { team: 'a' } },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }],
    hostnames: [],
    rules: [{
      matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
      filters: [],
      backendRefs: [
        { group: '', kind: 'Service', name: 'echo-v1', port: 80, weight: weights[0], filters: [] },
        { group: '', kind: 'Service', name: 'echo-v2', port: 80, weight: weights[1], filters: [] },
      ],
    }],
  },
});
const gateway = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint' }, spec: { gatewayClassName: 'weft-waypoint' } };
const yamlOf = (...docs: unknown[]) => docs.map((d) => YAML.stringify(d)).join('---\n');

t.test('weft apply / delete on a cluster go through the API server', async (t) => {
  const api = await TestApiServer.start({ token: TOKEN });
  t.teardown(() => api.stop());
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const kc = kubeconfig(join(tmp.dir, 'kubeconfig'), api.url);
  const env = { HOME: tmp.dir, WEFT_KUBECONFIG: kc };
  const run = async (cmd: { runWith: (a: string[], io: CliIo) => Promise<number> }, argv: string[]) => {
    const cap = captureIo(env);
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };
  const file = (name: string, text: string) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, text);
    return p;
  };
  const writes = () => api.requests.filter((r) => r.method !== 'GET').length;

  t.test('created, unchanged, configured; the kubeconfig context namespace is the default', async (t) => {
    const f = file('a.yaml', yamlOf(route([95, 5]), gateway));
    const dry = await run(apply, ['-f', f, '--dry-run']);
    t.equal(dry.out, 'httproute.gateway.networking.k8s.io/canary created (dry run)\ngateway.gateway.networking.k8s.io/waypoint created (dry run)\n');
    t.equal(writes(), 0, 'dry run sends no write');
    const first = await run(apply, ['-f', f]);
    t.equal(first.out, 'httproute.gateway.networking.k8s.io/canary created\ngateway.gateway.networking.k8s.io/waypoint created\n');
    const stored = api.get('httproutes', 'demo', 'canary');
    t.same(stored?.spec.rules[0].backendRefs.map((b: { weight: number }) => b.weight), [95, 5]);
    t.same(stored?.metadata.labels, { team: 'a' });
    const before = writes();
    t.equal((await run(apply, ['-f', f])).out, 'httproute.gateway.networking.k8s.io/canary unchanged\ngateway.gateway.networking.k8s.io/waypoint unchanged\n');
    t.equal(writes(), before, 'unchanged sends no write');
    const second = await run(apply, ['-f', file('b.yaml', yamlOf(route([0, 100])))]);
    t.equal(second.out, 'httproute.gateway.networking.k8s.io/canary configured\n');
    const after = api.get('httproutes', 'demo', 'canary');
    t.same(after?.spec.rules[0].backendRefs.map((b: { weight: number }) => b.weight), [0, 100]);
    t.equal(after?.metadata.creationTimestamp, stored?.metadata.creationTimestamp, 'same object, replaced');
    t.equal(api.requests.filter((r) => r.method === 'PUT').length, 1);
  });

  t.test('a bad document: nothing is sent', async (t) => {
    const before = writes();
    const f = file('bad.yaml', yamlOf(route([1, 1]), { ...gateway, metadata: { name: 'other' }, spec: { gatewayClassName: 'nginx' } }));
    const err = await caught(() => run(apply, ['-f', f]));
    t.equal(err.code, 'WEFT_MANIFEST_INVALID');
    t.match(err.message, /document 2 \(Gateway demo\/other\): spec\.gatewayClassName must be weft-waypoint/);
    t.equal(writes(), before);
  });

  t.test('a kind the API server does not serve says which CRDs to install', async (t) => {
    const pa = { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'strict' }, spec: { mtls: { mode: 'STRICT' } } };
    const err = await caught(() => run(apply, ['-f', file('pa.yaml', yamlOf(pa))]));
    t.equal(err.code, 'WEFT_K8S_REQUEST_FAILED');
    t.match(err.message, /does not serve peerauthentications\.security\.istio\.io\/v1beta1.*install the security\.istio\.io\/v1beta1 CRDs/);
  });

  t.test('a TrafficPolicy goes to the API server as given; a bad one is refused before anything is sent', async (t) => {
    const tp = { apiVersion: 'networking.weft.io/v1alpha1', kind: 'TrafficPolicy', metadata: { name: 'echo' }, spec: { targetRefs: [{ kind: 'Service', name: 'echo' }], retry: {} } };
    const r = await run(apply, ['-f', file('tp.yaml', yamlOf(tp))]);
    t.equal(r.out, 'trafficpolicy.networking.weft.io/echo created\n', r.err);
    t.same(api.get('trafficpolicies', 'demo', 'echo')?.spec, tp.spec, 'the controller mirrors it from there');
    const before = writes();
    const err = await caught(() => run(apply, ['-f', file('tp-bad.yaml', yamlOf({ ...tp, spec: { ...tp.spec, retires: {} } }))]));
    t.match(err.message, /document 1 \(TrafficPolicy demo\/echo\): spec\.retires is not a known field/);
    t.equal(writes(), before, 'nothing sent: the policy in force stays');
  });

  t.test('delete: deleted, then not found', async (t) => {
    const f = file('del.yaml', yamlOf(route([1, 1]), gateway));
    const r = await run(del, ['-f', f]);
    t.equal(r.code, 0);
    t.equal(r.out, 'httproute.gateway.networking.k8s.io/canary deleted\ngateway.gateway.networking.k8s.io/waypoint deleted\n');
    t.equal(api.get('httproutes', 'demo', 'canary'), undefined);
    const again = await run(del, ['-f', f]);
    t.equal(again.code, 1);
    t.match(again.out, /canary not found\n.*waypoint not found\n/s);
  });
});
