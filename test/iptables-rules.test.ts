import t, { type Test } from 'tap';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../src/lib/errors';
import { byFamily, generateCaptureGuardRules, generateCaptureRules } from '../src/iptables/rules';
import { generateServiceRules } from '../src/iptables/services';
import { compareIp } from '../src/iptables/ip';

// Golden files pin the exact rule text. After an intended change, regenerate with
// WEFT_UPDATE_GOLDEN=1 npx tap test/iptables-rules.test.ts and review the diff.
const goldenDir = join(__dirname, 'golden', 'iptables');
const update = process.env['WEFT_UPDATE_GOLDEN'] === '1';

function golden(t: Test, name: string, actual: string): void {
  const file = join(goldenDir, name);
  if (update) {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(file, actual);
  }
  t.equal(actual, readFileSync(file, 'utf8'), `matches golden ${name}`);
}

const node = '203.0.113.1';

function throwsConfig(t: Test, fn: () => unknown, re: RegExp, name: string): void {
  try {
    fn();
    t.fail(`${name}: did not throw`);
  } catch (err) {
    t.ok(isWeftError(err, 'WEFT_CONFIG_INVALID'), `${name}: WEFT_CONFIG_INVALID`);
    t.match((err as Error).message, re, `${name}: message names the field`);
  }
}

t.test('capture rules: golden files', async (t) => {
  golden(t, 'capture-2-pods.rules', generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.11', '198.51.100.10'] }));
  golden(t, 'capture-empty.rules', generateCaptureRules({ nodeAddress: node, enrolledPodIps: [] }));
  golden(t, 'capture-custom-ports.rules', generateCaptureRules({
    nodeAddress: node,
    enrolledPodIps: ['198.51.100.10'],
    ports: { outbound: 25001, inboundPlaintext: 25006, hbone: 25008 },
  }));
});

t.test('capture rules are deterministic: order and duplicates of the input do not matter', async (t) => {
  const a = generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.9', '198.51.100.10', '198.51.100.100'] });
  const b = generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.100', '198.51.100.10', '198.51.100.9', '198.51.100.10'] });
  t.equal(a, b);
  // Numeric, not lexical, order.
  const pods = [...a.matchAll(/-A WEFT-PREROUTING -s (\S+)\/32/g)].map((m) => m[1]);
  t.same(pods, ['198.51.100.9', '198.51.100.10', '198.51.100.100']);
});

t.test('capture rules only touch WEFT-* chains and send enrolled sources to outbound before inbound', async (t) => {
  const text = generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.10', '198.51.100.11'] });
  for (const line of text.split('\n')) {
    const m = /^(?::|-A )(\S+)/.exec(line);
    if (m) t.match(m[1], /^WEFT-/, line);
  }
  const lines = text.split('\n');
  const lastOutbound = lines.map((l) => l.includes('-j WEFT-OUTBOUND')).lastIndexOf(true);
  const firstInbound = lines.findIndex((l) => l.includes('-j WEFT-INBOUND'));
  t.ok(lastOutbound < firstInbound, 'every outbound classification precedes inbound (enrolled→enrolled leaves via 15001)');
  t.notMatch(text, /198\.51\.100\.12/, 'a pod that is not enrolled appears nowhere');
});

t.test('capture input is validated and the bad field is named', async (t) => {
  const cases: [string, Parameters<typeof generateCaptureRules>[0], RegExp][] = [
    ['bad node address', { nodeAddress: 'node-1', enrolledPodIps: [] }, /nodeAddress/],
    ['IPv4 pod on an IPv6 node address', { nodeAddress: '2001:db8::1', enrolledPodIps: ['198.51.100.1'] }, /enrolledPodIps\[0\].*IPv6/],
    ['IPv6 pod on an IPv4 node address', { nodeAddress: node, enrolledPodIps: ['198.51.100.1', '2001:db8::5'] }, /enrolledPodIps\[1\].*IPv4/],
    ['IPv6 loopback node address', { nodeAddress: '::1', enrolledPodIps: [] }, /nodeAddress.*loopback/],
    ['IPv6 link-local node address', { nodeAddress: 'fe80::1', enrolledPodIps: [] }, /nodeAddress.*link-local/],
    ['link-local node address', { nodeAddress: '169.254.1.1', enrolledPodIps: [] }, /nodeAddress.*link-local/],
    ['bad extra node address', { nodeAddress: node, nodeAddresses: ['2001:db8::1'], enrolledPodIps: [] }, /nodeAddresses\[0\]/],
    ['extra node address is a pod', { nodeAddress: node, nodeAddresses: ['198.51.100.1'], enrolledPodIps: ['198.51.100.1'] }, /nodeAddresses/],
    ['bad pod IP', { nodeAddress: node, enrolledPodIps: ['198.51.100.1', '198.51.100.300'] }, /enrolledPodIps\[1\]/],
    ['loopback node address', { nodeAddress: '127.0.0.1', enrolledPodIps: [] }, /nodeAddress.*loopback/],
    ['node enrolled as pod', { nodeAddress: node, enrolledPodIps: [node] }, /enrolledPodIps/],
    ['port out of range', { nodeAddress: node, enrolledPodIps: [], ports: { outbound: 0, inboundPlaintext: 15006, hbone: 15008 } }, /ports\.outbound/],
    ['duplicate ports', { nodeAddress: node, enrolledPodIps: [], ports: { outbound: 15001, inboundPlaintext: 15001, hbone: 15008 } }, /distinct/],
    ['not an array', { nodeAddress: node, enrolledPodIps: '198.51.100.1' as unknown as string[] }, /enrolledPodIps/],
  ];
  for (const [name, input, re] of cases) {
    throwsConfig(t, () => generateCaptureRules(input), re, name);
  }
});

t.test('service rules: golden file', async (t) => {
  golden(t, 'services.rules', generateServiceRules([
    { vip: '198.51.100.200', port: 80, endpoints: [{ ip: '198.51.100.11', port: 8080 }, { ip: '198.51.100.10', port: 8080 }, { ip: '198.51.100.12', port: 8080 }] },
    { vip: '198.51.100.201', port: 9000, endpoints: [{ ip: '198.51.100.13', port: 9000 }] },
    { vip: '198.51.100.200', port: 443, endpoints: [] },
  ]));
  golden(t, 'services-empty.rules', generateServiceRules([]));
});

t.test('service rules give every endpoint an equal share', async (t) => {
  for (const n of [1, 2, 3, 5, 7]) {
    const endpoints = Array.from({ length: n }, (_, i) => ({ ip: `198.51.100.${i + 1}`, port: 80 }));
    const text = generateServiceRules([{ vip: '198.51.100.250', port: 80, endpoints }]);
    const rules = text.split('\n').filter((l) => l.startsWith('-A'));
    t.equal(rules.length, n);
    let remaining = 1;
    for (const rule of rules) {
      const p = Number(/--probability (\S+)/.exec(rule)?.[1] ?? 1);
      const share = remaining * p;
      remaining -= share;
      t.ok(Math.abs(share - 1 / n) < 1e-9, `share ${share} of ${n}`);
    }
    t.ok(Math.abs(remaining) < 1e-9, 'the last rule always matches');
  }
});

t.test('service rules are deterministic and validated', async (t) => {
  const a = generateServiceRules([
    { vip: '198.51.100.201', port: 80, endpoints: [{ ip: '198.51.100.2', port: 80 }, { ip: '198.51.100.1', port: 80 }] },
    { vip: '198.51.100.200', port: 80, endpoints: [{ ip: '198.51.100.3', port: 80 }] },
  ]);
  const b = generateServiceRules([
    { vip: '198.51.100.200', port: 80, endpoints: [{ ip: '198.51.100.3', port: 80 }, { ip: '198.51.100.3', port: 80 }] },
    { vip: '198.51.100.201', port: 80, endpoints: [{ ip: '198.51.100.1', port: 80 }, { ip: '198.51.100.2', port: 80 }] },
  ]);
  t.equal(a, b);
  const bad: [string, unknown, RegExp][] = [
    ['bad vip', [{ vip: 'x', port: 80, endpoints: [] }], /services\[0\]\.vip/],
    ['bad port', [{ vip: '198.51.100.1', port: 70000, endpoints: [] }], /services\[0\]\.port/],
    ['bad endpoint', [{ vip: '198.51.100.1', port: 80, endpoints: [{ ip: '198.51.100.2', port: -1 }] }], /services\[0\]\.endpoints\[0\]\.port/],
    ['duplicate vip:port', [{ vip: '198.51.100.1', port: 80, endpoints: [] }, { vip: '198.51.100.1', port: 80, endpoints: [] }], /services\[1\]/],
  ];
  for (const [name, input, re] of bad) {
    throwsConfig(t, () => generateServiceRules(input as never), re, name);
  }
});

t.test('capture rules for service VIPs with an enrolled endpoint on this node', async (t) => {
  const input = {
    nodeAddress: node,
    enrolledPodIps: ['198.51.100.10'],
    capturedServices: [
      { vip: '198.51.100.201', port: 80 },
      { vip: '198.51.100.200', port: 9000 },
      { vip: '198.51.100.200', port: 80 },
      { vip: '198.51.100.201', port: 80 },
    ],
  };
  const text = generateCaptureRules(input);
  golden(t, 'capture-services.rules', text);
  t.equal(text, generateCaptureRules({ ...input, capturedServices: [...input.capturedServices].reverse() }), 'order and duplicates do not matter');
  const vipRules = text.split('\n').filter((l) => / -d 198\.51\.100\.20\d\/32 /.test(l));
  t.same(vipRules.map((l) => /-d (\S+)\/32 -p tcp -m tcp --dport (\d+)/.exec(l)!.slice(1).join(':')),
    ['198.51.100.200:80', '198.51.100.200:9000', '198.51.100.201:80'], 'one rule per VIP:port, numerically sorted');
  t.ok(vipRules.every((l) => l.startsWith('-A WEFT-PREROUTING ') && l.endsWith(`-j DNAT --to-destination ${node}:15006`)), 'straight to inbound plaintext');
  const lines = text.split('\n');
  const lastOutbound = lines.map((l) => l.includes('-j WEFT-OUTBOUND')).lastIndexOf(true);
  t.ok(lines.indexOf(vipRules[0]!) > lastOutbound, 'after every enrolled-source rule: enrolled clients keep going to 15001');
  const custom = generateCaptureRules({ ...input, ports: { outbound: 25001, inboundPlaintext: 25006, hbone: 25008 } });
  t.match(custom, /--dport 80 .* -j DNAT --to-destination 203\.0\.113\.1:25006/, 'honours a custom inbound plaintext port');
  t.equal(generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.10'], capturedServices: [] }),
    generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.10'] }), 'an empty list is the same as none');

  const bad: [string, unknown, RegExp][] = [
    ['not an array', '198.51.100.200:80', /capturedServices=/],
    ['bad vip', [{ vip: 'echo', port: 80 }], /capturedServices\[0\]\.vip/],
    ['IPv6 vip on an IPv4 node', [{ vip: '2001:db8::1', port: 80 }], /capturedServices\[0\]\.vip.*IPv4/],
    ['bad port', [{ vip: '198.51.100.200', port: 80 }, { vip: '198.51.100.200', port: 0 }], /capturedServices\[1\]\.port/],
    ['vip is the node', [{ vip: node, port: 80 }], /capturedServices\[0\]\.vip.*not the node/],
    ['vip is an enrolled pod', [{ vip: '198.51.100.10', port: 80 }], /capturedServices\[0\]\.vip.*enrolled pod/],
    ['missing entry', [undefined], /capturedServices\[0\]\.vip/],
  ];
  for (const [name, capturedServices, re] of bad) {
    throwsConfig(t, () => generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['198.51.100.10'], capturedServices: capturedServices as never }), re, name);
  }
});

t.test('compareIp orders numerically', async (t) => {
  t.same(['10.0.0.10', '9.255.255.255', '10.0.0.9'].sort(compareIp), ['9.255.255.255', '10.0.0.9', '10.0.0.10']);
});

t.test('IPv6 orders numerically, whatever the spelling, after IPv4', async (t) => {
  t.same(['2001:db8::1:0', 'FD00::1', '2001:DB8::ff', '10.0.0.1', '2001:db8:0:0::2'].sort(compareIp),
    ['10.0.0.1', '2001:db8:0:0::2', '2001:DB8::ff', '2001:db8::1:0', 'FD00::1']);
  t.equal(compareIp('2001:db8::1', '2001:0DB8:0:0:0:0:0:1'), 0, 'two spellings of one address');
});

t.test('an address has one spelling and one family: an IPv4-mapped address is IPv4', async (t) => {
  t.same(byFamily(['::ffff:198.51.100.10', 'FD00:0:0::A', '198.51.100.11']), { 4: ['198.51.100.10', '198.51.100.11'], 6: ['fd00::a'] });
  const text = generateCaptureRules({ nodeAddress: '::ffff:203.0.113.1', enrolledPodIps: ['::ffff:198.51.100.10'] });
  t.match(text, /^# weft capture rules \(IPv4\): node 203\.0\.113\.1,/, 'IPv4 rules for an IPv4-mapped node address');
  t.match(text, /-A WEFT-PREROUTING -s 198\.51\.100\.10\/32 /);
  throwsConfig(t, () => generateCaptureGuardRules({ family: 6, enrolledPodIps: ['::ffff:198.51.100.1'], captured: true }),
    /^invalid enrolledPodIps\[0\]="::ffff:198\.51\.100\.1": expected an IPv6 address .*; ::ffff:198\.51\.100\.1 is IPv4-mapped, which is the IPv4 address 198\.51\.100\.1: put 198\.51\.100\.1 in the IPv4 rules$/,
    'an IPv4-mapped address given as IPv6 is refused as what it is');
});

t.test('a family mismatch is refused with what to do about it', async (t) => {
  throwsConfig(t, () => generateCaptureRules({ nodeAddress: node, enrolledPodIps: ['2001:db8::5'] }),
    /the rules follow nodeAddress, an IPv4 address: capture the IPv6 addresses with a separate call whose nodeAddress is the node's IPv6 address \(byFamily/, 'capture');
  throwsConfig(t, () => generateCaptureRules({ nodeAddress: node, enrolledPodIps: [], capturedServices: [{ vip: 'fd00::50', port: 80 }] }),
    /capturedServices\[0\]\.vip.*separate call whose nodeAddress is the node's IPv6 address/, 'captured service');
  throwsConfig(t, () => generateCaptureGuardRules({ family: 6, enrolledPodIps: ['198.51.100.1'], captured: true }),
    /^invalid enrolledPodIps\[0\]="198\.51\.100\.1": expected an IPv6 address such as 2001:db8::7; these rules are for IPv6 only \(ip6tables\): generate the IPv4 addresses' rules in a separate call \(byFamily splits a mixed list\)$/,
    'guard: no nodeAddress there to name');
  throwsConfig(t, () => generateServiceRules([{ vip: 'fd00::50', port: 80, endpoints: [] }]),
    /services\[0\]\.vip.*IPv4 only: give the service an IPv4 VIP and IPv4 endpoints$/, 'services');
});

t.test('the node addresses and link-local are never captured from an enrolled pod (RETURN before the DNAT)', async (t) => {
  const text = generateCaptureRules({ nodeAddress: node, nodeAddresses: ['192.0.2.9', node], enrolledPodIps: ['198.51.100.10'] });
  golden(t, 'capture-node-addresses.rules', text);
  const outbound = text.split('\n').filter((l) => l.startsWith('-A WEFT-OUTBOUND '));
  const dnat = outbound.findIndex((l) => l.includes('-j DNAT'));
  t.same(outbound.slice(0, dnat).map((l) => /-d (\S+) /.exec(l)?.[1]), ['192.0.2.9/32', `${node}/32`, '169.254.0.0/16'],
    'each node address once (numeric order), then link-local, all before the DNAT to 15001');
  t.ok(outbound.slice(0, dnat).every((l) => l.endsWith('-j RETURN') && !l.includes('--dport')), 'every port, not only the proxy ports');
  t.match(generateCaptureRules({ nodeAddress: '2001:db8::1', enrolledPodIps: [] }), /-A WEFT-OUTBOUND -d fe80::\/10 .* -j RETURN/, 'fe80::/10 for IPv6');
});

t.test('IPv6: the same rules from the same generator, for ip6tables', async (t) => {
  const input = {
    nodeAddress: '2001:DB8::1',
    nodeAddresses: ['2001:db8:0:0::2'],
    enrolledPodIps: ['2001:db8:1::b', '2001:db8:1::a', '2001:db8:1:0::a'],
    capturedServices: [{ vip: 'fd00:7eff::50', port: 80 }],
  };
  const v6 = generateCaptureRules(input);
  golden(t, 'capture-ipv6.rules', v6);
  t.match(v6, /^# weft capture rules \(IPv6\): node 2001:db8::1,/, 'canonical (RFC 5952) addresses, as ip6tables-save prints them');
  t.match(v6, /-s 2001:db8:1::a\/128 .* -j WEFT-OUTBOUND\n-A WEFT-PREROUTING -s 2001:db8:1::b\/128/, 'numeric order, duplicates merged, /128 hosts');
  t.match(v6, /-j DNAT --to-destination \[2001:db8::1\]:15001/, 'bracketed DNAT target');
  const v4 = generateCaptureRules({ nodeAddress: node, nodeAddresses: ['203.0.113.2'], enrolledPodIps: ['198.51.100.10', '198.51.100.11'], capturedServices: [{ vip: '198.51.100.50', port: 80 }] });
  const shape = (text: string) => text.split('\n').slice(1).map((l) => l.replace(/\[?[0-9a-f.:]+\]?(\/\d+|:\d+)?/g, 'X'));
  t.same(shape(v6), shape(v4), 'line for line the IPv4 rules, addresses aside');
});

t.test('guard rules: new TCP forwarded to an enrolled pod is refused (golden, both families)', async (t) => {
  golden(t, 'guard-ipv4.rules', generateCaptureGuardRules({ family: 4, enrolledPodIps: ['198.51.100.11', '198.51.100.10'], captured: true }));
  golden(t, 'guard-ipv6-uncaptured.rules', generateCaptureGuardRules({ family: 6, enrolledPodIps: ['2001:db8:1::a'], captured: false }));
  const empty = generateCaptureGuardRules({ family: 6, enrolledPodIps: [], captured: true });
  t.same(empty.split('\n').filter((l) => l.startsWith('-A')), [], 'no pods, no rules (the chain and jump still exist)');
  throwsConfig(t, () => generateCaptureGuardRules({ family: 4, enrolledPodIps: ['2001:db8::1'], captured: true }), /enrolledPodIps\[0\]/, 'family mismatch');
  throwsConfig(t, () => generateCaptureGuardRules({ family: 5 as never, enrolledPodIps: [], captured: true }), /family/, 'bad family');
});
