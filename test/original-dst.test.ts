import t from 'tap';
import { isWeftError } from '../src/lib/errors';
import { OriginalDstResolver, parseConntrack } from '../src/ztunnel/original-dst';
import { canonicalIp } from '../src/lib/address';

// Captured from /proc/self/net/nf_conntrack on the reference machine (Linux 6.18,
// iptables-nft): an outbound capture (pod → 203.0.113.2:8080 DNAT'ed to node:15001),
// IPv4 and IPv6 DNAT over loopback in TIME_WAIT, plus hand-made UDP and ICMP lines in
// the kernel's format.
const CAPTURED = [
  'ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.11 dst=203.0.113.2 sport=41406 dport=8080 src=203.0.113.1 dst=198.51.100.11 sport=15001 dport=41406 [ASSURED] mark=0 zone=0 use=2',
  'ipv6     10 tcp      6 119 TIME_WAIT src=0000:0000:0000:0000:0000:0000:0000:0001 dst=0000:0000:0000:0000:0000:0000:0000:0001 sport=52454 dport=81 src=0000:0000:0000:0000:0000:0000:0000:0001 dst=0000:0000:0000:0000:0000:0000:0000:0001 sport=15001 dport=52454 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 119 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=43376 dport=81 src=127.0.0.1 dst=127.0.0.1 sport=15001 dport=43376 [ASSURED] mark=0 zone=0 use=2',
  'ipv4     2 tcp      6 117 SYN_SENT src=198.51.100.10 dst=198.51.100.200 sport=40000 dport=80 [UNREPLIED] src=198.51.100.200 dst=198.51.100.10 sport=80 dport=40000 mark=0 zone=0 use=2',
  'ipv4     2 udp      17 29 src=198.51.100.10 dst=198.51.100.53 sport=5353 dport=53 [UNREPLIED] src=198.51.100.53 dst=198.51.100.10 sport=53 dport=5353 mark=0 zone=0 use=2',
  'ipv4     2 icmp     1 29 src=198.51.100.10 dst=203.0.113.2 type=8 code=0 id=7 src=203.0.113.2 dst=198.51.100.10 type=0 code=0 id=7 mark=0 zone=0 use=2',
  '',
].join('\n');

t.test('parser reads original and reply tuples, IPv4 and IPv6', async (t) => {
  const entries = parseConntrack(CAPTURED);
  t.equal(entries.length, 5, 'ICMP (no ports) and the blank line are skipped');
  t.same(entries[0], {
    family: 'ipv4', protocol: 'tcp', state: 'ESTABLISHED',
    orig: { src: '198.51.100.11', dst: '203.0.113.2', sport: 41406, dport: 8080 },
    reply: { src: '203.0.113.1', dst: '198.51.100.11', sport: 15001, dport: 41406 },
  });
  t.same(entries[1]!.orig, { src: '::1', dst: '::1', sport: 52454, dport: 81 }, 'uncompressed IPv6 is canonicalised');
  t.equal(entries[1]!.family, 'ipv6');
  t.equal(entries[3]!.state, 'SYN_SENT');
  t.equal(entries[3]!.reply.sport, 80, '[UNREPLIED] between tuples is ignored');
  t.same(entries[4]!.state, undefined, 'UDP has no state');
  t.equal(parseConntrack(CAPTURED, new Set(['udp'])).length, 1, 'protocol filter');
  t.same(parseConntrack('garbage\nipv4 2 tcp 6 1 ESTABLISHED src=1.2.3.4\n'), [], 'truncated lines are skipped');
});

t.test('canonicalIp makes Node and conntrack spellings equal', async (t) => {
  t.equal(canonicalIp('::ffff:198.51.100.7'), '198.51.100.7');
  t.equal(canonicalIp('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  t.equal(canonicalIp('2001:db8::1'), '2001:db8::1');
  t.equal(canonicalIp('198.51.100.7'), '198.51.100.7');
});

/** A readFile stand-in whose reads complete only when the test says so. */
function controlledReads(initial: string) {
  let content = initial;
  const waiting: (() => void)[] = [];
  let reads = 0;
  return {
    set(text: string) { content = text; },
    get reads() { return reads; },
    get pendingReads() { return waiting.length; },
    /** Completes every read started so far. */
    release() { for (const w of waiting.splice(0)) w(); },
    readFile: (_path: string) => {
      reads++;
      return new Promise<string>((resolve) => { waiting.push(() => resolve(content)); });
    },
  };
}

const sock = (remotePort: number, localPort = 15001) => ({
  remoteAddress: '198.51.100.11', remotePort, localAddress: '203.0.113.1', localPort,
});
const line = (sport: number, dst: string, dport: number, state = 'ESTABLISHED', localPort = 15001) =>
  `ipv4     2 tcp      6 431999 ${state} src=198.51.100.11 dst=${dst} sport=${sport} dport=${dport} src=203.0.113.1 dst=198.51.100.11 sport=${localPort} dport=${sport} [ASSURED] mark=0 zone=0 use=2`;

t.test('resolves the original destination from the reply tuple', async (t) => {
  const r = new OriginalDstResolver({ readFile: async () => CAPTURED });
  t.same(await r.resolve(sock(41406)), { ip: '203.0.113.2', port: 8080 });
  t.same(await r.resolve({ remoteAddress: '::ffff:127.0.0.1', remotePort: 43376, localAddress: '127.0.0.1', localPort: 15001 }), { ip: '127.0.0.1', port: 81 });
  t.same(await r.resolve({ remoteAddress: '::1', remotePort: 52454, localAddress: '::1', localPort: 15001 }), { ip: '::1', port: 81 });
});

t.test('concurrent lookups share one read; lookups during a read wait for the next', async (t) => {
  const fs = controlledReads([line(1000, '203.0.113.2', 80), line(1001, '203.0.113.3', 81)].join('\n'));
  const r = new OriginalDstResolver({ readFile: fs.readFile, cacheTtlMs: 0 });
  const a = r.resolve(sock(1000));
  const b = r.resolve(sock(1001));
  await new Promise((res) => setImmediate(res));
  t.equal(fs.reads, 1, 'two lookups in one event-loop turn, one read');
  const c = r.resolve(sock(1002)); // arrives while the first read is in flight
  t.equal(fs.reads, 1, 'no second concurrent read');
  fs.set([line(1000, '203.0.113.2', 80), line(1001, '203.0.113.3', 81), line(1002, '203.0.113.4', 82)].join('\n'));
  fs.release();
  t.same(await a, { ip: '203.0.113.2', port: 80 });
  t.same(await b, { ip: '203.0.113.3', port: 81 });
  await new Promise((res) => setImmediate(res));
  await new Promise((res) => setImmediate(res));
  t.equal(fs.reads, 2, 'the late lookup got a read of its own');
  fs.release();
  t.same(await c, { ip: '203.0.113.4', port: 82 });
});

t.test('entries seen by a read answer later lookups from the cache, once', async (t) => {
  let now = 1000;
  let reads = 0;
  const text = [line(2000, '203.0.113.2', 80), line(2001, '203.0.113.3', 81), line(2002, '203.0.113.5', 83, 'TIME_WAIT')].join('\n');
  const r = new OriginalDstResolver({ readFile: async () => { reads++; return text; }, now: () => now, cacheTtlMs: 1000 });
  await r.resolve(sock(2000));
  t.equal(reads, 1);
  t.same(await r.resolve(sock(2001)), { ip: '203.0.113.3', port: 81 }, 'served from the cache');
  t.equal(reads, 1);
  t.equal(r.stats.cacheHits, 1);
  await r.resolve(sock(2001));
  t.equal(reads, 2, 'a cached entry is claimed once; asking again reads afresh');
  await r.resolve(sock(2002));
  t.equal(reads, 3, 'closing-state entries are never cached (their tuple may be reused)');
  now += 5000;
  await r.resolve(sock(2000));
  t.equal(reads, 4, 'expired cache is not used');
});

t.test('a miss is retried once with a fresh read', async (t) => {
  let reads = 0;
  const r = new OriginalDstResolver({
    retryDelayMs: 1,
    readFile: async () => (++reads === 1 ? '' : line(3000, '203.0.113.9', 99)),
  });
  t.same(await r.resolve(sock(3000)), { ip: '203.0.113.9', port: 99 });
  t.equal(reads, 2);
  t.equal(r.stats.retries, 1);
});

t.test('a connection absent from conntrack is WEFT_ORIGINAL_DST_UNKNOWN with a hint', async (t) => {
  const r = new OriginalDstResolver({ retryDelayMs: 1, readFile: async () => CAPTURED });
  const err = await r.resolve(sock(4242)).catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_ORIGINAL_DST_UNKNOWN'));
  t.match((err as Error).message, /198\.51\.100\.11:4242 -> 203\.0\.113\.1:15001.*node netns/);
  t.equal(r.stats.misses, 1);
});

t.test('unreadable conntrack and closed sockets fail with a hint', async (t) => {
  const missing = new OriginalDstResolver({ path: '/nonexistent/weft-nf_conntrack' });
  const e1 = await missing.resolve(sock(1)).catch((e: unknown) => e);
  t.ok(isWeftError(e1, 'WEFT_ORIGINAL_DST_UNKNOWN'));
  t.match((e1 as Error).message, /modprobe nf_conntrack/);
  const e2 = await missing.resolve({ remotePort: 1 }).catch((e: unknown) => e);
  t.ok(isWeftError(e2, 'WEFT_ORIGINAL_DST_UNKNOWN'));
  t.match((e2 as Error).message, /closed/);
});

t.test('close() rejects lookups waiting for a retry', async (t) => {
  const r = new OriginalDstResolver({ retryDelayMs: 60_000, readFile: async () => '' });
  const p = r.resolve(sock(5000)).catch((e: unknown) => e);
  await new Promise((res) => setTimeout(res, 10));
  r.close();
  t.ok(isWeftError(await p, 'WEFT_ORIGINAL_DST_UNKNOWN'));
});

t.test('figure: one lookup against a 100k-entry table', async (t) => {
  const big: string[] = [];
  for (let i = 0; i < 100_000; i++) {
    big.push(`ipv4     2 tcp      6 431999 ESTABLISHED src=10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} dst=192.0.2.1 sport=${1024 + (i % 60000)} dport=443 src=192.0.2.1 dst=10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} sport=443 dport=${1024 + (i % 60000)} [ASSURED] mark=0 zone=0 use=2`);
  }
  big.push(line(6000, '203.0.113.7', 7));
  const text = big.join('\n');
  const r = new OriginalDstResolver({ readFile: async () => text });
  const started = process.hrtime.bigint();
  t.same(await r.resolve(sock(6000)), { ip: '203.0.113.7', port: 7 });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.comment(`parse+match of ${big.length} entries (${(text.length / 1e6).toFixed(1)} MB): ${ms.toFixed(1)} ms`);
});

t.test('a reader that throws, or text that breaks the parser, fails the lookups instead of crashing or hanging', async (t) => {
  const throwing = new OriginalDstResolver({ readFile: () => { throw new Error('boom'); } });
  const e1 = await throwing.resolve(sock(2000)).then(() => undefined, (err: unknown) => err);
  t.ok(isWeftError(e1) && e1.code === 'WEFT_ORIGINAL_DST_UNKNOWN', 'a synchronous throw rejects the lookup');
  // Not a string: the parser itself throws, after the read succeeded.
  const broken = new OriginalDstResolver({ readFile: async () => ({}) as unknown as string });
  const e2 = await broken.resolve(sock(2001)).then(() => undefined, (err: unknown) => err);
  t.ok(isWeftError(e2) && e2.code === 'WEFT_ORIGINAL_DST_UNKNOWN', 'a parser failure rejects the lookup');
  // And the resolver keeps working afterwards.
  let text: string | object = {};
  const recovering = new OriginalDstResolver({ readFile: async () => text as string });
  await recovering.resolve(sock(1000)).catch(() => undefined);
  text = line(1000, '203.0.113.2', 80);
  t.same(await recovering.resolve(sock(1000)), { ip: '203.0.113.2', port: 80 });
});
