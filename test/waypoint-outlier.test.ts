// Outlier detection wired into the waypoint's router (src/waypoint/outlier-detectors.ts):
// an endpoint ejected for the outcomes reported to it leaves the candidates of its
// Service (never picked while out), comes back through one probe after its ejection
// time (manual clock), and each ejection is one log line and a metric; a Service
// without the section is untouched; a policy change drops the detector.
import t, { type Test } from 'tap';
import pino from 'pino';
import { Registry } from 'prom-client';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, serviceRecord, trafficPolicyRecord, workloadRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { validateOutlierDetection } from '../src/resilience/outlier-spec';
import { OutlierDetectors } from '../src/waypoint/outlier-detectors';
import { MeshRouter } from '../src/waypoint/router';
import { TrafficPolicies } from '../src/waypoint/traffic-policies';
import type { RequestFacts, UpstreamTarget } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';
import { LogLines } from './helpers/log-lines';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

function request(service: string): RequestFacts {
  return {
    method: 'GET', authority: `${service}.demo`, path: '/', query: '', headers: {}, protocol: 'http1',
    source: { address: '10.1.1.2', port: 40000, identity: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { address: service === 'echo' ? '10.96.0.10' : '10.96.0.11', port: 80, service: { namespace: 'demo', name: service } },
  };
}

const outlierDetection = validateOutlierDetection({ consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '10s', maxEjectionPercent: 50 }, 'spec.outlierDetection', 'reject');

/** A deterministic spread of [0, 1), so every balancer visits every endpoint. */
function spread(): () => number {
  let k = 0;
  return () => (k = (k + 0.381966) % 1);
}

function rig(t: Test) {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const changes: Change[] = [
    put('namespace', ambientNamespace('demo')),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.10'] })),
    put('service', serviceRecord({ namespace: 'demo', name: 'other', vips: ['10.96.0.11'] })),
    put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { outlierDetection })),
  ];
  for (let i = 1; i <= 3; i++) {
    changes.push(put('workload', workloadRecord({ namespace: 'demo', name: `echo-${i}`, node: 'n', addresses: [`10.1.2.${i}`], labels: { app: 'echo' } })));
    changes.push(put('workload', workloadRecord({ namespace: 'demo', name: `other-${i}`, node: 'n', addresses: [`10.1.3.${i}`], labels: { app: 'other' } })));
  }
  state.applyChanges(changes, 1);
  const clock = new ManualClock(1_000_000);
  const log = new LogLines();
  const registry = new Registry();
  const policies = new TrafficPolicies(state);
  const outliers = new OutlierDetectors({ clock, logger: pino({ level: 'debug' }, log), policyOf: (ns, n) => policies.forService(ns, n), registry });
  policies.on('change', () => outliers.prune());
  const router = new MeshRouter({ state, policies, endpointFilter: outliers, reporters: [outliers], random: spread() });
  t.teardown(() => { router.close(); outliers.close(); policies.close(); });
  const picks = (service: string, n: number) => {
    const hosts = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const d = router.route(request(service));
      if (d.kind !== 'forward') throw new Error(`not forwarded: ${JSON.stringify(d)}`);
      hosts.set(d.upstream.host, (hosts.get(d.upstream.host) ?? 0) + 1);
    }
    return hosts;
  };
  const report = (service: string, host: string, status: number) => {
    const target: UpstreamTarget = { host, port: 8080, transport: 'hbone' };
    outliers.report({ namespace: 'demo', name: service, spec: policies.forService('demo', service) ?? { targetRefs: [] } }, target, { status, latencyMs: 1 });
  };
  return { state, clock, log, registry, outliers, router, picks, report };
}

t.test('an ejected endpoint is never picked; after its time one probe, then back', async (t) => {
  const { clock, log, registry, outliers, picks, report } = rig(t);
  t.same([...picks('echo', 30).keys()].sort(), ['10.1.2.1', '10.1.2.2', '10.1.2.3'], 'all three share the traffic first');
  for (let i = 0; i < 3; i++) report('echo', '10.1.2.2', 503);
  const during = picks('echo', 30);
  t.equal(during.get('10.1.2.2'), undefined, 'ejected: its share is 0');
  t.equal((during.get('10.1.2.1') ?? 0) + (during.get('10.1.2.3') ?? 0), 30);
  const line = log.lines.find((l) => l.msg === 'outlier ejected');
  t.match(line, { level: 40, service: 'demo/echo', endpoint: '10.1.2.2', reason: 'consecutive-5xx', ejections: 1, ejection_ms: 10_000, ejected: 1, endpoints: 3 });
  t.equal(log.lines.filter((l) => l.msg === 'outlier ejected').length, 1, 'one line per ejection');
  const metrics = await registry.metrics();
  t.match(metrics, /weft_waypoint_outlier_ejections_total\{destination_service_namespace="demo",destination_service_name="echo",reason="consecutive-5xx"\} 1/);
  t.match(metrics, /weft_waypoint_outlier_ejected_endpoints\{destination_service_namespace="demo",destination_service_name="echo"\} 1/);
  t.match(outliers.views(), [{ namespace: 'demo', name: 'echo', ejected: 1, endpoints: [{ endpoint: '10.1.2.2', state: 'ejected', reason: 'consecutive-5xx' }] }]);

  clock.advance(10_000);
  t.same([...picks('echo', 1).keys()], ['10.1.2.2'], 'its time passed: the next request is its probe');
  t.notOk(picks('echo', 20).has('10.1.2.2'), 'no second request before the probe answers');
  report('echo', '10.1.2.2', 200);
  t.same([...picks('echo', 30).keys()].sort(), ['10.1.2.1', '10.1.2.2', '10.1.2.3'], 'back in the rotation');
  t.match(log.lines.at(-1), { msg: 'outlier returned (its probe succeeded)', endpoint: '10.1.2.2' });
});

t.test('a Service without outlierDetection is untouched; a policy removed drops its detector', async (t) => {
  const { state, picks, report, outliers } = rig(t);
  for (let i = 0; i < 10; i++) report('other', '10.1.3.1', 503);
  t.ok(picks('other', 30).has('10.1.3.1'), 'no section: never ejected');
  for (let i = 0; i < 3; i++) report('echo', '10.1.2.1', 503);
  t.notOk(picks('echo', 30).has('10.1.2.1'));
  state.applyChanges([{ op: 'delete', kind: 'trafficpolicy', key: 'demo/echo' }], 2);
  t.same(outliers.views(), [], 'detector dropped with the policy');
  t.ok(picks('echo', 30).has('10.1.2.1'), 'its ejection went with it');
});

t.test('attempt outcomes reach the detector through the plan\'s targets (the router\'s reporters)', async (t) => {
  const { router, picks } = rig(t);
  for (let i = 0; i < 3; i++) {
    const d = router.route(request('echo'));
    if (d.kind !== 'forward' || !d.targets) throw new Error('a Service with a policy gets targets');
    d.targets.started?.({ host: '10.1.2.3', port: 8080, transport: 'hbone' });
    d.targets.report({ host: '10.1.2.3', port: 8080, transport: 'hbone' }, { failure: 'connect', latencyMs: 1 });
  }
  t.notOk(picks('echo', 30).has('10.1.2.3'), 'three connect failures reported by forward(): ejected');
});

t.test('an attempt that outlives its policy reports under the policy now in force (no detector revived or reset)', async (t) => {
  const { state, router, picks, outliers } = rig(t);
  const routed = () => {
    const d = router.route(request('echo'));
    if (d.kind !== 'forward' || !d.targets) throw new Error('a Service with a policy gets targets');
    return d.targets;
  };
  const host = { host: '10.1.2.1', port: 8080, transport: 'hbone' } as const;
  // Routed under the first policy; its section is then edited (another threshold).
  const inFlight = routed();
  inFlight.started?.(host);
  const edited = validateOutlierDetection({ consecutive5xxErrors: 2, interval: '1s', baseEjectionTime: '10s', maxEjectionPercent: 50 }, 'spec.outlierDetection', 'reject');
  state.applyChanges([put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { outlierDetection: edited, loadBalancer: { type: 'RoundRobin' } }))], 2);
  for (let i = 0; i < 2; i++) {
    const d = routed();
    d.started?.(host);
    d.report(host, { status: 503, latencyMs: 1 });
  }
  t.notOk(picks('echo', 30).has('10.1.2.1'), 'ejected under the edited section (2 errors)');
  inFlight.report(host, { status: 200, latencyMs: 1 });
  t.notOk(picks('echo', 30).has('10.1.2.1'), 'the old request\'s answer does not rebuild the detector with the old section (the ejection stands)');
  t.match(outliers.views(), [{ name: 'echo', ejected: 1, endpoints: [{ endpoint: '10.1.2.1', state: 'ejected' }] }]);

  // Routed under the policy, which then goes away.
  const late = routed();
  late.started?.(host);
  state.applyChanges([{ op: 'delete', kind: 'trafficpolicy', key: 'demo/echo' }], 3);
  t.same(outliers.views(), [], 'detectors dropped with the policy');
  late.report(host, { status: 503, latencyMs: 1 });
  t.same(outliers.views(), [], 'a late report does not bring back a detector for a Service without a policy');
});
