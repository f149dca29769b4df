// The L4 data path end to end on the lab: real namespaces, real iptables capture, real
// Redis, real CA and TLS. What issue 3 promises: pods in enrolled namespaces talk across
// nodes and on one node through mutually authenticated tunnels, unchanged pods, bytes
// intact, nothing in clear text on the wire, legacy untouched, policy enforced, and
// enrolment changed live.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryStore } from '../../src/registry/store';
import { DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_LABEL, type AuthorizationPolicyRecord } from '../../src/registry/types';
import type { TunnelsResponse, ConnectionsResponse } from '../../src/ztunnel/admin-types';
import { labSkipReason, startLab, type LabHandle } from './helpers/lab';
import { waitFor } from '../helpers/wait';

const skip = labSkipReason();
const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const ECHO = 'spiffe://cluster.local/ns/demo/sa/echo';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The mesh's checks run pod commands; a failing one means "not yet". */
const eventually = (what: string, check: () => Promise<boolean>) => waitFor(what, check, { timeoutMs: 5000, intervalMs: 100, ignoreErrors: true });

function admin<T>(socketPath: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path, timeout: 3000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try { resolve(JSON.parse(Buffer.concat(chunks).toString()) as T); } catch (err) { reject(err); }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('mesh data path on the lab', { skip }, async (t) => {
  const lab: LabHandle = await startLab(t);
  const ctx = lab.context;
  const pod = (uid: string) => ctx.pods.find((p) => p.uid === uid)!;
  const socketOf = (name: string) => ctx.nodes.find((n) => n.name === name)!.adminSocket!;
  const store = RegistryStore.connect(ctx.redisUrl);
  t.teardown(() => store.close());
  const tmp = mkdtempSync(join(tmpdir(), 'weft-e2e-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

  await t.test('demo/client reaches echo.demo on both nodes, through ztunnels', async (t) => {
    const seen = new Map<string, string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const a = await lab.request('demo/client', 'http://echo.demo/');
      seen.set(a.pod, a.peer);
    }
    t.same([...seen.keys()].sort(), ['echo-1', 'echo-2'], 'round robin reaches the same-node and the cross-node endpoint');
    // The app sees the ztunnel, not the client pod: the connection was proxied.
    for (const peer of seen.values()) t.notMatch(peer, `${pod('demo/client').ip}:`, 'echo saw the proxy as its peer');
    const { tunnels } = await admin<TunnelsResponse>(socketOf('node-1'), '/tunnels');
    const toEcho = tunnels.filter((x) => x.sourceIdentity === CLIENT && x.destinationIdentity === ECHO);
    t.ok(toEcho.some((x) => x.peerNode === 'node-2' && x.bytesSent > 0), 'a tunnel to node-2 carried bytes');
    t.ok(toEcho.some((x) => x.peerNode === 'node-1'), 'a same-node tunnel too');
  });

  await t.test('100 MB through the mesh across nodes arrives intact', async (t) => {
    const r = await lab.tcp('demo/client', `${pod('demo/echo-2').ip}:9000`, 100_000_000);
    t.equal(r.received, 100_000_000);
    t.equal(r.receivedSha256, r.sentSha256, 'sha256 of what came back equals what was sent');
  });

  await t.test('between mesh pods the bridge carries only TLS; legacy is plaintext', async (t) => {
    const marker = `weft-marker-${process.pid}-${Date.now()}`;
    const markerFile = join(tmp, 'marker.txt');
    writeFileSync(markerFile, `${marker}\n`.repeat(200));
    const pcap = join(tmp, 'br0.pcap');
    const dump = spawn('tcpdump', ['-i', 'weft-br0', '--immediate-mode', '-U', '-s', '0', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
    t.teardown(() => { if (dump.exitCode === null) dump.kill('SIGKILL'); });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 5000);
      dump.stderr.on('data', (b: Buffer) => { if (b.toString().includes('listening on')) { clearTimeout(timer); resolve(); } });
    });
    const mesh = await lab.exec('demo/client', ['weft', 'lab', 'tcp', `${pod('demo/echo-2').ip}:9000`, '--file', markerFile]);
    t.equal(mesh.code, 0, 'mesh transfer succeeded');
    const mark = await lab.exec('legacy/client', ['weft', 'lab', 'tcp', `${pod('legacy/echo-1').ip}:9000`, '--file', markerFile]);
    t.equal(mark.code, 0, 'legacy transfer succeeded');
    // libpcap hands packets over in batches; give it time before asking it to stop.
    await sleep(1000);
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
    const bytes = readFileSync(pcap);
    const text = bytes.toString('latin1');
    t.ok(bytes.length > 10_000, 'the capture saw traffic');
    // The legacy flow proves the capture sees a plaintext marker; the file goes out once
    // and is echoed once, so exactly 2 x 200 sightings means none came from the mesh flow.
    const occurrences = text.split(marker).length - 1;
    t.equal(occurrences, 2 * 200, 'the marker is seen only in the legacy flow, never in the mesh flow');
  });

  await t.test('legacy/client to legacy/echo stays plaintext and uncaptured', async (t) => {
    const a = await lab.request('legacy/client', 'http://echo.legacy/');
    t.equal(a.namespace, 'legacy');
    t.match(a.peer, `${pod('legacy/client').ip}:`, 'echo saw the client pod itself: no proxy in between');
    const conns = await admin<ConnectionsResponse>(socketOf('node-1'), '/connections');
    t.notOk(conns.connections.some((c) => c.sourceAddress.startsWith(pod('legacy/client').ip)), 'no ztunnel connection from the legacy pod');
  });

  await t.test('a DENY policy refuses, and its removal restores access', async (t) => {
    const deny: AuthorizationPolicyRecord = {
      name: 'deny-client', namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'DENY',
      rules: [{ clauses: [{ matches: [{ principals: [CLIENT] }] }] }],
    };
    // A long-lived connection opened before the policy must be closed by it (re-check).
    const live = lab.exec('demo/client', ['weft', 'lab', 'tcp', `${pod('demo/echo-2').ip}:9000`, '--bytes', '400000000', '--timeout', '30s']);
    await sleep(300);
    await store.put('policy', deny);
    await eventually('a new connection is refused', async () => {
      const r = await lab.exec('demo/client', ['weft', 'lab', 'request', 'http://echo.demo/', '--timeout', '3s']);
      return r.code !== 0;
    });
    t.pass('new connections are refused once the policy lands');
    const liveResult = await live;
    t.not(liveResult.code, 0, 'the live connection was closed when the policy changed');
    await store.delete('policy', 'demo/deny-client');
    await eventually('access restored', async () => (await lab.exec('demo/client', ['weft', 'lab', 'request', 'http://echo.demo/'])).code === 0);
    t.pass('access restored after the policy is deleted');
  });

  await t.test('enrolment toggled live, without restarting pods', async (t) => {
    const clientIp = pod('demo/client').ip;
    const viaProxy = async () => !(await lab.request('demo/client', 'http://echo.demo/')).peer.startsWith(`${clientIp}:`);
    t.ok(await viaProxy(), 'enrolled: traffic goes through the ztunnel');
    const before = Date.now();
    await store.setNamespaceLabel('demo', DATAPLANE_MODE_LABEL, undefined);
    await eventually('unenrolled traffic is direct', async () => !(await viaProxy()));
    t.pass(`unenrolled: direct within ${Date.now() - before} ms`);
    await store.setNamespaceLabel('demo', DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT);
    await eventually('re-enrolled traffic is proxied', viaProxy);
    t.pass('re-enrolled: through the ztunnel again');
  });

  await t.test('Redis unreachable: ztunnels keep proxying with the last state', async (t) => {
    const redis = lab.state()!.resources.find((r) => r.type === 'process' && r.role === 'redis') as { pid: number } | undefined;
    t.ok(redis?.pid, 'redis pid recorded');
    process.kill(redis!.pid, 'SIGSTOP');
    try {
      await sleep(1500);
      const a = await lab.request('demo/client', 'http://echo.demo/');
      t.equal(a.namespace, 'demo', 'traffic still flows while Redis is frozen');
    } finally {
      process.kill(redis!.pid, 'SIGCONT');
    }
  });

  await t.test('many short connections leave nothing behind', async (t) => {
    const n = 200;
    const script = `const net=require('net');let left=${n},bad=0;function one(){if(left--<=0){console.log(JSON.stringify({bad}));return}
const s=net.connect(9000,'${ctx.services.find((s) => s.namespace === 'demo')!.vip}');let got=0;s.on('data',b=>{got+=b.length;if(got>=64)s.end()});
s.on('error',()=>{bad++});s.on('close',one);s.write(Buffer.alloc(64,1))}for(let i=0;i<8;i++)one()`;
    const r = await lab.exec('demo/client', ['node', '-e', script]);
    t.equal(r.code, 0, r.stderr);
    await eventually('every tracked connection closed on both nodes', async () => {
      for (const n of ctx.nodes) {
        const c = await admin<ConnectionsResponse>(n.adminSocket!, '/connections');
        if (c.connections.length !== 0) return false;
        const tu = await admin<TunnelsResponse>(n.adminSocket!, '/tunnels');
        if (tu.tunnels.some((x) => x.activeStreams !== 0)) return false;
      }
      return true;
    });
    t.pass('connections and active streams back to zero');
    const dump = await admin<{ originalDst?: { method: string; sockopt: number; conntrack: number } }>(socketOf('node-1'), '/config_dump');
    if (existsSync(join(__dirname, '..', '..', 'native', 'build', 'weft_native.node'))) {
      t.equal(dump.originalDst?.method, 'sockopt', 'original destinations come from the kernel (SO_ORIGINAL_DST)');
      t.ok((dump.originalDst?.sockopt ?? 0) >= n, `${dump.originalDst?.sockopt} lookups answered by the kernel`);
      t.equal(dump.originalDst?.conntrack, 0, 'none fell back to reading the conntrack table');
    }
  });
});
