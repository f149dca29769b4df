// The lab's preflight finds a process listening on a port the lab needs, at the
// wildcard (issue 14: a `weft controller` on 0.0.0.0:15014 made the CA die with
// EADDRINUSE), and names it by pid and command line.
import t from 'tap';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWeft } from '../src/lab/run';
import { conflictingListeners, findConflicts, parseProcNetTcp, socketHolder } from '../src/lab/preflight';
import { planLab } from '../src/lab/plan';
import { loadTopology } from '../src/lab/topology';
import { defaultTopologyFile } from '../src/lab/paths';
import { acquireLabLock } from '../src/lab/lock';

const TCP4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:3ACE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:3FFB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:3ACE 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:3ACC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:3ACC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:3FFB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0000000000000000 100 0 0 10 0
`;

t.test('parses LISTEN sockets of /proc/net/tcp and tcp6', async (t) => {
  t.same(parseProcNetTcp(TCP4, 4), [
    { address: '0.0.0.0', port: 15054, inode: '111' },
    { address: '127.0.0.1', port: 16379, inode: '222' },
    { address: '127.0.0.1', port: 15052, inode: '444' },
  ], 'an established socket is no listener');
  t.same(parseProcNetTcp(TCP6, 6), [
    { address: '::', port: 15052, inode: '555' },
    { address: '::ffff:127.0.0.1', port: 16379, inode: '666' },
  ]);
});

t.test('conflicts: wildcard on any lab port, or a lab address on its port; other addresses are fine', async (t) => {
  const listeners = [
    { address: '0.0.0.0', port: 15014, inode: '1' },
    { address: '::', port: 15012, inode: '2' },
    { address: '127.0.0.1', port: 15014, inode: '3' },
    { address: '127.0.0.1', port: 16379, inode: '4' },
    { address: '::ffff:198.18.0.1', port: 15012, inode: '5' },
    { address: '0.0.0.0', port: 8080, inode: '6' },
  ];
  t.same(conflictingListeners(listeners, { redisPort: 16379 }).map((c) => c.listener.inode), ['1', '2', '4', '5']);
  t.match(conflictingListeners(listeners, { redisPort: 16379 })[0]!.what, /CA's metrics and readiness port/);
});

t.test('a real listener on 0.0.0.0:15014 is found and named with its pid and command', async (t) => {
  // Other lab users bind 15014 on the lab bridge: hold the lab lock while we take the port.
  const release = await acquireLabLock();
  t.teardown(release);
  const server = createServer();
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(15014, '0.0.0.0', resolve); });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const plan = planLab(loadTopology(defaultTopologyFile()));
  const conflicts = await findConflicts(plan);
  const line = conflicts.find((c) => c.startsWith('0.0.0.0:15014'));
  t.ok(line, `found among: ${conflicts.join('; ')}`);
  t.match(line, new RegExp(`^0\\.0\\.0\\.0:15014 is held by pid ${process.pid} \\(${process.execPath.replace(/[/.]/g, '\\$&')} .*\\): the lab CA's metrics and readiness port; stop that process$`));
  const held = parseProcNetTcp(readFileSync('/proc/net/tcp', 'utf8'), 4).find((l) => l.port === 15014 && l.address === '0.0.0.0')!;
  t.equal(socketHolder(held.inode)?.pid, process.pid);
  // The same through the real CLI: `lab up` refuses before creating anything.
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-preflight-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const up = await runWeft(['lab', 'up'], { ...process.env, WEFT_LAB_DIR: dir, WEFT_CONTEXT: join(dir, 'context.json') });
  t.not(up.code, 0);
  t.match(up.stderr, /WEFT_LAB_CONFLICT/);
  t.match(up.stderr, new RegExp(`0\\.0\\.0\\.0:15014 is held by pid ${process.pid} \\(`));
  t.notOk(existsSync('/run/netns/weft-node-1'), 'nothing was created');
  await new Promise<void>((r) => server.close(() => r()));
  t.notOk((await findConflicts(plan)).some((c) => c.includes(':15014')), 'gone once the listener is removed');
});
