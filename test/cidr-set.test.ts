// CidrSet (cidr.ts): a fixed set of CIDRs of both families checked in one lookup;
// the loop guard's loopback and link-local sets are built on it.
import t from 'tap';
import { CidrSet, cidrContains } from '../src/authz/cidr';

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
