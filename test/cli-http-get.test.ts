// The CLI's one bounded GET (src/cli/http-get.ts), behind the admin client and the
// metrics scrapes: against a real loopback HTTP server, every way an answer can go
// wrong ends the request with a message that names the endpoint and the limit.
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { boundedGet } from '../src/cli/http-get';
import { caught } from './helpers/wait';

async function listen(server: net.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

t.test('status and body of a complete answer, whatever the status; the headers say who asks', async (t) => {
  let seen: http.IncomingHttpHeaders = {};
  const server = http.createServer((req, res) => {
    seen = req.headers;
    res.statusCode = req.url === '/missing' ? 404 : 200;
    res.end(req.url === '/missing' ? 'no such page' : 'weft ok');
  });
  const url = await listen(server);
  t.teardown(() => server.close());
  t.same(await boundedGet({ target: `${url}/`, where: url, accept: 'text/plain', timeoutMs: 2000, maxBytes: 100 }), { status: 200, body: 'weft ok' });
  t.equal(seen.accept, 'text/plain');
  t.match(seen['user-agent'], /^weft-cli\//);
  t.same(await boundedGet({ target: `${url}/missing`, where: url, accept: 'text/plain', timeoutMs: 2000, maxBytes: 100 }), { status: 404, body: 'no such page' },
    'a non-200 answer is the caller\'s to judge');
});

t.test('an answer past the size cap is cut and named', async (t) => {
  const server = http.createServer((_req, res) => res.end(Buffer.alloc(4096, 'x')));
  const url = await listen(server);
  t.teardown(() => server.close());
  const err = await caught(() => boundedGet({ target: url, where: 'weft-test-proxy', accept: 'text/plain', timeoutMs: 2000, maxBytes: 1000 }));
  t.match(err.message, /answer from weft-test-proxy exceeds 1000 bytes/);
});

t.test('a socket that accepts but never answers is cut at the deadline', async (t) => {
  const held: net.Socket[] = [];
  const server = net.createServer((s) => held.push(s));
  const url = await listen(server);
  t.teardown(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const err = await caught(() => boundedGet({ target: url, where: 'weft-test-proxy', accept: 'text/plain', timeoutMs: 50, maxBytes: 1000 }));
  t.match(err.message, /no answer from weft-test-proxy within 50 ms/);
});

t.test('a failed connect says where, or what the caller words it as', async (t) => {
  const server = net.createServer();
  const url = await listen(server);
  await new Promise<void>((r) => server.close(() => r()));
  const plain = await caught(() => boundedGet({ target: url, where: 'weft-test-proxy', accept: 'text/plain', timeoutMs: 2000, maxBytes: 1000 }));
  t.match(plain.message, /^weft-test-proxy: .*ECONNREFUSED/);
  const worded = await caught(() => boundedGet({
    target: url, where: 'weft-test-proxy', accept: 'text/plain', timeoutMs: 2000, maxBytes: 1000,
    connectFailure: (e) => `nothing listens (${e.code})`,
  }));
  t.equal(worded.message, 'nothing listens (ECONNREFUSED)');
});

t.test('a cut answer is an error, not a short body', async (t) => {
  const server = net.createServer((s) => {
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nweft');
      setImmediate(() => s.destroy());
    });
  });
  const url = await listen(server);
  t.teardown(() => server.close());
  const err = await caught(() => boundedGet({ target: url, where: 'weft-test-proxy', accept: 'text/plain', timeoutMs: 2000, maxBytes: 1000 }));
  t.match(err.message, /weft-test-proxy/);
});
