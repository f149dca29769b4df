// The lab's readiness probes (issue 14): the kubelet's thresholds, a period per target,
// targets replaced live, and the status write that never resurrects a removed workload.
import t from 'tap';
import { Prober, ReadinessState, ECHO_DEFAULT_PROBE, WAYPOINT_PROBE, type CheckResult, type ReadinessChange, type ReadinessProbe } from '../src/lab/probe';
import { probeTargets, StatusSync, writeStatus } from '../src/lab/prober';
import { silentLogger } from '../src/lib/log';
import { parseTopology } from '../src/lab/topology';
import { planLab } from '../src/lab/plan';
import { RegistryStore } from '../src/registry/store';
import { workloadRecord } from '../src/registry/fixtures';
import { ManualClock } from './helpers/clock';
import { startRedis } from './helpers/redis';
import { caught } from './helpers/wait';

const ok: CheckResult = { ok: true, detail: 'HTTP 200' };
const bad: CheckResult = { ok: false, detail: 'ECONNREFUSED' };
const probe = (p: Partial<ReadinessProbe> = {}): ReadinessProbe => ({ ...ECHO_DEFAULT_PROBE, ...p });
const flush = () => new Promise((r) => setImmediate(r));

t.test('thresholds: the first success decides; failures need N in a row; then N in a row flip it', async (t) => {
  const s = new ReadinessState(probe({ failureThreshold: 3, successThreshold: 2 }));
  t.equal(s.record(ok), 'Healthy', 'first success decides at once');
  t.equal(s.record(bad), undefined);
  t.equal(s.record(bad), undefined);
  t.equal(s.record(ok), undefined, 'a success resets the failure streak');
  t.equal(s.record(bad), undefined);
  t.equal(s.record(bad), undefined);
  t.equal(s.record(bad), 'Unhealthy', 'three failures in a row');
  t.equal(s.streak(bad), '3 failures in a row: ECONNREFUSED');
  t.equal(s.record(ok), undefined);
  t.equal(s.record(ok), 'Healthy', 'two successes in a row');
  const first = new ReadinessState(probe({ failureThreshold: 3 }));
  t.equal(first.record(bad), undefined, 'a first failure does not decide (one stalled check as the lab comes up)');
  t.equal(first.current, undefined, 'still undecided');
  t.equal(first.record(bad), undefined);
  t.equal(first.record(bad), 'Unhealthy', 'the threshold decides failures from the start too');
});

t.test('prober: one check per period on the clock; a stopped app leaves within one period and rejoins', async (t) => {
  const clock = new ManualClock(0);
  let up = true;
  const checks: number[] = [];
  const changes: ReadinessChange[] = [];
  const checked: string[] = [];
  const prober = new Prober({
    clock,
    check: async () => { checks.push(clock.now()); return up ? ok : bad; },
    onChange: (c) => changes.push(c),
    onCheck: (uid, status) => checked.push(`${uid} ${status}`),
  });
  prober.setTargets([{ uid: 'demo/echo-1', address: '198.19.1.11', probe: probe({ periodSeconds: 2, failureThreshold: 1 }) }]);
  await flush();
  t.same(changes.map((c) => [c.status, c.at]), [['Healthy', 0]], 'checked at once when added');
  for (let i = 0; i < 3; i++) { clock.advance(2000); await flush(); }
  t.same(checks, [0, 2000, 4000, 6000], 'every periodSeconds');
  t.equal(checked.length, 4, 'onCheck after every check, changed or not (the registry is made to agree each time)');
  t.equal(checked[3], 'demo/echo-1 Healthy');
  up = false;
  clock.advance(2000); await flush();
  t.same(changes.map((c) => [c.status, c.at]), [['Healthy', 0], ['Unhealthy', 8000]], 'Unhealthy at the first check after the stop');
  t.match(changes[1]!.reason, /1 failure in a row: ECONNREFUSED/);
  up = true;
  clock.advance(2000); await flush();
  t.same(changes.map((c) => c.status), ['Healthy', 'Unhealthy', 'Healthy'], 'rejoins at the next check');
  prober.stop();
  t.equal(clock.pending, 0, 'no timer left');
});

t.test('defaults: one stalled check (a loaded machine) does not take a healthy echo or waypoint out; three in a row do', async (t) => {
  for (const [name, p] of [['echo', ECHO_DEFAULT_PROBE], ['waypoint', WAYPOINT_PROBE]] as const) {
    t.equal(p.periodSeconds, 1, `${name}: checked every second`);
    const s = new ReadinessState(p);
    t.equal(s.record(ok), 'Healthy');
    t.equal(s.record(bad), undefined, `${name}: a single failed check keeps it Healthy`);
    t.equal(s.record(ok), undefined);
    t.equal(s.record(bad), undefined);
    t.equal(s.record(bad), undefined, `${name}: two in a row keep it Healthy`);
    t.equal(s.record(bad), 'Unhealthy', `${name}: the third in a row (about 3 s after a stop) takes it out`);
  }
});

t.test('prober: a slow check does not stretch the period; a throwing one counts as a failure', async (t) => {
  const clock = new ManualClock(0);
  const checks: number[] = [];
  const changes: string[] = [];
  const prober = new Prober({
    clock,
    check: async () => { checks.push(clock.now()); clock.advance(300); throw new Error('boom'); },
    onChange: (c) => changes.push(`${c.status} ${c.reason}`),
  });
  prober.setTargets([{ uid: 'a/b', address: '10.0.0.1', probe: probe({ failureThreshold: 1 }) }]);
  await flush();
  t.same(changes, ['Unhealthy 1 failure in a row: boom']);
  t.same(clock.armed, [700], 'next check one period after this one started');
  prober.stop();
});

t.test('prober: targets replaced live keep their state; removed ones stop; changed probes restart', async (t) => {
  const clock = new ManualClock(0);
  const checked: string[] = [];
  const prober = new Prober({ clock, check: async (a) => { checked.push(a); return ok; }, onChange: () => {} });
  const a = { uid: 'demo/a', address: '10.0.0.1', probe: probe() };
  const b = { uid: 'demo/b', address: '10.0.0.2', probe: probe() };
  prober.setTargets([a]);
  await flush();
  prober.setTargets([a, b]);
  await flush();
  t.same(checked, ['10.0.0.1', '10.0.0.2'], 'a kept (not re-checked), b checked at once');
  prober.setTargets([b]);
  t.same([...prober.statuses().keys()], ['demo/b']);
  clock.advance(1000); await flush();
  t.same(checked.slice(2), ['10.0.0.2'], 'a no longer checked');
  prober.setTargets([{ ...b, probe: probe({ periodSeconds: 5 }) }]);
  await flush();
  t.same(checked.slice(3), ['10.0.0.2'], 'a changed probe starts over');
  t.equal(prober.statuses().get('demo/b'), 'Healthy');
  prober.stop();
});

t.test('topology: readinessProbe validated with field paths; echo pods get the default', async (t) => {
  const base = (pod: string) => `nodes: [{name: n1}]\nnamespaces: [{name: demo}]\npods:\n  - ${pod}\n`;
  const echo = parseTopology(base('{name: e, namespace: demo, node: n1, run: echo}'));
  t.same(echo.pods[0]!.readinessProbe, ECHO_DEFAULT_PROBE);
  t.equal(parseTopology(base('{name: c, namespace: demo, node: n1}')).pods[0]!.readinessProbe, undefined, 'run: none has none');
  const tcp = parseTopology(base('{name: c, namespace: demo, node: n1, readinessProbe: {tcpSocket: {port: 9000}, periodSeconds: 2, failureThreshold: 3}}'));
  t.same(tcp.pods[0]!.readinessProbe, { check: { kind: 'tcp', port: 9000 }, periodSeconds: 2, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 });
  const dflt = parseTopology(base('{name: c, namespace: demo, node: n1, readinessProbe: {tcpSocket: {port: 9000}}}'));
  t.same(dflt.pods[0]!.readinessProbe, { check: { kind: 'tcp', port: 9000 }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 3, successThreshold: 1 }, "failureThreshold defaults to the kubelet's 3");
  const http = parseTopology(base('{name: c, namespace: demo, node: n1, run: echo, readinessProbe: {httpGet: {path: /ready, port: 8080}}}'));
  t.same(http.pods[0]!.readinessProbe!.check, { kind: 'http', path: '/ready', port: 8080 });
  const cases: Array<[string, RegExp]> = [
    ['{}', /pods\[0\]\.readinessProbe: expected exactly one of httpGet or tcpSocket/],
    ['{httpGet: {port: 1}, tcpSocket: {port: 1}}', /pods\[0\]\.readinessProbe: expected exactly one/],
    ['{httpGet: {path: ready, port: 8080}}', /pods\[0\]\.readinessProbe\.httpGet\.path: expected a path starting with \//],
    ['{httpGet: {port: 0}}', /pods\[0\]\.readinessProbe\.httpGet\.port: expected a whole number from 1 to 65535/],
    ['{tcpSocket: {port: 9000}, periodSeconds: 0}', /pods\[0\]\.readinessProbe\.periodSeconds: expected a whole number from 1 to 300/],
    ['{tcpSocket: {port: 9000}, failureThreshold: 0}', /pods\[0\]\.readinessProbe\.failureThreshold/],
    ['{tcpSocket: {port: 9000}, successThreshold: 1.5}', /pods\[0\]\.readinessProbe\.successThreshold/],
    ['{tcpSocket: {port: 9000}, periodSeconds: 1, timeoutSeconds: 2}', /pods\[0\]\.readinessProbe\.timeoutSeconds: must not exceed periodSeconds \(1\)/],
    ['{tcpSocket: {port: 9000}, initialDelay: 1}', /pods\[0\]\.readinessProbe\.initialDelay: unknown field/],
    ['{exec: {}}', /pods\[0\]\.readinessProbe\.exec: unknown field/],
  ];
  for (const [yaml, why] of cases) {
    const err = await caught(() => parseTopology(base(`{name: c, namespace: demo, node: n1, readinessProbe: ${yaml}}`)));
    t.equal(err.code, 'WEFT_LAB_TOPOLOGY_INVALID', yaml);
    t.match(err.message, why, yaml);
  }
});

t.test('probeTargets: the node\'s probed pods and its waypoints', async (t) => {
  const plan = planLab(parseTopology(`nodes: [{name: n1}, {name: n2}]
namespaces: [{name: demo}]
pods:
  - {name: e1, namespace: demo, node: n1, run: echo}
  - {name: c, namespace: demo, node: n1}
  - {name: e2, namespace: demo, node: n2, run: echo}
waypoints:
  - {name: wp, namespace: demo, node: n1}
`));
  const targets = probeTargets({ plan, waypoints: plan.waypoints }, 'n1');
  t.same(targets.map((x) => [x.uid, x.address]), [['demo/e1', '198.19.1.10'], ['demo/wp', '198.19.1.12']]);
  t.same(targets[1]!.probe, WAYPOINT_PROBE, 'a waypoint is probed on /healthz/ready :15021');
  t.same(probeTargets({ plan, waypoints: [] }, 'n2').map((x) => x.uid), ['demo/e2']);
});

t.test('writeStatus: flips only an existing record, never resurrects a removed one', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.put('workload', workloadRecord({ namespace: 'demo', name: 'echo-1', node: 'n1', addresses: ['198.19.1.10'] }));
  t.equal(await writeStatus(store, 'demo/echo-1', 'Unhealthy'), true);
  t.equal((await store.get('workload', 'demo/echo-1'))!.status, 'Unhealthy');
  t.equal(await writeStatus(store, 'demo/echo-1', 'Unhealthy'), false, 'no write when it already says so');
  const rev = await store.revision();
  t.equal(await writeStatus(store, 'demo/gone', 'Healthy'), false);
  t.equal(await store.get('workload', 'demo/gone'), undefined, 'a removed workload is not written back');
  t.equal(await store.revision(), rev, 'nothing written');
});

t.test('StatusSync: after every check the registry agrees, whoever wrote last; a flap ends on its last verdict', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.put('workload', workloadRecord({ namespace: 'demo', name: 'wp', node: 'n1', addresses: ['198.19.1.13'] }));
  const sync = new StatusSync(store, silentLogger());
  await sync.sync('demo/wp', 'Unhealthy');
  t.equal((await store.get('workload', 'demo/wp'))!.status, 'Unhealthy');
  await store.put('workload', workloadRecord({ namespace: 'demo', name: 'wp', node: 'n1', addresses: ['198.19.1.13'], status: 'Healthy' }));
  await sync.sync('demo/wp', 'Unhealthy');
  t.equal((await store.get('workload', 'demo/wp'))!.status, 'Unhealthy', 'another writer\'s stale Healthy is corrected at the next check');
  const first = sync.sync('demo/wp', 'Healthy');
  void sync.sync('demo/wp', 'Unhealthy');
  void sync.sync('demo/wp', 'Healthy');
  await first;
  t.equal((await store.get('workload', 'demo/wp'))!.status, 'Healthy', 'calls during a write only change what it ends on');
  sync.forget('demo/wp');
  await store.delete('workload', 'demo/wp');
  await sync.sync('demo/gone', 'Healthy');
  t.equal(await store.get('workload', 'demo/gone'), undefined);
});
