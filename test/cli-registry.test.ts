import t from 'tap';
import { once } from 'node:events';
import { join } from 'node:path';
import YAML from 'yaml';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { CLEAR_SCREEN } from '../src/cli/output';
import { captureIo, startDemoRegistry } from './helpers/cli';
import namespace from '../src/cli/commands/namespace';
import policies, { policiesFrame } from '../src/cli/commands/policies';
import services from '../src/cli/commands/services';
import workloads from '../src/cli/commands/workloads';
import { freePort, startRedis } from './helpers/redis';
import { caught } from './helpers/wait';

t.test('registry commands', async (t) => {
  const { redis, store, dir, contextFile } = await startDemoRegistry(t, { version: 1, trustDomain: 'cluster.local' });
  const env = { HOME: dir, WEFT_CONTEXT: contextFile };
  const run = async (cmd: { runWith: (a: string[], io: ReturnType<typeof captureIo>['io']) => Promise<number> }, argv: string[], e: NodeJS.ProcessEnv = env) => {
    const cap = captureIo(e);
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };

  t.test('workloads: table with protocol HBONE/TCP from enrolment', async (t) => {
    const { code, out } = await run(workloads, []);
    t.equal(code, 0);
    const lines = out.trimEnd().split('\n');
    t.match(lines[0], /^NAMESPACE\s+POD NAME\s+ADDRESS\s+NODE\s+WAYPOINT\s+PROTOCOL\s+STATUS\s+IDENTITY$/);
    t.equal(lines.length, 9, 'header + 8 workloads');
    t.match(out, /demo\s+client\s+198\.19\.1\.10\s+node-1\s+None\s+HBONE\s+Healthy\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client/);
    t.match(out, /demo\s+opt-out\s+198\.19\.2\.13\s+node-2\s+None\s+TCP/, 'a pod opting out stays TCP in an enrolled namespace');
    t.match(out, /legacy\s+echo\s+198\.19\.2\.21\s+node-2\s+None\s+TCP/);
    // columns line up: every row's PROTOCOL starts at the header's offset
    const col = lines[0]!.indexOf('PROTOCOL');
    for (const l of lines.slice(1)) t.match(l.slice(col), /^(HBONE|TCP) /);
  });

  t.test('workloads: -n, --node and -l filter; -o json and -o yaml carry the same items', async (t) => {
    const json = JSON.parse((await run(workloads, ['-n', 'demo', '--node', 'node-2', '-o', 'json'])).out);
    t.equal(json.revision, 1);
    t.same(json.items.map((w: { name: string }) => w.name), ['echo-2', 'echo-3', 'opt-out']);
    t.same(json.items[0], {
      namespace: 'demo', name: 'echo-2', uid: 'demo/echo-2', addresses: ['198.19.2.11'], node: 'node-2', protocol: 'HBONE',
      enrolled: true, identity: 'spiffe://cluster.local/ns/demo/sa/echo', serviceAccount: 'echo', status: 'Healthy', labels: { app: 'echo' },
    });
    const yaml = YAML.parse((await run(workloads, ['-n', 'demo', '--node', 'node-2', '-oyaml'])).out);
    t.same(yaml, json);
    const sel = JSON.parse((await run(workloads, ['-l', 'app=client', '-o', 'json'])).out);
    t.same(sel.items.map((w: { uid: string }) => w.uid), ['demo/client', 'legacy/client']);
    const none = await run(workloads, ['-n', 'nowhere']);
    t.equal(none.out, 'No workloads found in namespace nowhere.\n');
  });

  t.test('services: VIP, ports, healthy/total endpoints', async (t) => {
    const { code, out } = await run(services, []);
    t.equal(code, 0);
    t.match(out, /^NAMESPACE\s+SERVICE NAME\s+SERVICE VIP\s+PORTS\s+WAYPOINT\s+ENDPOINTS\n/);
    t.match(out, /demo\s+echo\s+198\.18\.128\.10\s+80→8080\s+None\s+2\/3\n/, 'echo-3 is Unhealthy');
    t.match(out, /legacy\s+echo\s+198\.18\.128\.20\s+9000\s+None\s+1\/1\n/);
    const json = JSON.parse((await run(services, ['-n', 'demo', '-o', 'json'])).out);
    t.equal(json.items.length, 1);
    t.same(json.items[0].endpoints.map((e: { name: string; status: string }) => `${e.name}:${e.status}`),
      ['echo-1:Healthy', 'echo-2:Healthy', 'echo-3:Unhealthy']);
  });

  t.test('policies: authorization and peer authentication side by side', async (t) => {
    const { out } = await run(policies, []);
    t.match(out, /^NAMESPACE\s+POLICY NAME\s+KIND\s+ACTION\s+SCOPE\s+SELECTOR\s+RULES\s+STATUS\n/);
    t.match(out, /demo\s+allow-demo\s+AuthorizationPolicy\s+ALLOW\s+NAMESPACE\s+-\s+1\s+Valid\n/);
    t.match(out, /demo\s+deny-intruder\s+AuthorizationPolicy\s+DENY\s+NAMESPACE\s+-\s+1\s+Valid\n/);
    t.match(out, /weft-system\s+mesh\s+PeerAuthentication\s+PERMISSIVE\s+GLOBAL\s+-\s+-\s+Valid\n/);
    const json = JSON.parse((await run(policies, ['-n', 'demo', '-o', 'json'])).out);
    t.same(json.items.map((p: { name: string }) => p.name), ['allow-demo', 'deny-intruder']);
    t.same(json.items[1].spec.rules, [{ clauses: [{ matches: [{ serviceAccounts: ['intruder'] }] }] }], 'json carries the rules');
  });

  t.test('policies: an invalid policy shows what is enforced instead (issue 9, item 14)', async (t) => {
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const rules = [{ clauses: [{ matches: [{ serviceAccounts: ['client'] }] }] }];
    state.applyChanges([
      { op: 'put', kind: 'policy', key: 'demo/stale', record: { name: 'stale', namespace: 'demo', scope: 'NAMESPACE', action: 'ALLOW', rules, invalid: { state: 'LastGood', reason: 'spec.rules[0] bad' } } },
      { op: 'put', kind: 'policy', key: 'demo/closed', record: { name: 'closed', namespace: 'demo', scope: 'NAMESPACE', action: 'ALLOW', rules: [], invalid: { state: 'FailClosed', reason: 'spec.action bad' } } },
    ], 1);
    const frame = policiesFrame(state, {});
    t.same(frame.table!.rows.map((r) => `${r[1]}:${r[7]}`), ['closed:FailClosed', 'stale:LastGood'], "STATUS is the record's own state");
    t.match(frame.warnings, [
      /demo\/closed is invalid \(spec.action bad\); no valid version is known, so it is enforced fail-closed as an ALLOW that matches nothing/,
      /demo\/stale is invalid \(spec.rules\[0\] bad\); the last valid version stays in force/,
    ]);
  });

  t.test('namespace enroll/unenroll change the registry and a following MeshState re-derives protocols', async (t) => {
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const follower = new RegistryFollower({ url: redis.url, state, blockMs: 100 });
    t.teardown(() => follower.stop());
    await follower.start();
    const legacyProtocols = () => state.workloads().filter((w) => w.record.namespace === 'legacy').map((w) => w.protocol).sort();
    t.same(legacyProtocols(), ['TCP', 'TCP']);

    const changed = once(state, 'change');
    const enrol = await run(namespace, ['enroll', 'legacy']);
    t.equal(enrol.code, 0);
    t.match(enrol.out, /namespace legacy enrolled: label weft\.io\/dataplane-mode=ambient set at registry revision \d+/);
    t.match(enrol.out, /2 of 2 workloads in legacy are now in the mesh \(HBONE\)/);
    t.match(enrol.out, /no pod restart/);
    t.same((await store.get('namespace', 'legacy'))!.labels, { 'weft.io/dataplane-mode': 'ambient' });
    await changed;
    t.same(legacyProtocols(), ['HBONE', 'HBONE'], 'the follower derives HBONE without any workload record changing');

    const again = await run(namespace, ['enroll', 'legacy', '-o', 'json']);
    const againJson = JSON.parse(again.out);
    t.equal(againJson.changed, false, 'enrolling twice changes nothing');
    t.equal(againJson.revision, await store.revision(), 'and writes no revision');

    const released = once(state, 'change');
    const unenrol = await run(namespace, ['unenroll', 'legacy']);
    t.match(unenrol.out, /namespace legacy unenrolled: label weft\.io\/dataplane-mode=ambient removed/);
    t.match(unenrol.out, /0 of 2 workloads in legacy are now in the mesh/);
    t.same((await store.get('namespace', 'legacy'))!.labels, {});
    await released;
    t.same(legacyProtocols(), ['TCP', 'TCP']);
  });

  t.test('namespace enroll counts opted-out pods; list shows each namespace', async (t) => {
    const r = await run(namespace, ['enroll', 'demo']);
    t.match(r.out, /namespace demo is already enrolled \(weft\.io\/dataplane-mode=ambient\); nothing changed/);
    t.match(r.out, /5 of 6 workloads in demo are now in the mesh \(HBONE\); opted out with weft\.io\/dataplane-mode=none: demo\/opt-out/);
    const list = await run(namespace, ['list']);
    t.match(list.out, /demo\s+ambient\s+None\s+5\/6\n/);
    t.match(list.out, /legacy\s+-\s+None\s+0\/2\n/);
  });

  t.test('namespace: unknown namespace and bad usage are clear errors', async (t) => {
    const err = await caught(() => run(namespace, ['enroll', 'nope']));
    t.equal(err.code, 'WEFT_REGISTRY_NOT_FOUND');
    t.match(err.message, /namespace "nope" is not in the registry \(namespaces: demo, legacy, weft-system\)/);
    t.equal((await caught(() => run(namespace, ['enroll']))).code, 'WEFT_USAGE');
    t.equal((await caught(() => run(namespace, ['frobnicate', 'x']))).code, 'WEFT_USAGE');
  });

  t.test('--watch redraws the table until interrupted', async (t) => {
    const ac = new AbortController();
    const cap = captureIo(env, ac.signal);
    let writes = 0;
    const io = { ...cap.io, stdout: (s: string) => { cap.io.stdout(s); if (++writes === 2) ac.abort(); } };
    t.equal(await workloads.runWith(['-w', '-n', 'legacy'], io), 0);
    const screens = cap.stdout().split(CLEAR_SCREEN).filter(Boolean);
    t.equal(screens.length, 2);
    t.match(screens[1], /Every 1\.0s: weft workloads/);
    t.match(screens[1], /legacy\s+client/);
  });

  t.test('no context and no --redis-url: WEFT_CONTEXT_MISSING', async (t) => {
    const err = await caught(() => run(workloads, [], { HOME: join(dir, 'empty-home') }));
    t.equal(err.code, 'WEFT_CONTEXT_MISSING');
    t.match(err.message, /scripts\/lab up/);
  });

  t.test('--redis-url alone is enough for the registry commands', async (t) => {
    const r = await run(services, ['--redis-url', redis.url, '-o', 'json'], { HOME: join(dir, 'empty-home') });
    t.equal(JSON.parse(r.out).items.length, 2);
  });

  t.test('an unreachable registry fails fast with the URL and a hint', async (t) => {
    const port = await freePort();
    const err = await caught(() => run(workloads, ['--redis-url', `redis://127.0.0.1:${port}`], { HOME: join(dir, 'empty-home') }));
    t.equal(err.code, 'WEFT_REGISTRY_UNREACHABLE');
    t.match(err.message, new RegExp(`redis://127\\.0\\.0\\.1:${port}`));
    t.match(err.message, /from --redis-url/);
    t.match(err.message, /ECONNREFUSED/);
  });

  t.test('a registry that accepts but never answers is reported, not waited on forever', async (t) => {
    const r2 = await startRedis();
    t.teardown(() => r2.stop());
    r2.pause();
    t.teardown(() => r2.resume());
    const err = await caught(() => run(workloads, ['--redis-url', r2.url], { HOME: join(dir, 'empty-home') }));
    t.equal(err.code, 'WEFT_REGISTRY_UNREACHABLE');
    t.match(err.message, /timeout|no answer/i);
  });
});
