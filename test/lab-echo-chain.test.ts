// The echo app as a hop of a call chain (src/lab/echo-chain.ts): `?via=` passes the
// request on, the trace and retry headers propagated, the last hop's status and body
// returned; real echo servers on loopback.
import t from 'tap';
import { request } from 'node:http';
import { nextHop, RETRY_MARK_HEADER } from '../src/lab/echo-chain';
import { startEcho, type EchoAnswer } from '../src/lab/echo';
import { RETRY_HEADER } from '../src/resilience/retry';

t.test('the echo propagates the mark the waypoints set', async (t) => {
  t.equal(RETRY_MARK_HEADER, RETRY_HEADER);
});

t.test('nextHop: the first host, the rest of via and the query kept, the propagated headers only', async (t) => {
  const hop = nextHop(new URL('http://x/p/q?via=b.demo,c.demo:8080&status=503'), { traceparent: 't', 'x-weft-retry': '2', cookie: 'secret' });
  t.same(hop, { url: 'http://b.demo/p/q?via=c.demo%3A8080&status=503', headers: { traceparent: 't', 'x-weft-retry': '2' } });
  t.same(nextHop(new URL('http://x/?via=c.demo&status=503'), {})?.url, 'http://c.demo/?status=503', 'the last hop gets no via');
  t.equal(nextHop(new URL('http://x/?status=503'), {}), undefined, 'no via: answered here');
  t.equal(nextHop(new URL('http://x/?via=a/b'), {}), undefined, 'not a host: answered here');
});

function get(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('a three-hop chain on loopback: the last hop answers, its status passes back, headers arrive', async (t) => {
  const servers = await Promise.all(['front', 'middle', 'back'].map((pod) => startEcho({ pod, namespace: 'demo', node: 'n' }, { host: '127.0.0.1', httpPort: 0, tcpPort: 0, grpcPort: 0 })));
  t.teardown(() => Promise.all(servers.map((s) => s.close())));
  const [front, middle, back] = servers.map((s) => s.httpPort);
  const via = `127.0.0.1:${middle},127.0.0.1:${back}`;
  const ok = await get(front!, `/x?via=${via}`, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'x-weft-retry': '3' });
  t.equal(ok.status, 200);
  const answer = JSON.parse(ok.body) as EchoAnswer;
  t.equal(answer.pod, 'back', 'the last hop answered');
  t.equal(answer.path, '/x', 'with the path, and no via left');
  t.equal(answer.headers['x-weft-retry'], '3', 'the retry mark crossed both hops');
  t.equal(answer.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  const failed = await get(front!, `/x?via=${via}&status=503`, {});
  t.equal(failed.status, 503, 'the backend\'s failure is the chain\'s answer');
  const unreachable = await get(front!, '/x?via=127.0.0.1:1', {});
  t.equal(unreachable.status, 502, 'a next hop that cannot be reached: 502');
});
