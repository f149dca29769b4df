import t from 'tap';
import { join } from 'node:path';
import YAML from 'yaml';
import { isWeftError } from '../src/lib/errors';
import { loadContext, parseContext, selectNodes } from '../src/cli/context';
import { expandShortFlags } from '../src/cli/io';
import {
  CLEAR_SCREEN, ageSince, cellText, formatAge, formatBytes, formatTable, renderFrame, runWatch, watchScreen, type Frame,
} from '../src/cli/output';
import { parseDestination, parseSource } from '../src/cli/explain-model';
import { captureIo, tempDir, writeContextFile } from './helpers/cli';
import workloads from '../src/cli/commands/workloads';
import { caught } from './helpers/wait';

t.test('formatTable aligns columns like kubectl and shows missing cells as -', async (t) => {
  const text = formatTable({
    headers: ['NAMESPACE', 'POD NAME', 'ADDRESS'],
    rows: [['demo', 'client', '198.19.1.10'], ['legacy-long-name', undefined, '']],
  });
  t.equal(text,
    'NAMESPACE          POD NAME   ADDRESS\n'
    + 'demo               client     198.19.1.10\n'
    + 'legacy-long-name   -          -\n');
  t.equal(cellText(0), '0', 'zero is a value, not missing');
  t.equal(cellText(false), 'false');
  t.notOk(text.split('\n').some((l) => l.endsWith(' ')), 'no trailing spaces');
});

t.test('renderFrame: table, json, yaml, empty, text; warnings on stderr only', async (t) => {
  const frame: Frame = {
    table: { headers: ['A', 'B'], rows: [[1, 'x']] },
    data: { items: [{ a: 1, b: 'x' }] },
    warnings: ['node-2: not answering (no admin socket)'],
  };
  const table = renderFrame(frame, 'table');
  t.equal(table.stdout, 'A   B\n1   x\n');
  t.equal(table.stderr, 'warning: node-2: not answering (no admin socket)\n');
  const json = renderFrame(frame, 'json');
  t.same(JSON.parse(json.stdout), { items: [{ a: 1, b: 'x' }] });
  t.equal(json.stderr, table.stderr, 'warnings never go to stdout, which stays parseable');
  t.same(YAML.parse(renderFrame(frame, 'yaml').stdout), { items: [{ a: 1, b: 'x' }] });
  t.equal(renderFrame({ table: { headers: ['A'], rows: [] }, data: {}, warnings: [], empty: 'No tunnels.' }, 'table').stdout, 'No tunnels.\n');
  t.equal(renderFrame({ text: 'hello', data: {}, warnings: [] }, 'table').stdout, 'hello\n');
});

t.test('bytes and ages read like kubectl', async (t) => {
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(512), '512 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(10 * 1024 * 1024), '10 MiB');
  t.equal(formatBytes(-1), '-');
  t.equal(formatAge(45_000), '45s');
  t.equal(formatAge(192_000), '3m12s');
  t.equal(formatAge(3_600_000 * 2 + 300_000), '2h5m');
  t.equal(formatAge(86_400_000 * 3 + 3_600_000 * 4), '3d4h');
  t.equal(ageSince(undefined, 0), '-');
  t.equal(ageSince('not a date', 0), '-');
  t.equal(ageSince(new Date(1000).toISOString(), 61_000), '1m');
});

t.test('short flags: -o json, -ojson, -n ns, -w, -l; -- ends them', async (t) => {
  t.same(expandShortFlags(['-o', 'json', '-ojson', '-n', 'demo', '-w', '-l', 'app=echo', '--node', 'x']),
    ['--output', 'json', '--output=json', '--namespace', 'demo', '--watch', '--selector', 'app=echo', '--node', 'x']);
  t.same(expandShortFlags(['--', '-o']), ['--', '-o']);
  t.throws(() => expandShortFlags(['-wx']), { code: 'WEFT_USAGE' });
});

t.test('a bad -o value names the flag and the choices', async (t) => {
  const cap = captureIo({ HOME: '/nonexistent-home' });
  const err = await caught(() => workloads.runWith(['-o', 'xml'], cap.io));
  t.equal(err.code, 'WEFT_CONFIG_INVALID');
  t.match(err.message, /--output="xml".*table, json, yaml/);
  t.match(workloads.help(), /--output <value>/);
});

t.test('watch redraws with a cleared screen until interrupted', async (t) => {
  const ac = new AbortController();
  const cap = captureIo({}, ac.signal);
  let frames = 0;
  const code = await runWatch(async () => {
    frames++;
    if (frames === 3) ac.abort();
    if (frames === 2) throw new Error('registry blinked');
    return { table: { headers: ['N'], rows: [[frames]] }, data: {}, warnings: ['w1'] };
  }, { title: 'weft test', format: 'table', intervalMs: 1, io: cap.io });
  t.equal(code, 0);
  const screens = cap.stdout().split(CLEAR_SCREEN).filter(Boolean);
  t.equal(screens.length, 2, 'one screen per frame before the interrupt');
  t.match(screens[0], /^Every 1\.0s: weft test/);
  t.match(screens[0], /N\n1\n/);
  t.match(screens[0], /warning: w1/, 'warnings are drawn on the screen, not lost on stderr');
  t.match(screens[1], /error: registry blinked/, 'a failing frame shows the error and the watch goes on');
  t.match(watchScreen('x', { text: 'hi', data: {}, warnings: [] }, 'table', new Date(0)), /^\x1b\[H\x1b\[2JEvery 1\.0s: x {4}1970-01-01T00:00:00\.000Z\n\nhi\n$/);
});

t.test('context: missing file and no flag is WEFT_CONTEXT_MISSING with the way out', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const err = await caught(() => loadContext({ context: '', redisUrl: '' }, { HOME: tmp.dir }));
  t.ok(isWeftError(err, 'WEFT_CONTEXT_MISSING'));
  t.match(err.message, /scripts\/lab up/);
  t.match(err.message, /--redis-url/);
  t.throws(() => loadContext({ context: join(tmp.dir, 'nope.json'), redisUrl: 'redis://127.0.0.1:1' }, { HOME: tmp.dir }),
    { code: 'WEFT_CONTEXT_MISSING' }, 'an explicitly named file must exist');
  const flagsOnly = loadContext({ context: '', redisUrl: 'redis://127.0.0.1:7' }, { HOME: tmp.dir });
  t.same(flagsOnly, { kind: 'flags', source: '--redis-url', redis: { url: 'redis://127.0.0.1:7' }, trustDomain: 'cluster.local', nodes: [] });
});

t.test('context: a refused registry URL in a context file is named with its password masked', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const file = writeContextFile(join(tmp.dir, 'secret-url.json'), { kind: 'lab', redisUrl: 'http://weft:hunter2@h:1', nodes: [] });
  const err = await caught(() => loadContext({ context: file, redisUrl: '' }, { HOME: tmp.dir }));
  t.equal(err.code, 'WEFT_CONFIG_INVALID');
  t.match(err.message, /field redisUrl="http:\/\/weft:\*\*\*@h:1\/?": expected/);
  t.notMatch(err.message, /hunter2/);
});

t.test('context: a lab context file with admin sockets; --redis-url overrides its registry', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const home = join(tmp.dir, 'home');
  require('node:fs').mkdirSync(join(home, '.weft'), { recursive: true });
  writeContextFile(join(home, '.weft', 'context.json'), {
    kind: 'lab', version: 1, redisUrl: 'redis://127.0.0.1:16379', caAddress: '198.18.0.1:15012', labDir: '/lab',
    trustDomain: 'cluster.local', pods: [], services: [],
    nodes: [{ name: 'node-1', address: '198.18.0.11', netns: 'weft-node-1', adminSocket: '/lab/node-1/admin.sock' }, { name: 'node-2', address: '198.18.0.12', netns: 'weft-node-2' }],
  });
  const ctx = loadContext({ context: '', redisUrl: '' }, { HOME: home });
  t.equal(ctx.kind, 'lab');
  t.same(ctx.redis, { url: 'redis://127.0.0.1:16379' });
  t.equal(ctx.caAddress, '198.18.0.1:15012');
  t.same(ctx.nodes[0], { name: 'node-1', address: '198.18.0.11', netns: 'weft-node-1', admin: { socketPath: '/lab/node-1/admin.sock' } });
  t.notOk(ctx.nodes[1]!.admin, 'a node without adminSocket has no admin endpoint');
  t.same(loadContext({ context: '', redisUrl: 'redis://10.0.0.1:6379' }, { HOME: home }).redis, { url: 'redis://10.0.0.1:6379' });
  t.same(selectNodes(ctx, 'node-2').map((n) => n.name), ['node-2']);
  const err = await caught(() => selectNodes(ctx, 'node-9'));
  t.equal(err.code, 'WEFT_CONFIG_INVALID');
  t.match(err.message, /node-1, node-2/);
});

t.test('context: each invalid field is named', async (t) => {
  const bad = async (obj: unknown, re: RegExp) => {
    const err = await caught(() => parseContext(JSON.stringify(obj), '/ctx.json'));
    t.equal(err.code, 'WEFT_CONFIG_INVALID');
    t.match(err.message, re);
  };
  t.throws(() => parseContext('{nope', '/ctx.json'), { code: 'WEFT_CONFIG_INVALID' });
  await bad([], /not a JSON object/);
  await bad({ kind: 'galaxy', redisUrl: 'redis://x:1' }, /kind "galaxy".*"lab"/);
  await bad({ kind: 'lab' }, /field redisUrl is missing/);
  await bad({ kind: 'lab', redisUrl: 'http://x' }, /field redisUrl=.*redis: or rediss:/);
  await bad({ kind: 'lab', redisUrl: 'redis://x:1', trustDomain: 'Not Valid' }, /field trustDomain/);
  await bad({ kind: 'lab', redisUrl: 'redis://x:1', nodes: {} }, /field nodes is not a list/);
  await bad({ kind: 'lab', redisUrl: 'redis://x:1', nodes: [{}] }, /field nodes\[0\]\.name/);
  await bad({ kind: 'lab', redisUrl: 'redis://x:1', nodes: [{ name: 'a', adminSocket: 5 }] }, /field nodes\[0\]\.adminSocket/);
  await bad({ kind: 'lab', redisUrl: 'redis://x:1', caAddress: 'nohost' }, /field caAddress/);
});

t.test('explain arguments: every destination form, and clear refusals', async (t) => {
  t.same(parseDestination('10.0.0.1:80'), { kind: 'address', ip: '10.0.0.1', port: 80 });
  t.same(parseDestination('[fd00::1]:443'), { kind: 'address', ip: 'fd00::1', port: 443 });
  t.same(parseDestination('echo.demo:80'), { kind: 'host', host: 'echo.demo', port: 80 });
  t.same(parseDestination('echo.demo.svc.cluster.local:80'), { kind: 'host', host: 'echo.demo.svc.cluster.local', port: 80 });
  t.same(parseDestination('echo:80'), { kind: 'host', host: 'echo', port: 80 });
  t.same(parseDestination('demo/echo-1:8080'), { kind: 'pod', namespace: 'demo', name: 'echo-1', port: 8080 });
  for (const bad of ['echo.demo', 'echo.demo:0', 'echo.demo:99999', ':80', 'a/b/c:80', 'bad host:80', '[fd00::1:80']) {
    t.throws(() => parseDestination(bad), { code: 'WEFT_USAGE' }, bad);
  }
  t.same(parseDestination('[fd00::1]:8080'), { kind: 'address', ip: 'fd00::1', port: 8080 });
  // IPv6 forms: each refusal says what was wrong and the form to write instead.
  const refusal = (text: string): string => { try { parseDestination(text); } catch (err) { return (err as Error).message; } return ''; };
  t.match(refusal('fd00::1'), /is an IPv6 address without a port; write \[fd00::1\]:<port>/);
  t.match(refusal('fd00::1:8080'), /is an IPv6 address without a port; write \[fd00::1:8080\]:<port>/, 'the last group is the address, not a port');
  t.match(refusal('[fd00::1]'), /has no port; write \[fd00::1\]:<port>/);
  t.match(refusal('[fd00::1:80'), /has an unclosed \[; write an IPv6 address as \[fd00::1\]:<port>/);
  t.match(refusal('[echo.demo]:80'), /"echo\.demo" in brackets, which is not an IPv6 address/);
  t.match(refusal('[fd00::1]8080'), /has "8080" after the \]; write \[fd00::1\]:<port>/);
  t.match(refusal('fd00::zz:80'), /looks like an IPv6 address with a port but "fd00::zz" is not one; write an IPv6 address in brackets/);
  t.notMatch(refusal('fd00::1'), /invalid host/);
  t.same(parseSource('demo/client'), { namespace: 'demo', name: 'client' });
  t.same(parseSource('203.0.113.5'), { ip: '203.0.113.5' });
  t.throws(() => parseSource('client'), { code: 'WEFT_USAGE' });
});
