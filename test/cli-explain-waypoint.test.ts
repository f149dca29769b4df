import t from 'tap';
import { MeshState } from '../src/registry/state';
import { policyRecord, waypointPod, waypointRecord } from '../src/registry/fixtures';
import { explain } from '../src/cli/explain-model';
import { formatExplanation } from '../src/cli/commands/explain';
import type { WaypointL7Explainer } from '../src/cli/explain-waypoint';
import { demoMesh } from './helpers/cli';
import type { Change } from '../src/registry/types';
import { recordKey } from '../src/registry/types';

const ID = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const WP = waypointRecord({ namespace: 'demo', name: 'waypoint' });

/** The demo mesh with namespace demo bound to waypoint `waypoint`, its pod wp-1 on node-2. */
function state(opts: { waypoint?: boolean; podHealthy?: boolean; extra?: Change[] } = {}): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const changes = demoMesh().map((c) => (c.op === 'put' ? { ...c, key: recordKey(c.kind, c.record as never) } : c) as Change);
  const put = (kind: Change['kind'], record: never) => ({ op: 'put', kind, key: recordKey(kind, record), record }) as Change;
  const wpChanges: Change[] = [
    put('namespace', { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' } } as never),
    put('workload', waypointPod(WP, { uid: 'wp-1', name: 'wp-1', node: 'node-2', addresses: ['198.19.2.50'], status: opts.podHealthy === false ? 'Unhealthy' : 'Healthy' }) as never),
  ];
  if (opts.waypoint !== false) wpChanges.push(put('waypoint', WP as never));
  s.applyChanges([...changes, ...wpChanges, ...(opts.extra ?? [])], 1);
  return s;
}

t.test('a bound service: the hop to the waypoint pod, its identity, the original VIP:port, then each endpoint as the waypoint reaches it', async (t) => {
  const e = explain(state(), 'demo/client', 'echo.demo:80');
  t.equal(e.destination.service?.waypoint, 'waypoint');
  t.match(e.waypoint, {
    waypoint: 'demo/waypoint', binding: 'namespace', identity: ID('demo', 'waypoint'),
    pod: { namespace: 'demo', name: 'wp-1', node: 'node-2' }, readyPods: 1,
    hboneAddress: '198.19.2.50:15008', authority: '198.18.128.10:80',
    identities: { source: ID('demo', 'client'), destination: ID('demo', 'waypoint') },
  });
  t.match(e.waypoint!.route, /node-1's ztunnel captures it on 15001 and opens mTLS HTTP\/2 CONNECT to 198\.19\.2\.50:15008 \(waypoint pod demo\/wp-1 on node-2, its only ready pod\)/);
  t.match(e.waypoint!.l7Note, /not evaluated here/);
  t.same(e.paths.map((p) => `${p.kind} ${p.endpoint} ${p.authority} ${p.identities?.source}`), [
    `waypoint demo/echo-1 198.19.1.11:8080 ${ID('demo', 'waypoint')}`,
    `waypoint demo/echo-2 198.19.2.11:8080 ${ID('demo', 'waypoint')}`,
  ]);
  const a = e.paths[0]!.authorization!;
  t.equal(a.peerIdentity, ID('demo', 'waypoint'), 'the endpoint sees the waypoint');
  t.equal(a.decidingPolicy, 'demo/allow-demo');
  t.equal(e.verdict, 'allowed');
  const text = formatExplanation(e);
  t.match(text, /3\. Waypoint demo\/waypoint \(bound by the namespace's weft\.io\/use-waypoint label\)/);
  t.match(text, /CONNECT :authority 198\.18\.128\.10:80 \(the original VIP:port/);
  t.match(text, /the waypoint must present spiffe:\/\/cluster\.local\/ns\/demo\/sa\/waypoint/);
  t.match(text, /4\. Path via endpoint demo\/echo-1: from the waypoint, HBONE as the waypoint's identity/);
  t.match(text, /Verdict: ALLOWED — through waypoint demo\/waypoint/);
});

t.test('fail closed is explained: missing waypoint or no ready pod → refused with the reason, exit as refused', async (t) => {
  const missing = explain(state({ waypoint: false }), 'demo/client', 'echo.demo:80');
  t.equal(missing.waypoint, undefined);
  t.equal(missing.verdict, 'refused');
  t.same(missing.paths.map((p) => p.refusal?.flag), ['NO_WAYPOINT'], 'one refusal, not one per endpoint');
  t.match(formatExplanation(missing), /Refused \(NO_WAYPOINT\): service demo\/echo is bound to waypoint demo\/waypoint .*which does not exist; refused rather than bypassing it/);
  const notReady = explain(state({ podHealthy: false }), 'demo/client', 'echo.demo:80');
  t.match(notReady.paths[0]!.refusal, { flag: 'NO_WAYPOINT', reason: /no ready pod \(1 pod, 1 not Healthy\)/ });
});

t.test('policies written for the source\'s identity are flagged: the destination sees the waypoint', async (t) => {
  const allowClient = policyRecord({ namespace: 'demo', name: 'allow-client', action: 'ALLOW', selector: { app: 'echo' }, scope: 'WORKLOAD_SELECTOR',
    rules: [{ clauses: [{ matches: [{ principals: [ID('demo', 'client')] }] }] }] });
  const e = explain(state({ extra: [{ op: 'put', kind: 'policy', key: 'demo/allow-client', record: allowClient }] }), 'demo/intruder', 'echo.demo:80');
  const w = e.waypoint!.policyWarnings;
  t.equal(w.length, 1, 'each policy once, however many endpoints');
  t.match(w[0], /DENY policy demo\/deny-intruder matches the source's identity spiffe:\/\/cluster\.local\/ns\/demo\/sa\/intruder, but behind waypoint demo\/waypoint the destination sees .*: this DENY does not stop/);
  const c = explain(state({ extra: [{ op: 'put', kind: 'policy', key: 'demo/allow-client', record: allowClient }] }), 'demo/client', 'echo.demo:80');
  t.match(c.waypoint!.policyWarnings, [/ALLOW policy demo\/allow-client admits the source's identity .*client, but behind waypoint demo\/waypoint the destination sees the waypoint's identity .*waypoint, which it does not admit: add principal .* \(or serviceAccount demo\/waypoint\)/]);
  t.equal(c.verdict, 'allowed', 'still allowed: allow-demo admits namespace demo, the waypoint\'s too');
  t.equal(c.paths[0]!.authorization!.decidingPolicy, 'demo/allow-demo');
  // Without that namespace-wide ALLOW, the destination denies what the source could reach without a waypoint.
  const only = explain(state({ extra: [{ op: 'put', kind: 'policy', key: 'demo/allow-client', record: allowClient }, { op: 'delete', kind: 'policy', key: 'demo/allow-demo' }] }), 'demo/client', 'echo.demo:80');
  t.equal(only.verdict, 'denied', 'the verdict follows what the destination really sees');
  t.match(only.waypoint!.policyWarnings, [/ALLOW policy demo\/allow-client admits/]);
  t.match(formatExplanation(c), /Warning: ALLOW policy demo\/allow-client/);
});

t.test('the L7 hook: its lines are printed and its backends are the endpoints shown', async (t) => {
  const calls: string[] = [];
  const l7: WaypointL7Explainer = (ctx) => {
    calls.push(`${ctx.waypoint.name} ${ctx.service.name}:${ctx.port} from ${ctx.source.record.name}`);
    const legacy = ctx.state.get('service', 'legacy/echo')!;
    return { summary: ['route demo/canary, rule 1: PathPrefix / → legacy/echo:9000'], backends: [{ service: legacy, port: 9000 }], detail: { route: 'demo/canary' } };
  };
  const e = explain(state(), 'demo/client', 'echo.demo:80', { l7 });
  t.same(calls, ['waypoint echo:80 from client']);
  t.same(e.waypoint!.l7, { summary: ['route demo/canary, rule 1: PathPrefix / → legacy/echo:9000'], backends: [{ service: e.waypoint!.l7!.backends![0]!.service, port: 9000 }], detail: { route: 'demo/canary' } });
  t.equal(e.waypoint!.l7Note, undefined);
  t.same(e.paths.map((p) => `${p.kind} ${p.endpoint} ${p.target} ${p.plaintext}`), ['waypoint legacy/echo 198.19.2.21:9000 true'], 'an endpoint outside the mesh: plain TCP from the waypoint');
  t.match(formatExplanation(e), /L7 \(routes\):\n\s+route demo\/canary, rule 1/);
});

t.test('pod-IP destinations and opted-out services skip the waypoint, and say why', async (t) => {
  const pod = explain(state(), 'demo/client', 'demo/echo-2:8080');
  t.equal(pod.waypoint, undefined);
  t.equal(pod.paths[0]!.kind, 'hbone');
  t.match(pod.paths[0]!.waypointNote, /is a pod address: the waypoint demo\/waypoint .* MeshFrontend/);
  const legacy = explain(state(), 'legacy/client', 'echo.demo:80');
  t.match(legacy.paths[0]!.waypointNote, /the source is not in the mesh/);
  t.match(formatExplanation(legacy), /Note: service demo\/echo is bound to waypoint/);
});

t.test('a pod bound to a waypoint for workloads: explain shows the hop with the pod IP:port, no routes, the pod as the only path', async (t) => {
  const forWorkloads = waypointRecord({ namespace: 'demo', name: 'waypoint', for: 'workload' });
  const put = (kind: Change['kind'], record: never) => ({ op: 'put', kind, key: recordKey(kind, record), record }) as Change;
  const e = explain(state({ extra: [put('waypoint', forWorkloads as never)] }), 'demo/client', 'demo/echo-2:8080');
  t.match(e.waypoint, {
    waypoint: 'demo/waypoint', binding: 'namespace', podAddressed: true, identity: ID('demo', 'waypoint'),
    hboneAddress: '198.19.2.50:15008', authority: '198.19.2.11:8080',
  });
  t.match(e.waypoint!.l7Note, /addressed to a pod, so no HTTPRoute or GRPCRoute applies/);
  t.same(e.paths.map((p) => `${p.kind} ${p.endpoint} ${p.authority} ${p.identities?.source}`), [`waypoint demo/echo-2 198.19.2.11:8080 ${ID('demo', 'waypoint')}`]);
  const text = formatExplanation(e);
  t.match(text, /Waypoint demo\/waypoint \(bound by the namespace's weft\.io\/use-waypoint label\)/);
  t.match(text, /CONNECT :authority 198\.19\.2\.11:8080 \(the original pod IP:port: the waypoint sends it to that pod\)/);
  const missing = explain(state({ waypoint: false }), 'demo/client', 'demo/echo-2:8080');
  t.equal(missing.verdict, 'refused', 'bound to a waypoint that does not exist: refused, as for services');
  t.match(formatExplanation(missing), /Refused \(NO_WAYPOINT\): 198\.19\.2\.11:8080 is a pod address and pod demo\/echo-2 is bound to waypoint demo\/waypoint .*which does not exist; refused rather than bypassing it/);
});

t.test("a service without a waypoint whose endpoints have a workload waypoint: each endpoint's share through it, fail closed, and said", async (t) => {
  const forWorkloads = waypointRecord({ namespace: 'demo', name: 'waypoint', for: 'workload' });
  const put = (kind: Change['kind'], record: never) => ({ op: 'put', kind, key: recordKey(kind, record), record }) as Change;
  // The namespace binds everything to a waypoint for workloads: not the Service's, but each endpoint's.
  const s = state({ extra: [put('waypoint', forWorkloads as never)] });
  const echo1 = s.workloadByAddress('198.19.1.11')!.record;
  s.applyChanges([put('workload', { ...echo1, labels: { ...echo1.labels, 'weft.io/use-waypoint': 'none' } } as never)], s.revision + 1);
  const e = explain(s, 'demo/client', 'echo.demo:80');
  t.match(e.waypoint, { waypoint: 'demo/waypoint', podAddressed: false, endpointOf: 'demo/echo', identity: ID('demo', 'waypoint'), authority: '198.19.2.11:8080' });
  t.same(e.paths.map((p) => `${p.kind} ${p.endpoint}`), ['hbone demo/echo-1', 'waypoint demo/echo-2'], 'echo-1 (opted out) direct, echo-2 through the waypoint');
  t.match(e.paths[1]!.waypointNote, /the service has no waypoint; endpoint demo\/echo-2 is bound to waypoint demo\/waypoint \(for workloads\).*:authority 198\.19\.2\.11:8080/);
  t.equal(e.verdict, 'allowed');
  const text = formatExplanation(e);
  t.match(text, /CONNECT :authority 198\.19\.2\.11:8080 \(the chosen endpoint's IP:target port: service demo\/echo has no waypoint, so the endpoint's workload waypoint takes it/);
  t.match(text, /L7 \(routes\): the service has no waypoint; its chosen endpoint's workload waypoint takes the connection/);

  // Its only pod not ready: echo-2's share is refused, never sent to the pod directly.
  const down = state({ podHealthy: false, extra: [put('waypoint', forWorkloads as never)] });
  const closed = explain(down, 'demo/client', 'echo.demo:80');
  t.equal(closed.verdict, 'refused');
  t.match(formatExplanation(closed),
    /Refused \(NO_WAYPOINT\): service demo\/echo has no waypoint of its own; its endpoint 198\.19\.[12]\.11:8080 was chosen and pod demo\/echo-[12] is bound to waypoint demo\/waypoint .*which has no ready pod \(1 pod, 1 not Healthy\); refused rather than bypassing it/);
});
