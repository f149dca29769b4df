import t from 'tap';
import { MeshState } from '../src/registry/state';
import { peerAuthRecord, policyRecord } from '../src/registry/fixtures';
import { explain, type Explanation } from '../src/cli/explain-model';
import explainCommand, { EXIT_DENIED } from '../src/cli/commands/explain';
import { captureIo, demoMesh, startDemoRegistry } from './helpers/cli';
import type { Change } from '../src/registry/types';
import { recordKey } from '../src/registry/types';
import { caught } from './helpers/wait';

/** The demo mesh in a MeshState, no Redis: explain-model is pure. */
function demoState(extra: Change[] = []): MeshState {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const changes = demoMesh().map((c) => (c.op === 'put' ? { ...c, key: recordKey(c.kind, c.record as never) } : c) as Change);
  state.applyChanges([...changes, ...extra], 1);
  return state;
}

const ID = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

t.test('enrolled pair: HBONE to the pod IP:15008, both identities, the ALLOW policy that decides', async (t) => {
  const e = explain(demoState(), 'demo/client', 'demo/echo-2:8080');
  t.equal(e.source.enrolled, true);
  t.match(e.source.enrolmentReason, /namespace demo has weft\.io\/dataplane-mode=ambient/);
  t.equal(e.destination.kind, 'workload');
  t.equal(e.paths.length, 1);
  const p = e.paths[0]!;
  t.equal(p.kind, 'hbone');
  t.equal(p.hboneAddress, '198.19.2.11:15008');
  t.equal(p.authority, '198.19.2.11:8080');
  t.match(p.route, /node-1's ztunnel captures it on 15001 .* 198\.19\.2\.11:15008 \(node-2's ztunnel/);
  t.same(p.identities, { source: ID('demo', 'client'), destination: ID('demo', 'echo') });
  t.equal(p.authorization!.enforcedBy, "node-2's ztunnel, inbound HBONE (15008)");
  t.equal(p.authorization!.peerAuthentication, 'PERMISSIVE');
  t.equal(p.authorization!.decidingPolicy, 'demo/allow-demo');
  t.same(p.authorization!.policies, [
    { policy: 'demo/allow-demo', action: 'ALLOW', matched: true, rule: 1 },
    { policy: 'demo/deny-intruder', action: 'DENY', matched: false },
  ]);
  t.equal(e.verdict, 'allowed');
});

t.test('service: resolves to its healthy endpoints, one path each; unhealthy ones are listed but not used', async (t) => {
  const e = explain(demoState(), 'demo/client', 'echo.demo.svc.cluster.local:80');
  t.equal(e.destination.kind, 'service');
  t.same(e.destination.service, { namespace: 'demo', name: 'echo', hostname: 'echo.demo.svc.cluster.local', vip: '198.18.128.10', port: 80, targetPort: 8080 });
  t.same(e.destination.endpoints!.map((x) => `${x.name}:${x.usable}`), ['echo-1:true', 'echo-2:true', 'echo-3:false']);
  t.same(e.paths.map((p) => `${p.endpoint} ${p.kind} ${p.authority}`), ['demo/echo-1 hbone 198.19.1.11:8080', 'demo/echo-2 hbone 198.19.2.11:8080']);
  t.equal(e.verdict, 'allowed');
  // the short forms resolve to the same service
  t.equal(explain(demoState(), 'demo/client', 'echo.demo:80').destination.service!.name, 'echo');
  t.equal(explain(demoState(), 'demo/client', 'echo:80').destination.resolution, "echo resolves in the source's namespace to service demo/echo, VIP 198.18.128.10");
  t.equal(explain(demoState(), 'demo/client', '198.18.128.10:80').destination.kind, 'service');
});

t.test('legacy pair: passthrough in plain TCP, no policy applies', async (t) => {
  const e = explain(demoState(), 'legacy/client', 'echo.legacy:9000');
  t.equal(e.source.enrolled, false);
  t.match(e.source.enrolmentReason, /namespace legacy is not enrolled \(no weft\.io\/dataplane-mode label\); weft namespace enroll legacy/);
  const p = e.paths[0]!;
  t.equal(p.kind, 'passthrough');
  t.equal(p.plaintext, true);
  t.equal(p.target, '198.19.2.21:9000');
  t.match(p.reason, /source legacy\/client is not in the mesh/);
  t.match(p.noPolicy, /destination legacy\/echo is not in the mesh/);
  t.notOk(p.authorization);
  t.equal(e.verdict, 'allowed');
});

t.test('denied pair: the DENY policy is named, with its matching rule', async (t) => {
  const e = explain(demoState(), 'demo/intruder', 'demo/echo-1:8080');
  const a = e.paths[0]!.authorization!;
  t.equal(a.allowed, false);
  t.equal(a.decidingPolicy, 'demo/deny-intruder');
  t.match(a.reason, /DENY policy demo\/deny-intruder matches spiffe:\/\/cluster\.local\/ns\/demo\/sa\/intruder .* \(rule 1\)/);
  t.same(a.policies.find((p) => p.policy === 'demo/deny-intruder'), { policy: 'demo/deny-intruder', action: 'DENY', matched: true, rule: 1 });
  t.equal(e.paths[0]!.outcome, 'denied');
  t.equal(e.verdict, 'denied');
});

t.test('plaintext into the mesh: decided on 15006 without identity; STRICT refuses it', async (t) => {
  const permissive = explain(demoState(), 'legacy/client', 'demo/echo-1:8080');
  const p = permissive.paths[0]!;
  t.equal(p.kind, 'passthrough');
  t.equal(p.authorization!.enforcedBy, "node-1's ztunnel, inbound plaintext (15006)");
  t.notOk(p.authorization!.peerIdentity);
  t.match(p.authorization!.reason, /matches none of the ALLOW policies/, 'the namespace ALLOW needs an identity');

  const strict = demoState([{ op: 'put', kind: 'peerauth', key: 'demo/strict', record: peerAuthRecord({ namespace: 'demo', name: 'strict', mode: 'STRICT' }) },
    { op: 'delete', kind: 'policy', key: 'demo/allow-demo' }]);
  const s = explain(strict, 'legacy/client', 'demo/echo-1:8080').paths[0]!;
  t.equal(s.authorization!.peerAuthentication, 'STRICT');
  t.match(s.authorization!.reason, /STRICT .* refuses plaintext/);
  t.equal(s.outcome, 'denied');
  t.equal(explain(strict, 'demo/client', 'demo/echo-1:8080').verdict, 'allowed', 'HBONE carries an identity, STRICT is satisfied');
});

t.test('opted-out pod and outside client are explained, not errors', async (t) => {
  const e = explain(demoState(), 'demo/opt-out', 'demo/echo-1:8080');
  t.match(e.source.enrolmentReason, /the pod opts out with weft\.io\/dataplane-mode=none \(its namespace demo is enrolled\)/);
  t.equal(e.paths[0]!.kind, 'passthrough');
  const outside = explain(demoState(), '203.0.113.7', 'demo/echo-1:8080');
  t.notOk(outside.source.workload);
  t.match(outside.source.enrolmentReason, /a client outside the mesh/);
  t.equal(outside.paths[0]!.kind, 'passthrough');
});

t.test('refusals: no such service port, no healthy endpoint, proxy port; a leaving connection', async (t) => {
  const noPort = explain(demoState(), 'demo/client', 'echo.demo:81');
  t.equal(noPort.paths.length, 1, 'a service-level refusal is shown once, not per endpoint');
  t.same(noPort.paths[0]!.refusal, { flag: 'NO_ROUTE', reason: 'service demo/echo has no port 81 (ports: 80)' });
  t.equal(noPort.verdict, 'refused');
  const down = demoState(['echo-1', 'echo-2'].map((n) => ({
    op: 'delete' as const, kind: 'workload' as const, key: `demo/${n}`,
  })));
  t.equal(explain(down, 'demo/client', 'echo.demo:80').paths[0]!.refusal!.flag, 'NO_HEALTHY_UPSTREAM');
  t.equal(explain(demoState(), 'demo/client', 'demo/echo-1:15008').paths[0]!.refusal!.flag, 'LOOP');
  const out = explain(demoState(), 'demo/client', '203.0.113.9:443');
  t.equal(out.destination.kind, 'unknown');
  t.match(out.paths[0]!.noPolicy, /outside the mesh/);
});

t.test('loop guard: explain shows the refusals the source node\'s ztunnel makes', async (t) => {
  const state = demoState();
  const client = state.workload('demo/client')!;
  const nodeAddress = state.node(client.record.node)!.address;
  for (const port of [15001, 15006, 15008, 15000, 15020, 15021]) {
    const e = explain(state, 'demo/client', `${nodeAddress}:${port}`);
    t.same({ verdict: e.verdict, flag: e.paths[0]!.refusal?.flag }, { verdict: 'refused', flag: 'LOOP' }, `node IP :${port}`);
    t.match(e.paths[0]!.refusal?.reason, /refused to prevent a loop/);
  }
  t.equal(explain(state, 'demo/client', `${nodeAddress}:22`).paths[0]!.refusal?.flag, 'LOOP', 'the node address on any port');
  t.equal(explain(state, 'demo/client', '127.0.0.1:80').paths[0]!.refusal?.flag, 'LOOP', 'loopback');
  const metadata = explain(state, 'demo/client', '169.254.169.254:80');
  t.same(metadata.paths[0]!.refusal?.flag, 'NO_ROUTE', 'cloud metadata is never forwarded');
  t.match(metadata.paths[0]!.refusal?.reason, /link-local/);
});

t.test('partly denied: endpoints with different policies give a mixed verdict', async (t) => {
  const state = demoState([{
    op: 'put', kind: 'policy', key: 'demo/deny-echo-2',
    record: policyRecord({ namespace: 'demo', name: 'deny-echo-2', action: 'DENY', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, rules: [{ clauses: [{ matches: [{ destinationIps: ['198.19.2.11'] }] }] }] }),
  }]);
  const e = explain(state, 'demo/client', 'echo.demo:80');
  t.same(e.paths.map((p) => p.outcome), ['allowed', 'denied']);
  t.equal(e.verdict, 'partly-denied');
});

t.test('unknown pods and services are clear errors', async (t) => {
  const err = await caught(() => explain(demoState(), 'demo/nope', 'echo.demo:80'));
  t.equal(err.code, 'WEFT_REGISTRY_NOT_FOUND');
  t.match(err.message, /source pod demo\/nope is not in the registry \(pods in demo: client, echo-1, echo-2, echo-3, intruder, opt-out\)/);
  t.match((await caught(() => explain(demoState(), 'ghost/nope', 'echo.demo:80'))).message, /namespace ghost has no pods/);
  t.match((await caught(() => explain(demoState(), 'demo/client', 'demo/nope:80'))).message, /destination pod demo\/nope/);
  const svc = await caught(() => explain(demoState(), 'demo/client', 'nope.demo:80'));
  t.equal(svc.code, 'WEFT_REGISTRY_NOT_FOUND');
  t.match(svc.message, /no service answers to "nope\.demo"/);
});

t.test('weft explain against a real registry: text, json, exit codes', async (t) => {
  const { dir, contextFile: ctx } = await startDemoRegistry(t);
  const run = async (argv: string[]) => {
    const cap = captureIo({ HOME: dir, WEFT_CONTEXT: ctx });
    const code = await explainCommand.runWith(argv, cap.io);
    return { code, out: cap.stdout() };
  };

  const ok = await run(['demo/client', 'echo.demo:80']);
  t.equal(ok.code, 0);
  t.match(ok.out, /^1\. Source: demo\/client \(198\.19\.1\.10\) on node node-1\n {3}In the mesh: yes/);
  t.match(ok.out, /2\. Destination: echo\.demo:80\n/);
  t.match(ok.out, /Endpoints: 2 of 3 usable/);
  t.match(ok.out, /Path via endpoint demo\/echo-2: HBONE \(mutual TLS tunnel\)/);
  t.match(ok.out, /the destination must present spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo/);
  t.match(ok.out, /Decision: ALLOW by demo\/allow-demo/);
  t.match(ok.out, /\nVerdict: ALLOWED — over HBONE with mutual TLS\n$/);

  const legacy = await run(['legacy/client', 'echo.legacy:9000']);
  t.equal(legacy.code, 0);
  t.match(legacy.out, /Path: passthrough, plain TCP/);
  t.match(legacy.out, /Verdict: ALLOWED — in plain TCP \(not encrypted by the mesh\)/);

  const denied = await run(['demo/intruder', 'echo.demo:80']);
  t.equal(denied.code, EXIT_DENIED);
  t.equal(EXIT_DENIED, 3);
  t.match(denied.out, /demo\/deny-intruder\s+DENY\s+yes \(rule 1\)/);
  t.match(denied.out, /Verdict: DENIED — DENY policy demo\/deny-intruder matches/);

  const refused = await run(['demo/client', 'echo.demo:81']);
  t.equal(refused.code, EXIT_DENIED);
  t.match(refused.out, /Refused \(NO_ROUTE\)/);

  const json = await run(['demo/client', 'demo/echo-1:8080', '-o', 'json']);
  const e = JSON.parse(json.out) as Explanation;
  t.equal(json.code, 0);
  t.equal(e.verdict, 'allowed');
  t.equal(e.paths[0]!.kind, 'hbone');
  t.equal(e.registryRevision, 1);

  t.equal((await caught(() => run(['demo/nope', 'echo.demo:80']))).code, 'WEFT_REGISTRY_NOT_FOUND');
  t.equal((await caught(() => run(['demo/client']))).code, 'WEFT_USAGE');
});
