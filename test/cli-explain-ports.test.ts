// `weft explain <src> <service>` without a port (issue 14): every port of the service is
// explained (or its only one) instead of a refusal; skipped endpoints say why.
import t from 'tap';
import { MeshState } from '../src/registry/state';
import { serviceRecord } from '../src/registry/fixtures';
import { expandDestination, explain } from '../src/cli/explain-model';
import explainCommand from '../src/cli/commands/explain';
import { formatExplanation } from '../src/cli/commands/explain';
import { captureIo, demoMesh, startDemoRegistry } from './helpers/cli';
import type { Change } from '../src/registry/types';
import { recordKey } from '../src/registry/types';
import { caught } from './helpers/wait';

const twoPorts = serviceRecord({ namespace: 'demo', name: 'multi', vips: ['198.18.128.30'], selector: { app: 'echo' },
  ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'tcp', port: 9000, targetPort: 9000 }] });

function demoState(): MeshState {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const changes = [...demoMesh(), { op: 'put' as const, kind: 'service' as const, record: twoPorts }]
    .map((c) => (c.op === 'put' ? { ...c, key: recordKey(c.kind, c.record as never) } : c) as Change);
  state.applyChanges(changes, 1);
  return state;
}

t.test('a port-less service stands for each of its ports; with a port or a URL it is itself', async (t) => {
  const s = demoState();
  t.same(expandDestination(s, 'demo/client', 'echo.demo'), ['echo.demo:80'], 'the only port');
  t.same(expandDestination(s, 'demo/client', 'multi.demo'), ['multi.demo:80', 'multi.demo:9000'], 'every port');
  t.same(expandDestination(s, 'demo/client', 'multi'), ['multi:80', 'multi:9000'], "short name in the source's namespace");
  t.same(expandDestination(s, 'demo/client', 'echo.demo.svc.cluster.local'), ['echo.demo.svc.cluster.local:80']);
  t.same(expandDestination(s, 'demo/client', 'echo.demo:81'), ['echo.demo:81'], 'an explicit port is kept, even a wrong one');
  t.same(expandDestination(s, 'demo/client', 'http://echo.demo/x'), ['http://echo.demo/x']);
  const unknown = await caught(() => expandDestination(s, 'demo/client', 'nope.demo'));
  t.equal(unknown.code, 'WEFT_REGISTRY_NOT_FOUND');
  t.match(unknown.message, /no service answers to "nope\.demo".*or give a port/);
  const ip = await caught(() => expandDestination(s, 'demo/client', '198.19.1.11'));
  t.equal(ip.code, 'WEFT_USAGE');
  t.match(ip.message, /add the port you mean: 198\.19\.1\.11:<port>/);
  for (const v6 of ['fd00::1', '[fd00::1]']) {
    const e = await caught(() => expandDestination(s, 'demo/client', v6));
    t.equal(e.code, 'WEFT_USAGE', v6);
    t.match(e.message, /is an address without a port; add the port you mean: \[fd00::1\]:<port>/, `${v6}: no "invalid host", the bracketed form to write`);
  }
  const pod = await caught(() => expandDestination(s, 'demo/client', 'demo/echo-1'));
  t.match(pod.message, /declares no ports in the registry; add the port you mean: demo\/echo-1:<port>/);
});

t.test('an Unhealthy endpoint is listed as skipped, with the reason', async (t) => {
  const e = explain(demoState(), 'demo/client', 'echo.demo:80');
  const echo3 = e.destination.endpoints!.find((x) => x.name === 'echo-3')!;
  t.equal(echo3.usable, false);
  t.match(echo3.skipped, /status Unhealthy: its readiness probe fails/);
  t.notOk(e.destination.endpoints!.find((x) => x.name === 'echo-1')!.skipped, 'usable ones carry no reason');
  t.match(formatExplanation(e), /\n {3}Skipped demo\/echo-3: status Unhealthy: its readiness probe fails .*so the load balancer skips it/);
});

t.test('weft explain demo/client echo.demo (no port) against a real registry', async (t) => {
  const { dir, contextFile: ctx, store } = await startDemoRegistry(t);
  await store.put('service', twoPorts);
  const run = async (argv: string[]) => {
    const cap = captureIo({ HOME: dir, WEFT_CONTEXT: ctx });
    const code = await explainCommand.runWith(argv, cap.io);
    return { code, out: cap.stdout() };
  };
  const one = await run(['demo/client', 'echo.demo']);
  t.equal(one.code, 0, 'the only port, allowed');
  t.match(one.out, /2\. Destination: echo\.demo:80\n/);
  t.match(one.out, /Verdict: ALLOWED/);

  const both = await run(['demo/client', 'multi.demo']);
  t.equal(both.code, 0);
  t.match(both.out, /^== multi\.demo:80 \(2 ports of the service; each explained\) ==\n1\. Source/);
  t.match(both.out, /\n== multi\.demo:9000 \(2 ports/);
  t.equal(both.out.match(/Verdict: ALLOWED/g)?.length, 2, 'one verdict per port');

  const json = await run(['demo/client', 'multi.demo', '-o', 'json']);
  const items = (JSON.parse(json.out) as { items: Array<{ destination: { dialled: string } }> }).items;
  t.same(items.map((i) => i.destination.dialled), ['198.18.128.30:80', '198.18.128.30:9000']);
});
