// A section of test/e2e/mesh.test.ts (it was test/e2e/readiness.test.ts, with a lab of
// its own). Endpoint health on the lab (issue 14): the lab's per-node prober runs each pod's
// readiness probe and writes the workload's status, so a stopped echo app leaves
// echo.demo and every new connection under steady traffic reaches the other endpoint;
// started again, both serve. A crashed waypoint is marked Unhealthy the same way.
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { RegistryStore } from '../../../src/registry/store';
import { adminGet } from '../../../src/faults/observe';
import type { ConfigDump } from '../../../src/ztunnel/admin-types';
import type { ProcessResource } from '../../../src/lab/state';
import { waitFor } from '../../helpers/wait';
import type { LabHandle } from '../helpers/lab';

/** A new TCP connection per request (agent: false), one after another; bounded. */
const GENERATOR = `
const http = require('node:http');
const url = process.argv[1];
let left = 20000;
const once = () => {
  if (left-- <= 0) return;
  const t = Date.now();
  const req = http.get(url, { agent: false, timeout: 2000 }, (res) => {
    let body = '';
    res.on('data', (c) => { body += c; });
    res.on('end', () => {
      let pod = '?';
      try { pod = JSON.parse(body).pod; } catch {}
      process.stdout.write(JSON.stringify({ t, pod, status: res.statusCode }) + '\\n');
      setTimeout(once, 5);
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => { process.stdout.write(JSON.stringify({ t, err: e.code || e.message }) + '\\n'); setTimeout(once, 5); });
};
once();
`;

interface Result { t: number; pod?: string; status?: number; err?: string }

/** On the mesh lab (test/e2e/mesh.test.ts); starts what it stops and removes the waypoint it adds. */
export function section(t: Test, lab: LabHandle): Promise<unknown> {
  return t.test('readiness probes take a stopped app out of its service and bring it back', async (t) => {
    const state = lab.state()!;
    const store = RegistryStore.connect(lab.context.redisUrl);
    t.teardown(() => store.close());
    const status = async (uid: string) => (await store.get('workload', uid))?.status;
    const node1Socket = lab.context.nodes.find((n) => n.name === 'node-1')!.adminSocket!;
    const ztunnelRevision = async () => (await adminGet<ConfigDump>(node1Socket, '/config_dump')).status.registryRevision;
    const probers = state.resources.filter((r): r is ProcessResource => r.type === 'process' && r.role === 'prober');
    t.same(probers.map((p) => p.name).sort(), ['prober/node-1', 'prober/node-2'], 'one prober per node, in its netns');
    t.equal(await status('demo/echo-1'), 'Healthy');

    const vip = state.plan.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!.vip;
    const client = state.plan.pods.find((p) => p.uid === 'demo/client')!;
    const gen = spawn('ip', ['netns', 'exec', client.netns, process.execPath, '-e', GENERATOR, `http://${vip}:80/`], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => { gen.kill('SIGKILL'); });
    const results: Result[] = [];
    createInterface({ input: gen.stdout! }).on('line', (l) => results.push(JSON.parse(l) as Result));
    const after = (since: number) => results.filter((r) => r.t >= since);

    await waitFor('steady traffic reaches both endpoints', () => new Set(results.map((r) => r.pod)).size >= 2 && results.length >= 50, { timeoutMs: 30_000, intervalMs: 50 });
    t.ok(results.every((r) => r.status === 200), 'all answered before the stop');

    /** Seconds until the prober marks echo-1 `wanted`; returns once node-1's ztunnel has that change too. */
    const echo1Becomes = async (wanted: 'Healthy' | 'Unhealthy'): Promise<number> => {
      const since = Date.now();
      await waitFor(`the prober marks echo-1 ${wanted}`, async () => (await status('demo/echo-1')) === wanted, { timeoutMs: 15_000, intervalMs: 20 });
      const seconds = (Date.now() - since) / 1000;
      const rev = await store.revision();
      await waitFor(`node-1's ztunnel has echo-1 ${wanted}`, async () => (await ztunnelRevision()) >= rev, { timeoutMs: 10_000, intervalMs: 20 });
      return seconds;
    };
    const stop = await lab.weft(['lab', 'app', 'stop', 'demo/echo-1']);
    // Started again on failure too: the sections after this one share the lab (and
    // capture-restart's "ztunnel down: echo-1 refused" means nothing with its app down).
    let echo1Down = true;
    t.teardown(async () => { if (echo1Down) await lab.weft(['lab', 'app', 'start', 'demo/echo-1']); });
    t.equal(stop.code, 0, stop.stderr);
    t.match(stop.stdout, /app of demo\/echo-1 \(pid \d+\) stopped with SIGTERM\n.*marks demo\/echo-1 Unhealthy within 3 s/);
    const stopped = Date.now();
    const removedS = await echo1Becomes('Unhealthy');
    const noticed = Date.now();
    await waitFor('200 new connections after the probe noticed', () => after(noticed).length >= 200, { timeoutMs: 60_000, intervalMs: 50 });
    const window = after(noticed).slice(0, 200);
    const toEcho2 = window.filter((r) => r.pod === 'echo-2' && r.status === 200).length;
    t.equal(toEcho2, 200, `${toEcho2}/200 new connections reached echo-2 (echo-1 removed ${removedS.toFixed(2)} s after its app stopped)`);
    const inGap = results.filter((r) => r.t >= stopped && r.t < noticed);
    t.comment(`measured: endpoint removed ${removedS.toFixed(2)} s after the stop; ${inGap.filter((r) => r.err).length}/${inGap.length} connections failed in between; after: ${toEcho2}/200 to echo-2`);

    const workloads = await lab.weft(['workloads', '-n', 'demo', '-o', 'json']);
    const items = (JSON.parse(workloads.stdout) as { items: Array<{ name: string; status: string }> }).items;
    t.equal(items.find((w) => w.name === 'echo-1')?.status, 'Unhealthy', 'weft workloads shows it');
    const services = await lab.weft(['services', '-n', 'demo', '-o', 'json']);
    const echo = (JSON.parse(services.stdout) as { items: Array<{ name: string; healthyEndpoints: number }> }).items.find((s) => s.name === 'echo');
    t.equal(echo?.healthyEndpoints, 1, 'weft services counts one healthy endpoint');
    const explained = await lab.weft(['explain', 'demo/client', 'echo.demo']);
    t.match(explained.stdout, /Endpoints: 1 of 2 usable/);
    t.match(explained.stdout, /Skipped demo\/echo-1: status Unhealthy: its readiness probe fails/, 'weft explain says why');

    const start = await lab.weft(['lab', 'app', 'start', 'demo/echo-1']);
    echo1Down = start.code !== 0;
    t.equal(start.code, 0, start.stderr);
    t.match(start.stdout, /app of demo\/echo-1 started \(pid \d+\) and listening/);
    const rejoinS = await echo1Becomes('Healthy');
    const back = Date.now();
    await waitFor('both serve again', () => new Set(after(back).map((r) => r.pod)).size >= 2, { timeoutMs: 30_000, intervalMs: 50 });
    const last = after(back);
    t.ok(last.every((r) => r.status === 200), 'no failed connection once it is back');
    t.comment(`measured: rejoined ${rejoinS.toFixed(2)} s after the start; after: ${last.filter((r) => r.pod === 'echo-1').length}/${last.length} to echo-1`);
    gen.kill('SIGKILL');

    await t.test('a crashed waypoint is marked Unhealthy by the prober; start and stop wait for its verdict', async (t) => {
      const add = await lab.weft(['waypoint', 'add', 'demo/wp', '--node', 'node-1']);
      // Removed on failure too: the sections after this one share the lab.
      let added = true;
      t.teardown(async () => { if (added) await lab.weft(['waypoint', 'remove', 'demo/wp']); });
      t.equal(add.code, 0, add.stderr);
      t.equal(await status('demo/wp'), 'Healthy', 'add returns once the prober marked it Healthy');
      const proc = lab.state()!.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === 'waypoint/demo/wp')!;
      process.kill(proc.pid!, 'SIGKILL'); // a crash: nothing but the probe can notice
      const killed = Date.now();
      await waitFor('the prober marks the waypoint Unhealthy', async () => (await status('demo/wp')) === 'Unhealthy', { timeoutMs: 15_000, intervalMs: 20 });
      t.comment(`measured: waypoint Unhealthy ${((Date.now() - killed) / 1000).toFixed(2)} s after its crash`);
      const start = await lab.weft(['lab', 'waypoint', 'demo/wp', 'start']);
      t.equal(start.code, 0, start.stderr);
      t.equal(await status('demo/wp'), 'Healthy', 'start returns once Healthy');
      const stop = await lab.weft(['lab', 'waypoint', 'demo/wp', 'stop']);
      t.equal(stop.code, 0, stop.stderr);
      t.equal(await status('demo/wp'), 'Unhealthy', 'stop returns once Unhealthy');
      const rm = await lab.weft(['waypoint', 'remove', 'demo/wp']);
      added = rm.code !== 0;
      t.equal(rm.code, 0, rm.stderr);
      await new Promise((r) => setTimeout(r, 2500)); // two prober periods: it must not write the record back
      t.equal(await status('demo/wp'), undefined, 'a removed waypoint stays removed');
    });

    await t.test('app usage errors; lab status counts the probers', async (t) => {
      const bad = await lab.weft(['lab', 'app', 'stop', 'demo/client']);
      t.equal(bad.code, 2);
      t.match(bad.stderr, /runs no app in pod "demo\/client" \(pods with an app: demo\/echo-1, demo\/echo-2, legacy\/echo-1\)/);
      const st = await lab.weft(['lab', 'status']);
      t.equal(st.code, 0, `lab status healthy with the probers: ${st.stdout}`);
    });
  });
}
