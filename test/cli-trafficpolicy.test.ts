/**
 * `weft apply -f` / `weft delete -f` of TrafficPolicy against a real redis-server, and
 * `weft trafficpolicies`: bad input refused with its field named (the policy in force
 * stays), a missing target Service reported and the policy in force once it exists,
 * two policies on one Service (the oldest wins, the other Conflicted).
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import apply from '../src/cli/commands/apply';
import del from '../src/cli/commands/delete';
import trafficpolicies from '../src/cli/commands/trafficpolicies';
import type { CliIo } from '../src/cli/io';
import { serviceRecord } from '../src/registry/fixtures';
import { captureIo, startDemoRegistry } from './helpers/cli';
import { caught } from './helpers/wait';

const policy = (name: string, services: string[], extra: Record<string, unknown> = {}) => ({
  apiVersion: 'networking.weft.io/v1alpha1', kind: 'TrafficPolicy',
  metadata: { name, namespace: 'demo' },
  spec: { targetRefs: services.map((s) => ({ group: '', kind: 'Service', name: s })), ...extra },
});
const yamlOf = (...docs: unknown[]) => docs.map((d) => YAML.stringify(d)).join('---\n');

t.test('weft apply / trafficpolicies / delete of TrafficPolicy', async (t) => {
  const { store, dir, contextFile } = await startDemoRegistry(t);
  const env = { HOME: dir, WEFT_CONTEXT: contextFile };
  const run = async (cmd: { runWith: (a: string[], io: CliIo) => Promise<number> }, argv: string[]) => {
    const cap = captureIo(env);
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };
  const file = (name: string, ...docs: unknown[]) => {
    const p = join(dir, name);
    writeFileSync(p, yamlOf(...docs));
    return p;
  };
  const list = async () => JSON.parse((await run(trafficpolicies, ['-o', 'json'])).out) as {
    items: { name: string; state: string; sections: string[]; targets: { ref: { name: string }; state: string; message: string }[] }[];
  };

  t.test('created on a missing Service: stored, listed TargetNotFound; in force as soon as the Service exists', async (t) => {
    const rev = await store.revision();
    const r = await run(apply, ['-f', file('tp.yaml', policy('resilient', ['later'], { retry: {} }))]);
    t.equal(r.code, 0);
    t.equal(r.out, 'trafficpolicy.networking.weft.io/resilient created\n');
    t.equal(await store.revision(), rev + 1);
    const stored = await store.get('trafficpolicy', 'demo/resilient');
    t.same(stored?.spec.targetRefs, [{ group: '', kind: 'Service', name: 'later' }]);
    t.match(stored?.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    let l = await list();
    t.same(l.items.map((p) => [p.name, p.state, p.sections]), [['resilient', 'TargetNotFound', ['retry']]]);
    t.match(l.items[0]!.targets[0]!.message, /Service demo\/later does not exist; the policy takes effect as soon as it does/);
    const table = (await run(trafficpolicies, [])).out;
    t.match(table, /resilient\s+later \(TargetNotFound\)\s+retry\s+TargetNotFound: Service demo\/later does not exist/);
    await store.apply([{ op: 'put', kind: 'service', record: serviceRecord({ namespace: 'demo', name: 'later', vips: ['198.18.128.40'] }) }]);
    l = await list();
    t.same(l.items.map((p) => [p.name, p.state]), [['resilient', 'Accepted']], 'no re-apply needed');
    t.equal((await run(apply, ['-f', file('tp.yaml', policy('resilient', ['later'], { retry: {} }))])).out,
      'trafficpolicy.networking.weft.io/resilient unchanged\n');
  });

  t.test('bad input: refused naming the field, nothing written, the last good policy stays in force', async (t) => {
    const before = await store.get('trafficpolicy', 'demo/resilient');
    const rev = await store.revision();
    const bad: [Record<string, unknown>, RegExp][] = [
      [policy('resilient', ['later'], { retires: {} }), /spec\.retires is not a known field \(known: targetRefs, loadBalancer/],
      [policy('resilient', []), /spec\.targetRefs must name at least one Service/],
      [{ ...policy('resilient', ['later']), spec: { targetRefs: [{ kind: 'Deployment', name: 'later' }] } }, /spec\.targetRefs\[0\]\.kind must be Service/],
      [policy('resilient', ['later'], { retry: 3 }), /spec\.retry must be an object, got 3/],
      [{ ...policy('resilient', ['later']), apiVersion: 'networking.weft.io/v1' }, /apiVersion "networking\.weft\.io\/v1" is not one Weft reads for TrafficPolicy; use networking\.weft\.io\/v1alpha1/],
    ];
    for (const [doc, message] of bad) {
      const err = await caught(() => run(apply, ['-f', file('bad.yaml', doc)]));
      t.equal(err.code, 'WEFT_MANIFEST_INVALID');
      t.match(err.message, message);
      t.match(err.message, /nothing was applied/);
    }
    t.equal(await store.revision(), rev, 'no revision');
    t.same(await store.get('trafficpolicy', 'demo/resilient'), before, 'the last good policy is untouched');
  });

  t.test('a second policy on the same Service: the older stays in force, the newer is Conflicted; delete', async (t) => {
    const r = await run(apply, ['-f', file('second.yaml', policy('second', ['later', 'echo'], { faults: {} }))]);
    t.equal(r.code, 0);
    const l = await list();
    const second = l.items.find((p) => p.name === 'second')!;
    t.same(second.targets.map((x) => `${x.ref.name}=${x.state}`), ['later=Conflicted', 'echo=Accepted'], 'per Service');
    t.match(second.targets[0]!.message, /already targeted by the older TrafficPolicy demo\/resilient/);
    t.equal(second.state, 'Conflicted');
    const d = await run(del, ['-f', join(dir, 'tp.yaml')]);
    t.equal(d.out, 'trafficpolicy.networking.weft.io/resilient deleted\n');
    t.same((await list()).items.map((p) => [p.name, p.state]), [['second', 'Accepted']], 'the winner gone: the other takes the Service');
  });
});
