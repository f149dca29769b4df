// `weft lab load` (src/lab/client-load.ts) against a loopback server: the schedule's
// request count, statuses and per-status latencies in its JSON line; bad usage refused.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { loadMain, type LoadSummary } from '../src/lab/client-load';

t.test('sends rate x duration requests and reports statuses and latencies', async (t) => {
  let n = 0;
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(String(req.headers['x-test']));
    res.writeHead(++n % 2 ? 200 : 429);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => { text += c.toString(); });
  const code = await loadMain([`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, '--rate', '50', '--duration', '200ms', '--conns', '2', '-H', 'x-test: yes'], out);
  const sum = JSON.parse(text) as LoadSummary;
  t.equal(code, 0);
  t.equal(sum.requests, 10, '50/s for 200 ms');
  t.same(sum.statuses, { 200: 5, 429: 5 });
  t.same(sum.errors, {});
  t.equal(sum.latencies['200']!.length, 5);
  t.same([...sum.latencies['200']!].sort((a, b) => a - b), sum.latencies['200'], 'ascending');
  t.ok(seen.every((h) => h === 'yes'), 'headers sent');
});

t.test('refuses a bad URL and an unbounded run', async (t) => {
  await t.rejects(loadMain(['https://x/']), { code: 'WEFT_USAGE' });
  await t.rejects(loadMain(['http://x/', '--rate', '10000', '--duration', '120s']), { code: 'WEFT_USAGE', message: /more than 100,000 requests/ });
});
