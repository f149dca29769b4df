import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import apply from '../src/cli/commands/apply';
import del from '../src/cli/commands/delete';
import routes from '../src/cli/commands/routes';
import { applyToRegistry } from '../src/cli/apply-registry';
import { parseManifest } from '../src/cli/manifest';
import { parseObjects } from '../src/cli/manifest-objects';
import { serviceRecord } from '../src/registry/fixtures';
import type { CliIo } from '../src/cli/io';
import { assertDistFresh, MAIN } from './helpers/built';
import { captureIo, startDemoRegistry } from './helpers/cli';
import { caught } from './helpers/wait';

// Routes written with every default spelled out, so the stored record equals the
// document whatever defaults the validator fills in.
function httpRoute(name: string, backends: { name: string; port?: number; weight: number }[], o: { namespace?: string; parent?: string } = {}) {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute',
    metadata: { name, ...(o.namespace ? { namespace: o.namespace } : {}) },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: o.parent ?? 'echo', port: 80 }],
      hostnames: [],
      rules: [{
        matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
        filters: [],
        backendRefs: backends.map((b) => ({ group: '', kind: 'Service', name: b.name, ...(b.port !== undefined ? { port: b.port } : {}), weight: b.weight, filters: [] })),
      }],
    },
  };
}

const canary = (v1: number, v2: number) => httpRoute('canary', [{ name: 'echo-v1', port: 80, weight: v1 }, { name: 'echo-v2', port: 80, weight: v2 }], { namespace: 'demo' });
const gateway = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'demo' }, spec: { gatewayClassName: 'weft-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } };
const allowPolicy = {
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow-client', namespace: 'demo' },
  spec: {
    selector: { matchLabels: { app: 'echo' } },
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/client'] } }, { source: { namespaces: ['ops'] } }], to: [{ operation: { ports: ['8080'] } }] }],
  },
};
const strict = { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'strict', namespace: 'demo' }, spec: { mtls: { mode: 'STRICT' } } };

const yamlOf = (...docs: unknown[]) => docs.map((d) => YAML.stringify(d)).join('---\n');

t.test('weft apply / delete / routes against the registry', async (t) => {
  const { store, dir, contextFile } = await startDemoRegistry(t);
  await store.apply([
    { op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo-v1', vips: ['198.18.128.11'], ports: [{ port: 80, targetPort: 8080 }] }) },
    { op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'echo-v2', vips: ['198.18.128.12'], ports: [{ port: 80, targetPort: 8080 }] }) },
  ]);
  const env = { HOME: dir, WEFT_CONTEXT: contextFile };
  const run = async (cmd: { runWith: (a: string[], io: CliIo) => Promise<number> }, argv: string[], stdin?: string) => {
    const cap = captureIo(env);
    if (stdin !== undefined) cap.io.readStdin = async () => stdin;
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  t.test('created, then unchanged, then configured; exactly one revision per apply that changes something', async (t) => {
    const f = file('canary.yaml', yamlOf(canary(95, 5)));
    const rev0 = await store.revision();
    const first = await run(apply, ['-f', f]);
    t.equal(first.code, 0);
    t.equal(first.out, 'httproute.gateway.networking.k8s.io/canary created\n');
    t.equal(await store.revision(), rev0 + 1, 'one revision');
    const stored = await store.get('httproute', 'demo/canary');
    t.same(stored?.spec.rules[0]?.backendRefs.map((b) => `${b.name}:${b.weight}`), ['echo-v1:95', 'echo-v2:5']);
    t.match(stored?.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'creationTimestamp set on create');

    const again = await run(apply, ['-f', f]);
    t.equal(again.out, 'httproute.gateway.networking.k8s.io/canary unchanged\n');
    t.equal(await store.revision(), rev0 + 1, 'unchanged writes nothing');

    const f2 = file('canary.yaml', yamlOf(canary(50, 50), gateway));
    const third = await run(apply, ['-f', f2]);
    t.equal(third.out, 'httproute.gateway.networking.k8s.io/canary configured\ngateway.gateway.networking.k8s.io/waypoint created\n');
    t.equal(await store.revision(), rev0 + 2, 'two objects, one revision');
    t.equal((await store.get('httproute', 'demo/canary'))?.creationTimestamp, stored?.creationTimestamp, 'kept on update');
  });

  t.test('creationTimestamp is set once and preserved on update (precedence ties depend on it)', async (t) => {
    const objs = (v1: number) => parseObjects(parseManifest(yamlOf(httpRoute('aged', [{ name: 'echo-v1', port: 80, weight: v1 }], { namespace: 'demo' })), 'aged.yaml'), { defaultNamespace: 'default' });
    const r1 = await applyToRegistry(store, objs(1), { dryRun: false, now: () => new Date('2026-11-30T10:00:00.250Z') });
    t.equal(r1.results[0]!.action, 'created');
    const r2 = await applyToRegistry(store, objs(2), { dryRun: false, now: () => new Date('2026-11-30T11:00:00Z') });
    t.equal(r2.results[0]!.action, 'configured');
    t.equal((await store.get('httproute', 'demo/aged'))?.creationTimestamp, '2026-11-30T10:00:00Z');
    t.equal((r2.results[0]!.object.metadata as { creationTimestamp: string }).creationTimestamp, '2026-11-30T10:00:00Z', '-o shows it');
  });

  t.test('compare-and-set: a write between the read and the apply makes it decide again on what is stored', async (t) => {
    const objs = parseObjects(parseManifest(yamlOf(httpRoute('raced', [{ name: 'echo-v1', port: 80, weight: 1 }], { namespace: 'demo' })), 'raced.yaml'), { defaultNamespace: 'default' });
    const now = () => new Date('2026-11-30T12:00:00Z');
    let reads = 0;
    // After the first read, another writer stores the very same route: the first
    // verdict (created) is stale, the apply must lose the compare-and-set and re-read.
    const racing = Object.create(store, {
      snapshot: {
        value: async () => {
          const snap = await store.snapshot();
          if (reads++ === 0) await store.apply([objs[0]!.change!('2026-11-30T12:00:00Z')]);
          return snap;
        },
      },
    }) as typeof store;
    const rev = await store.revision();
    const out = await applyToRegistry(racing, objs, { dryRun: false, now });
    t.equal(reads, 2, 'read again after the conflict');
    t.equal(out.results[0]!.action, 'unchanged', 'decided against what is stored now');
    t.equal(await store.revision(), rev + 1, "only the other writer's revision");
  });

  t.test('a bad document among good ones: nothing is written, the message names file, document and field', async (t) => {
    const rev = await store.revision();
    const bad = { ...httpRoute('Bad_Name', [{ name: 'echo-v1', port: 80, weight: 1 }]) };
    const badPolicy = { ...allowPolicy, metadata: { name: 'broken', namespace: 'demo' }, spec: { ...allowPolicy.spec, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] } };
    const f = file('mixed.yaml', yamlOf(httpRoute('good', [{ name: 'echo-v1', port: 80, weight: 1 }], { namespace: 'demo' }), bad, badPolicy));
    const err = await caught(() => run(apply, ['-f', f]));
    t.equal(err.code, 'WEFT_MANIFEST_INVALID');
    t.match(err.message, `2 of 3 documents are invalid:`);
    t.match(err.message, `${f}: document 2 (HTTPRoute default/Bad_Name): metadata.name must be a DNS-1123 subdomain`);
    t.match(err.message, `${f}: document 3 (AuthorizationPolicy demo/broken): spec.rules[0].to[0].operation.methods is an L7 attribute; without targetRefs this AuthorizationPolicy is enforced at L4 by the ztunnel`);
    t.match(err.message, /nothing was applied/);
    t.same((err as unknown as { details: { document: string } }).details.document, '2');
    t.equal(await store.revision(), rev, 'no revision');
    t.equal(await store.get('httproute', 'default/good'), undefined);
    t.equal(await store.get('httproute', 'demo/good'), undefined);
  });

  t.test('a field deep in a spec is named by its path (the Gateway API edge validator)', async (t) => {
    const rev = await store.revision();
    const noPort = httpRoute('canary', [{ name: 'echo-v1', port: 80, weight: 1 }, { name: 'echo-v2', weight: 1 }], { namespace: 'demo' });
    const f = file('canary-bad.yaml', yamlOf(gateway, noPort));
    const err = await caught(() => run(apply, ['-f', f]));
    t.equal(err.code, 'WEFT_MANIFEST_INVALID');
    t.match(err.message, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: document 2 \\(HTTPRoute demo/canary\\): spec\\.rules\\[0\\]\\.backendRefs\\[1\\]\\.port `));
    t.equal(await store.revision(), rev, 'nothing written, the Gateway of document 1 neither');
  });

  t.test('unknown kinds, wrong apiVersions and bad YAML are refused with what is supported', async (t) => {
    const svc = file('svc.yaml', yamlOf({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' } }));
    const e1 = await caught(() => run(apply, ['-f', svc]));
    t.match(e1.message, /document 1 \(Service default\/x\): kind Service is not supported by weft apply; supported kinds: HTTPRoute \(gateway\.networking\.k8s\.io\/v1, gateway\.networking\.k8s\.io\/v1beta1\); GRPCRoute .*Gateway .*AuthorizationPolicy \(security\.istio\.io\/v1, security\.istio\.io\/v1beta1, security\.weft\.io\/v1alpha1\); PeerAuthentication/);
    const old = file('old.yaml', yamlOf({ ...canary(1, 1), apiVersion: 'gateway.networking.k8s.io/v1alpha2' }));
    t.match((await caught(() => run(apply, ['-f', old]))).message, /apiVersion "gateway\.networking\.k8s\.io\/v1alpha2" is not one Weft reads for HTTPRoute; use gateway\.networking\.k8s\.io\/v1 or gateway\.networking\.k8s\.io\/v1beta1/);
    const broken = file('broken.yaml', 'kind: HTTPRoute\n---\nmetadata: {name: [\n');
    const e3 = await caught(() => run(apply, ['-f', broken]));
    t.equal(e3.code, 'WEFT_MANIFEST_INVALID');
    t.match(e3.message, `${broken}: document 2 is not valid YAML`);
    const wrongClass = file('gw.yaml', yamlOf({ ...gateway, spec: { gatewayClassName: 'istio' } }));
    t.match((await caught(() => run(apply, ['-f', wrongClass]))).message, /spec\.gatewayClassName must be weft-waypoint \(Weft deploys only Gateways of that class, as waypoints\), got "istio"/);
    const clash = file('clash.yaml', yamlOf(gateway, gateway));
    t.match((await caught(() => run(apply, ['-f', clash]))).message, /document 2 .*Gateway demo\/waypoint is also in .*clash\.yaml: document 1/);
    const nsClash = file('ns.yaml', yamlOf(gateway));
    t.match((await caught(() => run(apply, ['-f', nsClash, '-n', 'other']))).message, /metadata\.namespace is demo but -n is other/);
  });

  t.test('--dry-run checks and prints, writes nothing', async (t) => {
    const rev = await store.revision();
    const f = file('dry.yaml', yamlOf(canary(10, 90), strict));
    const r = await run(apply, ['-f', f, '--dry-run']);
    t.equal(r.out, 'httproute.gateway.networking.k8s.io/canary configured (dry run)\npeerauthentication.security.istio.io/strict created (dry run)\n');
    t.equal(await store.revision(), rev);
    t.equal(await store.get('peerauth', 'demo/strict'), undefined);
  });

  t.test('-o json and -o yaml print the resulting objects', async (t) => {
    const one = JSON.parse((await run(apply, ['-f', file('one.yaml', yamlOf(canary(50, 50))), '-o', 'json'])).out);
    t.equal(one.kind, 'HTTPRoute');
    t.equal(one.metadata.namespace, 'demo');
    t.match(one.metadata.creationTimestamp, /Z$/);
    t.same(one.spec.rules[0].backendRefs.map((b: { weight: number }) => b.weight), [50, 50]);
    const list = YAML.parse((await run(apply, ['-f', file('two.yaml', yamlOf(canary(50, 50), gateway)), '-o', 'yaml'])).out);
    t.equal(list.kind, 'List');
    t.same(list.items.map((i: { kind: string }) => i.kind), ['HTTPRoute', 'Gateway']);
  });

  t.test('a directory: its *.yaml, *.yml and *.json files in name order', async (t) => {
    const d = join(dir, 'manifests');
    mkdirSync(d);
    writeFileSync(join(d, '20-policy.json'), JSON.stringify(allowPolicy));
    writeFileSync(join(d, '10-route.yml'), yamlOf(httpRoute('dir-route', [{ name: 'echo-v2', port: 80, weight: 1 }], { namespace: 'demo' })));
    writeFileSync(join(d, '30-peer.yaml'), yamlOf(strict));
    writeFileSync(join(d, 'README.md'), 'not a manifest');
    const rev = await store.revision();
    const r = await run(apply, ['-f', d]);
    t.equal(r.out, [
      'httproute.gateway.networking.k8s.io/dir-route created',
      'authorizationpolicy.security.istio.io/allow-client created',
      'peerauthentication.security.istio.io/strict created', ''].join('\n'));
    t.equal(await store.revision(), rev + 1);
    // AuthorizationPolicy through the controller's translator: selector → WORKLOAD_SELECTOR.
    t.same(await store.get('policy', 'demo/allow-client'), {
      name: 'allow-client', namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'ALLOW',
      rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/client'] }, { namespaces: ['ops'] }] }, { matches: [{ destinationPorts: [8080] }] }] }],
    }, "Istio's from/to: one clause of sources, one of operations; principals get spiffe://; action defaults to ALLOW");
    t.same(await store.get('peerauth', 'demo/strict'), { name: 'strict', namespace: 'demo', mode: 'STRICT' });
    t.same(await store.get('waypoint', 'demo/waypoint'), { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' }, 'Gateway → waypoint record');
  });

  t.test('stdin (-f -), with a namespace from -n', async (t) => {
    const r = await run(apply, ['-f', '-', '-n', 'demo'], yamlOf(httpRoute('from-stdin', [{ name: 'echo-v1', port: 80, weight: 1 }])));
    t.equal(r.out, 'httproute.gateway.networking.k8s.io/from-stdin created\n');
    t.ok(await store.get('httproute', 'demo/from-stdin'));
  });

  t.test('routes: parents, backends, Accepted and ResolvedRefs with reasons', async (t) => {
    await run(apply, ['-f', '-'], yamlOf(
      httpRoute('missing-backend', [{ name: 'echo-v1', port: 80, weight: 1 }, { name: 'echo-v9', port: 80, weight: 1 }], { namespace: 'demo' }),
      httpRoute('no-parent', [{ name: 'echo-v1', port: 80, weight: 1 }], { namespace: 'demo', parent: 'nothing' }),
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'rpc', namespace: 'demo' },
        spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo-v1' }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 80 }] }] },
      },
      {
        apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'rpc-gateway', namespace: 'demo' },
        spec: { parentRefs: [{ name: 'echo-v1' }], rules: [{ backendRefs: [{ name: 'echo-v1', port: 80 }] }] },
      },
    ));
    const { code, out } = await run(routes, ['-n', 'demo']);
    t.equal(code, 0);
    t.match(out, /^NAMESPACE\s+NAME\s+KIND\s+PARENTS\s+HOSTNAMES\s+RULES\s+BACKENDS\s+ACCEPTED\s+RESOLVED REFS\n/);
    t.match(out, /demo\s+canary\s+HTTPRoute\s+echo:80\s+-\s+1\s+echo-v1:80 50, echo-v2:80 50\s+True\s+True\n/);
    t.match(out, /demo\s+missing-backend\s+HTTPRoute\s+echo:80\s+-\s+1\s+echo-v1:80 1, echo-v9:80 1\s+True\s+False \(BackendNotFound: backendRef demo\/echo-v9:80: Service demo\/echo-v9 does not exist\)\n/);
    t.match(out, /demo\s+no-parent\s+HTTPRoute\s+nothing:80\s+.*False \(NoMatchingParent: Service demo\/nothing:80: the Service does not exist; create it or fix parentRefs\)\s+True\n/);
    t.match(out, /demo\s+rpc\s+GRPCRoute\s+echo-v1\s+-\s+1\s+echo-v1:80 1\s+True\s+True\n/);
    t.match(out, /demo\s+rpc-gateway\s+GRPCRoute\s+gateway\.networking\.k8s\.io\/Gateway echo-v1\s+.*False \(NoMatchingParent: no parentRef names a Service .*\)\s+Unknown\n/,
      'a parentRef without kind: Service is a Gateway (the spec default), which Weft does not attach to');
    const json = JSON.parse((await run(routes, ['-n', 'demo', '-o', 'json'])).out);
    const missing = json.items.find((i: { name: string }) => i.name === 'missing-backend');
    t.same(missing.resolvedRefs.reason, 'BackendNotFound');
    t.same(missing.status.parents[0].conditions.map((c: { type: string; status: string }) => `${c.type}=${c.status}`), ['Accepted=True', 'ResolvedRefs=False']);
    t.equal((await run(routes, ['-n', 'nowhere'])).out, 'No routes found in namespace nowhere.\n');
  });

  t.test('delete: deleted and not found, in one revision; exit 1 unless --ignore-not-found', async (t) => {
    const f = file('del.yaml', yamlOf(canary(1, 1), gateway, { ...strict, metadata: { name: 'never-made', namespace: 'demo' } }));
    const rev = await store.revision();
    const dry = await run(del, ['-f', f, '--dry-run']);
    t.match(dry.out, /canary deleted \(dry run\)/);
    t.equal(await store.revision(), rev);
    const r = await run(del, ['-f', f]);
    t.equal(r.code, 1);
    t.equal(r.out, [
      'httproute.gateway.networking.k8s.io/canary deleted',
      'gateway.gateway.networking.k8s.io/waypoint deleted',
      'peerauthentication.security.istio.io/never-made not found', ''].join('\n'));
    t.match(r.err, /1 object not found/);
    t.equal(await store.revision(), rev + 1);
    t.equal(await store.get('httproute', 'demo/canary'), undefined);
    t.equal(await store.get('waypoint', 'demo/waypoint'), undefined);
    const again = await run(del, ['-f', f, '--ignore-not-found']);
    t.equal(again.code, 0);
    t.equal(await store.revision(), rev + 1, 'nothing to delete, no revision');
  });

  t.test('the built binary: stdin, exit code 2 on a bad manifest', async (t) => {
    assertDistFresh();
    const weft = (args: string[], input: string) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 30_000 },
        (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
      child.stdin!.end(input);
    });
    const ok = await weft(['apply', '-f', '-'], yamlOf(httpRoute('piped', [{ name: 'echo-v1', port: 80, weight: 1 }], { namespace: 'demo' })));
    t.equal(ok.code, 0, ok.stderr);
    t.equal(ok.stdout, 'httproute.gateway.networking.k8s.io/piped created\n');
    const rev = await store.revision();
    const bad = await weft(['apply', '-f', '-'], yamlOf(strict, { ...strict, spec: { mtls: { mode: 'DISABLE' } } }));
    t.equal(bad.code, 2);
    t.match(bad.stderr, /^weft: <stdin>: document 2 \(PeerAuthentication demo\/strict\): spec\.mtls\.mode is "DISABLE"; Weft supports STRICT and PERMISSIVE/);
    t.match(bad.stderr, /\[WEFT_MANIFEST_INVALID\]\n$/);
    t.equal(await store.revision(), rev);
  });
});
