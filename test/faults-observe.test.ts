// The lab observers shared by the fault suite and the e2e tests (src/faults/observe.ts,
// src/faults/wire.ts): which samples a label filter sums and what "no sample" is; a
// namespace's rules without counters; tcpdump in a namespace, as lines or a pcap file.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureRules, counterSum, metricSum } from '../src/faults/observe';
import { Tcpdump } from '../src/faults/wire';
import { createTopology, execIn, netnsSkipReason } from './helpers/netns';

const skip = netnsSkipReason();

/** Sends `n` UDP datagrams to 127.0.0.1:9 (discard) inside `netns`. */
async function udp(netns: string, n: number): Promise<void> {
  const script = `const s = require('node:dgram').createSocket('udp4'); let left = ${n};
const send = () => s.send('x', 9, '127.0.0.1', () => (--left > 0 ? send() : s.close())); send();`;
  await execIn(netns, process.execPath, ['-e', script]);
}

const TEXT = [
  '# HELP istio_tcp_connections_opened_total Connections opened',
  '# TYPE istio_tcp_connections_opened_total counter',
  'istio_tcp_connections_opened_total{reporter="source",response_flags="-"} 3',
  'istio_tcp_connections_opened_total{reporter="destination",response_flags="-"} 4',
  'istio_tcp_connections_opened_total_extra{reporter="source"} 100',
  'nodejs_heap_size_used_bytes 2048',
].join('\n');

t.test('metricSum: the matching samples of that metric only; NaN when none matches', async (t) => {
  t.equal(metricSum(TEXT, 'istio_tcp_connections_opened_total'), 7, 'every series, not a longer name');
  t.equal(metricSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'source' }), 3);
  t.equal(metricSum(TEXT, 'nodejs_heap_size_used_bytes'), 2048, 'a metric without labels');
  t.ok(Number.isNaN(metricSum(TEXT, 'istio_tcp_connections_failed_total')), 'absent: NaN, not a made-up 0');
  t.ok(Number.isNaN(metricSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'nobody' })));
});

t.test('counterSum: the same sum, but 0 for a counter nothing was counted in yet', async (t) => {
  t.equal(counterSum(TEXT, 'istio_tcp_connections_opened_total', { reporter: 'destination' }), 4);
  t.equal(counterSum(TEXT, 'istio_tcp_connections_failed_total', { response_flags: 'DENY' }), 0);
});

t.test('captureRules: every table of both families, without counters', { skip }, async (t) => {
  const topo = await createTopology(t);
  const ns = await topo.addNetns('obs');
  const empty = await captureRules(ns);
  await execIn(ns, 'iptables', ['-t', 'nat', '-N', 'WEFT-TEST']);
  await execIn(ns, 'ip6tables', ['-t', 'filter', '-A', 'INPUT', '-p', 'tcp', '--dport', '7', '-j', 'DROP']);
  const rules = await captureRules(ns);
  t.match(rules, /^:WEFT-TEST -$/m, 'an IPv4 nat chain, its counters gone');
  t.match(rules, /^-A INPUT -p tcp -m tcp --dport 7 -j DROP$/m, 'an IPv6 filter rule');
  t.notMatch(rules, /^#|\[\d+:\d+\]/m, 'no comment (time stamps), no packet counts');
  t.not(rules, empty);
  await udp(ns, 1);
  t.equal(await captureRules(ns), rules, 'traffic changes no byte of it');
});

t.test('Tcpdump: a line per matching packet, or a pcap file; stop is idempotent', { skip }, async (t) => {
  const topo = await createTopology(t);
  const ns = await topo.addNetns('dump');
  const dir = mkdtempSync(join(tmpdir(), 'weft-dump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines = new Tcpdump('lo', 'udp dst port 9', { netns: ns });
  const pcap = join(dir, 'lo.pcap');
  const file = new Tcpdump('lo', 'udp dst port 9', { netns: ns, writeTo: pcap });
  t.teardown(() => Promise.all([lines.stop(), file.stop()]));
  await Promise.all([lines.started(), file.started()]);
  await udp(ns, 2);
  const seen = await lines.stop();
  t.equal(seen.filter((l) => /127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.9: UDP/.test(l)).length, 2, 'both datagrams, one line each');
  t.same(await lines.stop(), seen, 'a second stop returns the same lines');
  t.same(await file.stop(), [], 'nothing printed when writing a file');
  t.ok(readFileSync(pcap).length > 24, 'the pcap file holds packets, not just its header');
  await t.rejects(new Tcpdump('weft-nosuch0', 'tcp', { netns: ns }).started(), /exited .* before listening/, 'a missing interface fails at once');
});
