import t, { type Test } from 'tap';
import { isWeftError } from '../src/lib/errors';
import { generateCaptureRules } from '../src/iptables/rules';
import { generateServiceRules } from '../src/iptables/services';
import { IptablesApplier, createCaptureApplier, createServicesApplier, detectIptablesBackend } from '../src/iptables/apply';
import { ExecCommandRunner, type CommandRunner } from '../src/iptables/runner';
import { createTopology, netnsSkipReason } from './helpers/netns';

// The applier against real iptables, each test in its own fresh network namespace,
// so nothing here can touch the host's rules.
const skip = netnsSkipReason();
if (skip) t.plan(0, skip);

const runner = new ExecCommandRunner();
const node = '203.0.113.1';
const capture = (ips: string[]) => generateCaptureRules({ nodeAddress: node, enrolledPodIps: ips });

async function natSave(netns: string, binary = 'iptables'): Promise<string> {
  const { stdout } = await runner.run(`${binary}-save`, ['-t', 'nat'], { netns });
  // Drop the "# Generated/Completed on <time>" lines; keep the rules exactly.
  return stdout.split('\n').filter((l) => !l.startsWith('#')).join('\n');
}

async function freshNetns(t: Test): Promise<string> {
  const topo = await createTopology(t);
  return topo.addNetns('ipt');
}

t.test('runner: output, failures and netns', async (t) => {
  const ok = await runner.run('sh', ['-c', 'cat; echo err >&2'], { input: 'hello' });
  t.same(ok, { stdout: 'hello', stderr: 'err\n', code: 0 });
  const failed = await runner.run('sh', ['-c', 'echo nope >&2; exit 3']).catch((e: unknown) => e);
  t.ok(isWeftError(failed, 'WEFT_COMMAND_FAILED'));
  t.match((failed as Error).message, /sh -c .*exit code 3: nope/);
  t.equal((await runner.run('sh', ['-c', 'exit 4'], { check: false })).code, 4, 'check: false returns the code');
  const missing = await runner.run('weft-no-such-command', []).catch((e: unknown) => e);
  t.ok(isWeftError(missing, 'WEFT_COMMAND_FAILED'));
  t.match((missing as Error).message, /not installed/);
  const ns = await freshNetns(t);
  const { stdout } = await runner.run('ip', ['-o', 'link'], { netns: ns });
  t.match(stdout, /lo:/);
  t.notMatch(stdout, /eth|ens|weft-br/, 'a fresh netns only has loopback');
});

t.test('backend detection', async (t) => {
  const backend = await detectIptablesBackend(runner);
  t.ok(backend === 'nft' || backend === 'legacy');
  t.comment(`iptables backend here: ${backend}`);
  t.equal(await detectIptablesBackend(runner, { binary: 'iptables-legacy' }), 'legacy');
});

for (const binary of ['iptables', 'iptables-legacy']) {
  t.test(`${binary}: apply is atomic, idempotent and keeps jumps exactly once`, async (t) => {
    const ns = await freshNetns(t);
    // A foreign rule that must survive everything we do.
    await runner.run(binary, ['-t', 'nat', '-A', 'PREROUTING', '-s', '192.0.2.1/32', '-j', 'RETURN'], { netns: ns });
    const applier = createCaptureApplier({ runner, netns: ns, binary });
    await applier.apply(capture(['198.51.100.10', '198.51.100.11']));
    const first = await natSave(ns, binary);
    await applier.apply(capture(['198.51.100.11', '198.51.100.10']));
    t.equal(await natSave(ns, binary), first, 'applying twice gives identical iptables-save output');
    t.match(first, /-A PREROUTING -j WEFT-PREROUTING\n-A PREROUTING -s 192\.0\.2\.1\/32 -j RETURN/, 'capture jump is first, foreign rule kept');
    t.equal(first.match(/-j WEFT-PREROUTING$/gm)?.length, 1);
    t.equal(first.match(/-A OUTPUT -j WEFT-OUTPUT$/gm)?.length, 1);

    await applier.apply(capture(['198.51.100.10']));
    const shrunk = await natSave(ns, binary);
    t.notMatch(shrunk, /198\.51\.100\.11/, 'a removed pod disappears from every chain');
    t.match(shrunk, /198\.51\.100\.10/);

    // Someone duplicates our jump; the next apply repairs it.
    await runner.run(binary, ['-t', 'nat', '-A', 'PREROUTING', '-j', 'WEFT-PREROUTING'], { netns: ns });
    await applier.apply(capture(['198.51.100.10']));
    t.equal(await natSave(ns, binary), shrunk, 'duplicate jump removed');
    t.same(await applier.ownedRules(), shrunk.split('\n').filter((l) => /^-A .*WEFT-/.test(l)), 'ownedRules lists our rules and jumps');

    await applier.remove();
    const after = await natSave(ns, binary);
    t.notMatch(after, /WEFT/, 'remove leaves no WEFT chain or jump');
    t.match(after, /-A PREROUTING -s 192\.0\.2\.1\/32 -j RETURN/, 'foreign rule kept');
    await applier.remove();
    t.equal(await natSave(ns, binary), after, 'remove is idempotent');
  });
}

t.test('a binary override picks the backend; IPv6 runs its ip6tables command', async (t) => {
  const ns = await freshNetns(t);
  const v6 = generateCaptureRules({ nodeAddress: '2001:db8::1', enrolledPodIps: ['2001:db8:1::a'] });
  const ran = new Set<string>();
  const recording: CommandRunner = {
    run(cmd, args, opts) {
      ran.add(cmd);
      return runner.run(cmd, args, opts);
    },
  };
  const applier = createCaptureApplier({ runner: recording, netns: ns, family: 6, binary: 'iptables-legacy' });
  await applier.apply(v6);
  t.same([...ran].sort(), ['ip6tables-legacy-restore', 'ip6tables-legacy-save'], 'the IPv6 tools of the legacy backend');
  t.match(await natSave(ns, 'ip6tables-legacy'), /-A WEFT-PREROUTING -s 2001:db8:1::a\/128 /, 'the rules are in the legacy IPv6 table');
  const byPath = createCaptureApplier({ runner, netns: ns, family: 6, binary: '/usr/sbin/iptables-legacy' });
  t.same(await byPath.check(v6), [], 'a path keeps its directory and reads the same table');
  await byPath.remove();
  t.notMatch(await natSave(ns, 'ip6tables-legacy'), /WEFT/);
  const v4 = createCaptureApplier({ runner: recording, netns: ns, family: 4, binary: 'ip6tables-nft' });
  ran.clear();
  await v4.check(capture(['198.51.100.10']));
  t.same([...ran], ['iptables-nft-save'], 'IPv4 runs the iptables command of the backend named');
});

t.test('adopting rules left by a previous ztunnel: one transaction, the jump back in first place, check() tells', async (t) => {
  const ns = await freshNetns(t);
  const old = createCaptureApplier({ runner, netns: ns });
  await old.apply(capture(['198.51.100.10']));
  // The previous process is gone (SIGKILL); meanwhile a kube-proxy (re)start put its
  // own rule at the top of PREROUTING, ahead of our jump.
  await runner.run('iptables', ['-t', 'nat', '-I', 'PREROUTING', '1', '-s', '192.0.2.1/32', '-j', 'RETURN'], { netns: ns });
  const fresh = createCaptureApplier({ runner, netns: ns });
  const wanted = capture(['198.51.100.10', '198.51.100.11']);
  t.match((await fresh.check(wanted)).join('; '), /has \d+ rule\(s\), expected \d+.*foreign rule ahead of the jump to WEFT-PREROUTING/, 'drift is reported');
  // Record every restore: adoption must be one transaction (no flush-then-fill window).
  const restores: string[] = [];
  const recording: CommandRunner = {
    run(cmd, args, opts) {
      if (cmd.endsWith('-restore')) restores.push(opts?.input ?? '');
      return runner.run(cmd, args, opts);
    },
  };
  await createCaptureApplier({ runner: recording, netns: ns }).apply(wanted);
  t.equal(restores.length, 1, 'one iptables-restore');
  t.match(restores[0], /^\*nat\n:WEFT-INBOUND[\s\S]*-D PREROUTING -j WEFT-PREROUTING[\s\S]*-I PREROUTING 1 -j WEFT-PREROUTING\nCOMMIT/, 'the chains refilled and the jump moved in the same transaction');
  const save = await natSave(ns);
  t.same(save.split('\n').filter((l) => l.startsWith('-A PREROUTING')), ['-A PREROUTING -j WEFT-PREROUTING', '-A PREROUTING -s 192.0.2.1/32 -j RETURN'], 'capture first again, foreign rule kept');
  t.same(await fresh.check(wanted), [], 'check() is clean afterwards');
  await fresh.apply(wanted);
  t.equal(await natSave(ns), save, 'and stable');
});

t.test('service chain: independent owner, runs after capture', async (t) => {
  const ns = await freshNetns(t);
  const services = createServicesApplier({ runner, netns: ns });
  const captureApplier = createCaptureApplier({ runner, netns: ns });
  // Services first: capture must still end up in front.
  await services.apply(generateServiceRules([{ vip: '198.51.100.200', port: 80, endpoints: [{ ip: '198.51.100.10', port: 8080 }, { ip: '198.51.100.11', port: 8080 }] }]));
  await captureApplier.apply(capture(['198.51.100.10']));
  const both = await natSave(ns);
  const prerouting = both.split('\n').filter((l) => l.startsWith('-A PREROUTING'));
  t.same(prerouting, ['-A PREROUTING -j WEFT-PREROUTING', '-A PREROUTING -j WEFT-SERVICES'], 'capture before services');
  t.match(both, /--probability 0\.50000000000? -j DNAT --to-destination 198\.51\.100\.10:8080/);

  await captureApplier.apply(capture(['198.51.100.11']));
  t.equal((await natSave(ns)).match(/-j DNAT --to-destination 198\.51\.100\.1[01]:8080/g)?.length, 2, 're-applying capture leaves the service chain alone');
  await captureApplier.remove();
  const onlyServices = await natSave(ns);
  t.notMatch(onlyServices, /WEFT-(PREROUTING|OUTPUT|INBOUND|OUTBOUND)/);
  t.match(onlyServices, /-A PREROUTING -j WEFT-SERVICES/, 'removing capture keeps services');
  await services.remove();
  t.notMatch(await natSave(ns), /WEFT/);
});

t.test('owned chains the text no longer declares are deleted', async (t) => {
  const ns = await freshNetns(t);
  const applier = new IptablesApplier({
    runner, netns: ns, chains: ['WEFT-TEST-A', 'WEFT-TEST-B'],
    jumps: [{ from: 'PREROUTING', to: 'WEFT-TEST-A', position: 'first' }, { from: 'OUTPUT', to: 'WEFT-TEST-B', position: 'last' }],
  });
  await applier.apply('*nat\n:WEFT-TEST-A - [0:0]\n:WEFT-TEST-B - [0:0]\n-A WEFT-TEST-A -j WEFT-TEST-B\n-A WEFT-TEST-B -s 192.0.2.7/32 -j RETURN\nCOMMIT\n');
  t.match(await natSave(ns), /-A OUTPUT -j WEFT-TEST-B/);
  await applier.apply('*nat\n:WEFT-TEST-A - [0:0]\n-A WEFT-TEST-A -s 192.0.2.8/32 -j RETURN\nCOMMIT\n');
  const save = await natSave(ns);
  t.notMatch(save, /WEFT-TEST-B/, 'chain B and its jump are gone');
  t.match(save, /-A WEFT-TEST-A -s 192\.0\.2\.8\/32 -j RETURN/);
  await applier.remove();
  t.notMatch(await natSave(ns), /WEFT/);
});

t.test('bad rule text is refused before anything is touched', async (t) => {
  const ns = await freshNetns(t);
  const applier = createCaptureApplier({ runner, netns: ns });
  await applier.apply(capture(['198.51.100.10']));
  const before = await natSave(ns);
  const refusals: [string, string][] = [
    ['foreign chain', '*nat\n:WEFT-SERVICES - [0:0]\nCOMMIT\n'],
    ['built-in chain', '*nat\n:WEFT-PREROUTING - [0:0]\n-A PREROUTING -j ACCEPT\nCOMMIT\n'],
    ['other verbs', '*nat\n:WEFT-PREROUTING - [0:0]\n-F PREROUTING\nCOMMIT\n'],
    ['other table', '*filter\n:WEFT-PREROUTING - [0:0]\nCOMMIT\n'],
    ['service rules into the capture applier', generateServiceRules([])],
  ];
  for (const [name, text] of refusals) {
    const err = await applier.apply(text).catch((e: unknown) => e);
    t.ok(isWeftError(err, 'WEFT_IPTABLES_APPLY_FAILED'), name);
    t.match((err as Error).message, /refusing/, name);
  }
  t.equal(await natSave(ns), before);
});

t.test("iptables' own error comes back as WEFT_IPTABLES_APPLY_FAILED and nothing changes", async (t) => {
  const ns = await freshNetns(t);
  const applier = createCaptureApplier({ runner, netns: ns });
  await applier.apply(capture(['198.51.100.10']));
  const before = await natSave(ns);
  const err = await applier.apply('*nat\n:WEFT-PREROUTING - [0:0]\n-A WEFT-PREROUTING -p tcp -j WEFT-NO-SUCH-CHAIN\nCOMMIT\n').catch((e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_IPTABLES_APPLY_FAILED'));
  t.match((err as Error).message, /WEFT-NO-SUCH-CHAIN/, "carries iptables' message");
  t.equal(await natSave(ns), before, 'the failed transaction left the old rules in place');
});

t.test('a concurrent change between read and write is survived by one retry', async (t) => {
  const ns = await freshNetns(t);
  const plain = createCaptureApplier({ runner, netns: ns });
  await plain.apply(capture(['198.51.100.10']));
  await runner.run('iptables', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'WEFT-PREROUTING'], { netns: ns });
  // Real iptables throughout; the wrapper only lets "another tool" act at the worst
  // moment: after our read, before our write, it removes the duplicate we plan to delete.
  let restores = 0;
  const racing: CommandRunner = {
    async run(cmd, args, opts) {
      if (cmd.endsWith('-restore') && restores++ === 0) {
        for (let i = 0; i < 2; i++) await runner.run('iptables', ['-t', 'nat', '-D', 'PREROUTING', '-j', 'WEFT-PREROUTING'], { netns: ns });
      }
      return runner.run(cmd, args, opts);
    },
  };
  await createCaptureApplier({ runner: racing, netns: ns }).apply(capture(['198.51.100.10']));
  t.equal(restores, 2, 'the first transaction failed as a whole and was retried');
  t.equal((await natSave(ns)).match(/-A PREROUTING -j WEFT-PREROUTING$/gm)?.length, 1, 'exactly one jump in the end');
});

t.test('applier options are validated', async (t) => {
  t.throws(() => new IptablesApplier({ runner, chains: ['KUBE-SERVICES'], jumps: [] }), /WEFT-/);
  t.throws(() => new IptablesApplier({ runner, chains: ['WEFT-A'], jumps: [{ from: 'WEFT-X', to: 'WEFT-A', position: 'first' }] }), /built-in/);
  t.throws(() => new IptablesApplier({ runner, chains: ['WEFT-A'], jumps: [{ from: 'PREROUTING', to: 'WEFT-B', position: 'first' }] }), /owned/);
  t.throws(() => createCaptureApplier({ runner, family: 6, binary: 'nft' }), /invalid binary="nft": expected iptables, iptables-nft or iptables-legacy/);
});
