// The echo app's per-pod misbehaviour (src/lab/echo-behaviour.ts): parsing with named
// fields, the gate's failure share, service time and concurrency queue on a manual
// clock; then the live control request and a failing pod over real HTTP on loopback.
import t from 'tap';
import { request } from 'node:http';
import { BehaviourGate, DEFAULT_ECHO_BEHAVIOUR, PROBER_USER_AGENT, parseBehaviour } from '../src/lab/echo-behaviour';
import { startEcho } from '../src/lab/echo';
import { planLab } from '../src/lab/plan';
import { echoBehaviourArgs } from '../src/lab/up';
import { parseTopology } from '../src/lab/topology';
import { ManualClock } from './helpers/clock';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('parseBehaviour: fields over a base; a bad or unknown one is named', async (t) => {
  t.same(parseBehaviour([['failRatio', '0.25'], ['serviceTime', '1.5s'], ['concurrency', '4']]),
    { failStatus: 503, failRatio: 0.25, serviceTimeMs: 1500, concurrency: 4 });
  t.same(parseBehaviour([['failStatus', '500']], { ...DEFAULT_ECHO_BEHAVIOUR, failRatio: 1 }).failRatio, 1, 'the base is kept');
  t.throws(() => parseBehaviour([['failRatio', '1.5']]), /failRatio: expected a ratio from 0 to 1, got "1.5"/);
  t.throws(() => parseBehaviour([['failStatus', '99']]), /failStatus: expected a status from 200 to 599/);
  t.throws(() => parseBehaviour([['serviceTime', '2m']]), /serviceTime: expected a time/);
  t.throws(() => parseBehaviour([['concurrency', '-1']]), /concurrency: expected a whole number/);
  t.throws(() => parseBehaviour([['failRate', '1']]), /unknown behaviour "failRate"; expected failStatus, failRatio, serviceTime, concurrency/);
});

t.test('gate: the failure share follows random; concurrency queues in order; service time on the clock', async (t) => {
  const rolls = [0.1, 0.9, 0.29, 0.3];
  const gate = new BehaviourGate({ ...DEFAULT_ECHO_BEHAVIOUR, failRatio: 0.3, failStatus: 500 }, () => rolls.shift()!);
  t.same([gate.failure(), gate.failure(), gate.failure(), gate.failure()], [500, undefined, 500, undefined]);

  const clock = new ManualClock();
  const timer = (fn: () => void, ms: number) => void clock.setTimeout(fn, ms);
  const slow = new BehaviourGate({ ...DEFAULT_ECHO_BEHAVIOUR, serviceTimeMs: 100, concurrency: 2 });
  const done: string[] = [];
  for (const name of ['a', 'b', 'c', 'd', 'e']) slow.run(() => done.push(`${name}@${clock.now()}`), timer);
  t.same(slow.load, { active: 2, waiting: 3, peakActive: 2 }, 'two served, three queued');
  clock.advance(100);
  t.same(done, ['a@100', 'b@100'], 'the first two after one service time');
  t.same(slow.load, { active: 2, waiting: 1, peakActive: 2 });
  clock.advance(200);
  t.same(done, ['a@100', 'b@100', 'c@200', 'd@200', 'e@300'], 'the queue in order, two at a time');
  slow.set({ ...slow.behaviour, concurrency: 0, serviceTimeMs: 0 });
  slow.run(() => done.push('f'), timer);
  t.equal(done.at(-1), 'f', 'no limit and no service time: answered at once');
});

t.test('topology pods[].echo: validated with its path; planned; passed to the app as flags', async (t) => {
  const base = (pod: string) => `nodes: [{name: n1}]\nnamespaces: [{name: demo}]\npods: [${pod}]\n`;
  const topo = parseTopology(base('{name: e, namespace: demo, node: n1, run: echo, echo: {failRatio: 1, serviceTime: 20ms, concurrency: 8}}'));
  const planned = planLab(topo).pods[0]!;
  t.same(planned.echo, { failStatus: 503, failRatio: 1, serviceTimeMs: 20, concurrency: 8 });
  t.same(echoBehaviourArgs(planned.echo), ['--fail-status', '503', '--fail-ratio', '1', '--service-time', '20', '--concurrency', '8']);
  t.same(echoBehaviourArgs(undefined), []);
  t.throws(() => parseTopology(base('{name: e, namespace: demo, node: n1, run: echo, echo: {failRatio: 2}}')), /pods\[0\]\.echo\.failRatio: expected a ratio from 0 to 1, got "2"/);
  t.throws(() => parseTopology(base('{name: e, namespace: demo, node: n1, run: echo, echo: {fail: 1}}')), /pods\[0\]\.echo\.fail: unknown field/);
  t.throws(() => parseTopology(base('{name: e, namespace: demo, node: n1, echo: {failRatio: 1}}')), /pods\[0\]\.echo: only a pod with run: echo/);
});

t.test('echo over HTTP: a failing pod answers its status; the control request heals it live', async (t) => {
  const servers = await startEcho({ pod: 'echo-1', namespace: 'demo', node: 'node-1' }, {
    host: '127.0.0.1', httpPort: 0, tcpPort: 0, grpcPort: 0, behaviour: { ...DEFAULT_ECHO_BEHAVIOUR, failRatio: 1 },
  });
  t.teardown(() => servers.close());
  const failed = await get(servers.httpPort, '/x');
  t.equal(failed.status, 503, 'every request fails');
  t.equal(JSON.parse(failed.body).pod, 'echo-1', 'still with the echo answer as its body');
  const set = await get(servers.httpPort, '/_echo/behaviour?failRatio=0&serviceTime=5');
  t.equal(set.status, 200);
  t.same(JSON.parse(set.body), { failStatus: 503, failRatio: 0, serviceTimeMs: 5, concurrency: 0, active: 0, waiting: 0, peakActive: 1 });
  t.equal((await get(servers.httpPort, '/x')).status, 200, 'healed');
  const bad = await get(servers.httpPort, '/_echo/behaviour?failRatio=abc');
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body).error, /failRatio: expected a ratio/);
});

t.test('the lab prober is answered as is: a failing pod stays Ready', async (t) => {
  const servers = await startEcho({ pod: 'echo-1', namespace: 'demo', node: 'node-1' }, {
    host: '127.0.0.1', httpPort: 0, tcpPort: 0, grpcPort: 0, behaviour: { ...DEFAULT_ECHO_BEHAVIOUR, failRatio: 1, concurrency: 1, serviceTimeMs: 60_000 },
  });
  t.teardown(() => servers.close());
  const probe = await new Promise<number>((resolve, reject) => {
    request({ host: '127.0.0.1', port: servers.httpPort, path: '/', agent: false, headers: { 'user-agent': PROBER_USER_AGENT } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); })
      .on('error', reject).end();
  });
  t.equal(probe, 200, 'neither failed nor queued behind the service time');
});
