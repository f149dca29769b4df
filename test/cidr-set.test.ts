// CidrSet (cidr.ts): a fixed set of CIDRs of both families checked in one lookup;
// the loop guard's loopback and link-local sets are built on it.
import t from 'tap';
import { isIP } from 'node:net';
import { CidrSet, cidrContains } from '../src/authz/cidr';
import { ipv4Number } from '../src/lib/address';

t.test('members of either family; IPv4-mapped IPv6 is its IPv4 address', async (t) => {
  const set = new CidrSet(['10.0.0.0/8', '192.168.1.1', 'fd00::/8', '::1']);
  for (const ip of ['10.0.0.0', '10.255.255.255', '192.168.1.1', '::ffff:10.1.2.3', 'fd12::1', '::1']) t.ok(set.has(ip), ip);
  for (const ip of ['11.0.0.0', '192.168.1.2', 'fe80::1', '::2', '', 'nonsense', '10.0.0.0/8']) t.notOk(set.has(ip), ip || '(empty)');
});

t.test('agrees with cidrContains', async (t) => {
  const cidrs = ['127.0.0.0/8', '0.0.0.0', '::1', '::', '169.254.0.0/16', 'fe80::/10'];
  const set = new CidrSet(cidrs);
  for (const ip of ['127.0.0.1', '0.0.0.0', '0.0.0.1', '::', '::1', '169.254.169.254', 'fe80::abcd', 'febf::1', 'fec0::1', '8.8.8.8']) {
    t.equal(set.has(ip), cidrs.some((c) => cidrContains(c, ip)), ip);
  }
});

t.test('a bad CIDR is refused, naming it', async (t) => {
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0/8', 'x']) {
    t.throws(() => new CidrSet([bad]), { code: 'WEFT_CONFIG_INVALID', message: new RegExp(`"${bad.replace(/[./]/g, '\\$&')}" is not a CIDR`) });
  }
});

t.test('IPv4 is compared as numbers: prefix edges agree with cidrContains (BlockList)', async (t) => {
  const cidrs = ['0.0.0.0/0', '10.0.0.0/31', '172.16.0.0/12', '192.168.1.128/25', '255.255.255.255', '100.64.0.1/10'];
  // A fixed pseudo-random walk plus the edges of every range.
  let x = 12345;
  const next = () => (x = (x * 1103515245 + 12345) >>> 0);
  const ips = ['0.0.0.0', '255.255.255.255', '10.0.0.0', '10.0.0.1', '10.0.0.2', '9.255.255.255', '172.15.255.255', '172.16.0.0', '172.31.255.255', '172.32.0.0',
    '192.168.1.127', '192.168.1.128', '192.168.1.255', '192.168.2.0', '100.63.255.255', '100.64.0.0', '100.127.255.255', '100.128.0.0'];
  for (let i = 0; i < 200; i++) { const n = next(); ips.push([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')); }
  for (const c of cidrs.slice(1)) {
    const set = new CidrSet([c]);
    for (const ip of ips) if (set.has(ip) !== cidrContains(c, ip)) t.fail(`${ip} in ${c}: ${set.has(ip)}`);
  }
  const all = new CidrSet(cidrs);
  for (const ip of ips) if (!all.has(ip)) t.fail(`${ip} in 0.0.0.0/0`);
  t.notOk(new CidrSet(['10.0.0.0/8']).has('fd00::1'), 'IPv6 is never in an IPv4 range');
  t.pass(`${ips.length} addresses`);
});

t.test('ipv4Number reads exactly what isIP calls IPv4', async (t) => {
  t.equal(ipv4Number('0.0.0.0'), 0);
  t.equal(ipv4Number('255.255.255.255'), 0xffffffff);
  t.equal(ipv4Number('10.1.2.3'), 0x0a010203);
  for (const s of ['', '1', '1.2.3', '1.2.3.4.5', '1.2.3.', '.1.2.3', '1..2.3', '256.1.1.1', '1.2.3.256', '01.2.3.4', '1.2.3.04', '1.2.3.00', '1.2.3.4 ', ' 1.2.3.4',
    '1.2.3.a', '::1', '::ffff:1.2.3.4', '1.2.3.4/8', '1234.1.1.1', '0.0.0.0', '1.0.0.10', '100.200.250.99']) {
    t.equal(ipv4Number(s) !== undefined, isIP(s) === 4, JSON.stringify(s));
  }
});
