// A section of test/e2e/mesh.test.ts (it was test/e2e/vip-capture.test.ts, with a lab of
// its own). A client outside the mesh dialling a service VIP whose endpoint is an
// enrolled pod on
// its own node: kube-proxy's DNAT happens once, so before the fix the node never saw
// the pod IP and about half of these connections (those to echo-1, on node-1 like the
// client) reached the pod in plaintext, skipping STRICT mTLS. Now the capture chain
// takes the VIP first and node-1's inbound plaintext listener resolves it.
import type { Test } from 'tap';
import { adminGet, counterSum, scrapeZtunnel } from '../../../src/faults/observe';
import { RegistryStore } from '../../../src/registry/store';
import type { PeerAuthenticationRecord } from '../../../src/registry/types';
import type { RegistryDump } from '../../../src/ztunnel/admin-types';
import type { LabHandle } from '../helpers/lab';
import { waitFor } from '../../helpers/wait';

const N = 20;
const PEERAUTH: PeerAuthenticationRecord = { name: 'vip-capture-strict', namespace: 'demo', mode: 'STRICT' };

type Outcome = { pod?: string; peer?: string; error?: string };

/** Node script: N sequential HTTP GETs to argv[1]; prints one JSON array of outcomes. */
const CLIENT = `
const http = require('node:http');
const [url, n] = process.argv.slice(1);
const out = [];
function one() {
  if (out.length >= Number(n)) return console.log(JSON.stringify(out));
  const req = http.get(url, { agent: false, timeout: 3000 }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => { try { const a = JSON.parse(body); out.push({ pod: a.pod, peer: a.peer }); } catch { out.push({ error: 'bad body' }); } one(); });
    res.on('error', (e) => { out.push({ error: e.code || e.message }); one(); });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => { out.push({ error: e.code || e.message }); one(); });
}
one();
`;

/** On the mesh lab (test/e2e/mesh.test.ts); removes the PeerAuthentication it adds. */
export function section(t: Test, lab: LabHandle): Promise<unknown> {
  return t.test('a non-mesh client cannot reach a same-node mesh pod through a VIP uncaptured', async (t) => {
    const ctx = lab.context;
    const svc = ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
    const port = svc.ports.find((p) => p.targetPort === 8080)!.port;
    const url = `http://${svc.vip}:${port}/`;
    const client = ctx.pods.find((p) => p.uid === 'legacy/client')!;
    const node1 = ctx.nodes.find((n) => n.name === 'node-1')!;
    const node2 = ctx.nodes.find((n) => n.name === 'node-2')!;
    t.equal(client.node, 'node-1', 'the legacy client shares node-1 with echo-1');
    t.equal(ctx.pods.find((p) => p.uid === 'demo/echo-1')?.node, 'node-1', 'echo-1 is the same-node endpoint');
    const store = RegistryStore.connect(ctx.redisUrl);
    t.teardown(async () => {
      await store.delete('peerauth', `demo/${PEERAUTH.name}`).catch(() => undefined);
      await store.close();
    });

    const run = async (): Promise<Outcome[]> => {
      const r = await lab.exec('legacy/client', ['node', '-e', CLIENT, url, String(N)]);
      if (r.code !== 0) throw new Error(`client script failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as Outcome[];
    };
    const plaintextOpened = async () => counterSum(await scrapeZtunnel(node1.address), 'istio_tcp_connections_opened_total', {
      reporter: 'destination', source_workload: 'client', source_workload_namespace: 'legacy',
      destination_service: svc.hostname, connection_security_policy: 'unknown',
    });
    const denied = async (address: string) => counterSum(await scrapeZtunnel(address), 'istio_tcp_connections_failed_total', {
      reporter: 'destination', destination_workload_namespace: 'demo', response_flags: 'DENY',
    });

    await t.test('PERMISSIVE: every connection succeeds, all through node-1\'s inbound plaintext listener', async (t) => {
      const before = await plaintextOpened();
      const outcomes = await run();
      t.same(outcomes.filter((o) => o.error), [], `all ${N} succeed`);
      t.same([...new Set(outcomes.map((o) => o.pod))].sort(), ['echo-1', 'echo-2'], 'both endpoints serve the VIP');
      t.notOk(outcomes.some((o) => o.peer?.startsWith(`${client.ip}:`)), 'no endpoint saw the client itself: nothing bypassed the ztunnel');
      t.equal(await plaintextOpened() - before, N, `node-1 counted ${N} inbound plaintext connections for ${svc.hostname}`);
    });

    await t.test('STRICT for demo: every connection is refused, the same-node endpoint included', async (t) => {
      await store.put('peerauth', PEERAUTH);
      const hasStrict = async (socket: string) => (await adminGet<RegistryDump>(socket, '/registry')).records['peerauth']!
        .some((r) => (r as PeerAuthenticationRecord).name === PEERAUTH.name);
      await waitFor('both ztunnels hold the STRICT PeerAuthentication', async () => (await hasStrict(node1.adminSocket!)) && (await hasStrict(node2.adminSocket!)),
        { timeoutMs: 10_000, intervalMs: 100, ignoreErrors: true });
      const deniedBefore = (await denied(node1.address)) + (await denied(node2.address));
      const outcomes = await run();
      const through = outcomes.filter((o) => !o.error);
      t.same(through, [], `all ${N} refused (${through.length} got through)`);
      const deniedAfter = (await denied(node1.address)) + (await denied(node2.address));
      t.equal(deniedAfter - deniedBefore, N, `the ztunnels counted ${N} DENY (local endpoint on node-1, forwarded ones on node-2)`);

      await store.delete('peerauth', `demo/${PEERAUTH.name}`);
      await waitFor('PERMISSIVE again', async () => (await run()).every((o) => !o.error), { timeoutMs: 10_000, intervalMs: 200, ignoreErrors: true });
      t.pass('removing the PeerAuthentication restores access');
    });
  });
}
