// A dual-stack ztunnel runs one HBONE server per address family. Its per-node HBONE
// limits (buffer budget, pending dials, handshakes, sessions per peer) must be the
// node's, shared by both servers; before, each server built its own, so such a node
// had twice every per-node limit.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateRootCa } from '../src/ca/issuer';
import { silentLogger } from '../src/lib/log';
import { ZtunnelApp } from '../src/ztunnel/app';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { tempDir } from './helpers/cli';
import { redisFixture } from './helpers/redis';

const fixture = redisFixture(t);

t.test('dual stack: the two HBONE servers of one ztunnel share one set of per-node limits', async (t) => {
  const tmp = tempDir('weft-app-limits-');
  t.teardown(() => tmp.remove());
  const anchors = join(tmp.dir, 'root.pem');
  writeFileSync(anchors, (await generateRootCa({ trustDomain: 'cluster.local' })).certPem);
  const config = loadZtunnelConfig(['--node', 'node-1', '--address', '127.0.0.1', '--address6', '::1',
    '--ca-address', '127.0.0.1:1', '--trust-anchor-file', anchors, '--admin-port', '0', '--metrics-port', '0', '--readiness-port', '0',
    '--drain-timeout', '0s', '--hbone-buffer-budget-mb', '64', '--hbone-max-pending-dials', '7'], { WEFT_REDIS_URL: fixture.redis.url });
  // Ports 0: other tests may hold 15001/15006/15008 on loopback.
  const app = new ZtunnelApp(config, silentLogger(), { outbound: 0, inboundPlaintext: 0, hbone: 0 });
  t.teardown(() => app.stop());
  await app.start();

  const servers = app.hboneServers;
  t.same(servers.map((s) => s.address()?.address), ['127.0.0.1', '::1'], 'one HBONE server per family');
  const [v4, v6] = servers;
  t.equal(v4!.node, v6!.node, 'both servers count against the same node-wide limits');
  t.equal(v4!.node.budget.limit, 64 * 1024 * 1024, 'the node budget is --hbone-buffer-budget-mb, once');
  t.equal(v4!.node.limits.maxPendingDials, 7);
  // What one server takes, the other sees as taken.
  for (let i = 0; i < 7; i++) t.equal(v4!.node.dials.tryTake({}, `spiffe://cluster.local/ns/a/sa/s${i}`), undefined);
  t.equal(v6!.node.dials.tryTake({}, 'spiffe://cluster.local/ns/a/sa/other'), 'node', 'the IPv6 server has no slot left');
});
