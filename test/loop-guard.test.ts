/**
 * The loop guard (issue 9, items 5 and 11): the pure decision, the node-address set
 * with an injected clock and interface reader, and the listeners on a loopback mesh:
 * a refused destination is reset, counted as LOOP / NO_ROUTE, never dialled, and its
 * access-log lines are rate-limited.
 */
import t from 'tap';
import type { NetworkInterfaceInfo } from 'node:os';
import pino from 'pino';
import {
  exactSelfAddresses, fixedSelfAddresses, guardDestination, guardPort, isLinkLocal, loopGuard,
} from '../src/ztunnel/loop-guard';
import { NodeAddresses } from '../src/ztunnel/node-addresses';
import { startDemoMesh, IP, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { roundTrip, sendAndEnd, ending } from '../src/ztunnel/testing/sockets';
import { ManualClock } from './helpers/clock';
import { LogLines } from './helpers/log-lines';
import { waitFor } from './helpers/wait';

const NODE = '192.0.2.1';
const GUARD = loopGuard(fixedSelfAddresses([NODE, '2001:db8::1']), [9901]);

t.test('guardDestination: the decision table', async (t) => {
  const refused: Array<[string, string, number, 'LOOP' | 'NO_ROUTE']> = [
    ['node address on the outbound port (the reported loop)', NODE, 15001, 'LOOP'],
    ['inbound plaintext port', NODE, 15006, 'LOOP'],
    ['HBONE port', NODE, 15008, 'LOOP'],
    ['admin port', NODE, 15000, 'LOOP'],
    ['metrics port', NODE, 15020, 'LOOP'],
    ['readiness port', NODE, 15021, 'LOOP'],
    ['a proxy port at any address', '203.0.113.9', 15008, 'LOOP'],
    ['a configured extra port', '203.0.113.9', 9901, 'LOOP'],
    ['node address, any port', NODE, 22, 'LOOP'],
    ['node IPv6 address', '2001:db8::1', 443, 'LOOP'],
    ['loopback', '127.0.0.1', 80, 'LOOP'],
    ['loopback, anywhere in 127/8', '127.255.0.7', 80, 'LOOP'],
    ['IPv4-mapped loopback', '::ffff:127.0.0.1', 80, 'LOOP'],
    ['IPv4-mapped node address', `::ffff:${NODE}`, 80, 'LOOP'],
    ['IPv6 loopback', '::1', 80, 'LOOP'],
    ['unspecified IPv4', '0.0.0.0', 80, 'LOOP'],
    ['unspecified IPv6', '::', 80, 'LOOP'],
    ['cloud metadata', '169.254.169.254', 80, 'NO_ROUTE'],
    ['link-local, any', '169.254.1.1', 8080, 'NO_ROUTE'],
    ['IPv6 link-local', 'fe80::1', 80, 'NO_ROUTE'],
    ['IPv6 link-local with a zone', 'fe80::1%eth0', 80, 'NO_ROUTE'],
    ['IPv6 link-local, top of fe80::/10', 'febf::1', 80, 'NO_ROUTE'],
  ];
  for (const [name, ip, port, flag] of refused) {
    t.equal(guardDestination({ ip, port }, GUARD)?.flag, flag, name);
  }
  const allowed: Array<[string, string, number]> = [
    ['a pod', '10.1.0.5', 8080],
    ['another node, ordinary port', '192.0.2.2', 22],
    ['the internet', '203.0.113.9', 443],
    ['just outside link-local', '169.255.0.1', 80],
    ['IPv6 outside fe80::/10', 'fec0::1', 80],
    ['IPv6 global', '2001:db8::2', 443],
  ];
  for (const [name, ip, port] of allowed) t.equal(guardDestination({ ip, port }, GUARD), undefined, name);
  t.match(guardDestination({ ip: NODE, port: 15001 }, GUARD)?.reason, /refused to prevent a loop: 192\.0\.2\.1:15001 is proxy port 15001/);
  t.match(guardDestination({ ip: '169.254.169.254', port: 80 }, GUARD)?.reason, /link-local.*metadata/);
  // guardPort ignores the address (a service VIP is not what gets dialled).
  t.equal(guardPort({ ip: NODE, port: 80 }, GUARD), undefined);
  t.equal(guardPort({ ip: '10.96.0.1', port: 15020 }, GUARD)?.flag, 'LOOP');
  t.ok(isLinkLocal('169.254.0.0') && isLinkLocal('169.254.255.255') && !isLinkLocal('169.253.255.255'));
  // exactSelfAddresses (loopback meshes) leaves 127/8 alone except the listed address.
  const exact = loopGuard(exactSelfAddresses(['127.0.0.2']));
  t.equal(guardDestination({ ip: '127.0.2.1', port: 80 }, exact), undefined);
  t.equal(guardDestination({ ip: '127.0.0.2', port: 80 }, exact)?.flag, 'LOOP');
});

function iface(address: string): NetworkInterfaceInfo {
  const v6 = address.includes(':');
  return { address, netmask: v6 ? 'ffff:ffff:ffff:ffff::' : '255.255.255.0', family: v6 ? 'IPv6' : 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: null, ...(v6 ? { scopeid: 0 } : {}) } as NetworkInterfaceInfo;
}

t.test('NodeAddresses: every interface, re-read when stale, kube-ipvs0 ignored, a failed read keeps the set', async (t) => {
  const clock = new ManualClock();
  let reads = 0;
  let table: NodeJS.Dict<NetworkInterfaceInfo[]> = {
    lo: [iface('127.0.0.1'), iface('::1')],
    eth0: [iface('198.18.0.11'), iface('fe80::5')],
    'kube-ipvs0': [iface('10.96.0.1')],
  };
  let fail = false;
  const addrs = new NodeAddresses({ clock, refreshMs: 1000, read: () => { reads++; if (fail) throw new Error('EPERM'); return table; } });
  t.equal(reads, 1, 'read at start');
  t.ok(addrs.has('198.18.0.11'));
  t.ok(addrs.has('127.0.0.9'), 'all of 127/8, not only the listed 127.0.0.1');
  t.ok(addrs.has('0.0.0.0'));
  t.notOk(addrs.has('10.96.0.1'), 'IPVS service VIPs are not "this node"');
  t.notOk(addrs.has('198.18.0.12'));
  t.same(addrs.list(), ['127.0.0.1', '198.18.0.11', '::1', 'fe80::5']);

  // A new address is seen once the set is older than refreshMs, not before.
  table = { ...table, eth1: [iface('203.0.113.7')] };
  clock.advance(999);
  t.notOk(addrs.has('203.0.113.7'));
  t.equal(reads, 1, 'no re-read within refreshMs');
  clock.advance(1);
  t.ok(addrs.has('203.0.113.7'), 'the new interface is seen after refreshMs');
  t.equal(reads, 2);
  for (let i = 0; i < 100; i++) addrs.has('10.1.0.1');
  t.equal(reads, 2, 'one read per interval however many connections ask');

  // An address that went away stops counting; a failed read keeps the last good set.
  table = { lo: table.lo, eth0: table.eth0 };
  clock.advance(1000);
  t.notOk(addrs.has('203.0.113.7'));
  fail = true;
  clock.advance(1000);
  t.ok(addrs.has('198.18.0.11'), 'kept after a failed read');
  t.equal(reads, 4);
  t.equal(clock.armed.length, 0, 'NodeAddresses arms no timers');
});

// ---- the listeners, on a loopback mesh whose node-a "is" 127.0.0.2 ----

const sink = new LogLines();
const { lines } = sink;
let demo: DemoMesh;
const T = { timeout: 30_000 };

t.test('listeners', async (t) => {
  demo = await startDemoMesh({ logger: pino({ level: 'info' }, sink) });
  t.teardown(() => demo.close());
  const nodeA = () => demo.mesh.node('node-a');
  const nodeB = () => demo.mesh.node('node-b');
  /** Every connection node-a's outbound accounted for (a self-dial would add more). */
  const outboundSeen = async () => (await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { reporter: 'source' }))
    + (await metricSum(nodeA().registry, 'istio_tcp_connections_opened_total', { reporter: 'source' }));

  await t.test('outbound (15001): the node\'s own address and link-local are reset, counted, never dialled', T, async (t) => {
    const before = await outboundSeen();
    const targets = [
      { ip: IP.nodeA, port: nodeA().ports.outbound },
      { ip: IP.nodeA, port: nodeA().ports.plaintext },
      { ip: IP.nodeA, port: nodeA().ports.inbound },
      { ip: IP.nodeA, port: demo.ports.echo },
      { ip: IP.echo1, port: 15008 },
      { ip: '169.254.169.254', port: 80 },
    ];
    for (const dst of targets) {
      const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, dst), 'x');
      t.equal(e.error, 'ECONNRESET', `${dst.ip}:${dst.port} is reset`);
    }
    t.equal(await outboundSeen() - before, targets.length, 'exactly one accounted connection per client connection: nothing was dialled');
    t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { reporter: 'source', response_flags: 'LOOP' }), 5);
    t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { reporter: 'source', response_flags: 'NO_ROUTE' }), 1);
    // Normal traffic is untouched.
    const ok = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 });
    t.equal((await roundTrip(ok, Buffer.from('still fine'))).toString(), 'still fine');
    ok.end();
    await ending(ok);
  });

  await t.test('inbound plaintext (15006): a proxy port or the node\'s address is reset, never dialled', T, async (t) => {
    const before = await metricSum(nodeB().registry, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' });
    for (const dst of [{ ip: IP.echo1, port: 15001 }, { ip: IP.echo1, port: 15020 }, { ip: IP.nodeB, port: nodeB().ports.plaintext }, { ip: IP.nodeB, port: 22 }]) {
      const e = await sendAndEnd(demo.mesh.connectPlaintext('node-b', IP.legacy, dst), 'x');
      t.equal(e.error, 'ECONNRESET', `${dst.ip}:${dst.port}`);
    }
    t.equal(await metricSum(nodeB().registry, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' }) - before, 4);
    const ok = await sendAndEnd(demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo }), 'plain');
    t.equal(ok.received.toString(), 'plain');
  });

  await t.test('a flood of refusals: every one counted, only a few access-log lines', T, async (t) => {
    const loopLines = () => lines.filter((l) => l.msg === 'connection complete' && l.error === 'LOOP' && l.node === 'node-a');
    const countBefore = await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' });
    const N = 200;
    for (let i = 0; i < N; i += 20) {
      await Promise.all(Array.from({ length: 20 }, () => sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.nodeA, port: nodeA().ports.outbound }), 'x')));
    }
    t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' }) - countBefore, N, 'all counted');
    // The limiter lets 5 lines through, then 1 per 2 s (its refill is unit-tested with a
    // manual clock). N / 4 lines would take 90 s of refill since this file's first
    // refusal, more than the three subtests' timeouts allow: only a limiter that lets
    // more through can exceed it (without one: a line per refusal).
    t.ok(loopLines().length <= N / 4, `${loopLines().length} LOOP lines written for ${N + 5} refusals (at most ${N / 4})`);
    t.equal(loopLines()[0]?.level, 40, 'a loop is logged as a warning');
    // One refusal at a time until one is let through again: that line reports the
    // refusals dropped before it, so every refusal is a line or counted in one.
    const refusals = () => metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { reporter: 'source', response_flags: 'LOOP' });
    const accounted = () => loopLines().reduce((n, l) => n + 1 + ((l.suppressed as number | undefined) ?? 0), 0);
    await waitFor('a LOOP line that accounts for every refusal before it', async () => {
      if (accounted() === await refusals()) return true;
      await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.nodeA, port: nodeA().ports.outbound }), 'x');
      return false;
    }, { timeoutMs: 20_000, intervalMs: 300 });
    t.ok(loopLines().some((l) => ((l.suppressed as number | undefined) ?? 0) > 0), 'a line reports the suppressed count');
  });
});
