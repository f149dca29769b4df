// Bulk both ways on one HBONE connection between two Weft ztunnels must not stall it
// (src/hbone/send-buffer.ts). Node's http2 stops reading while a write is pending; with
// kernel buffers smaller than what the windows let both ztunnels have in flight, both
// would stop reading at once and the connection would stall until the keepalive ends it.
// The lab's nodes get small TCP buffers (their own namespaces only), so the kernel cannot
// hide the problem: without the raised send buffers all 8 of these round trips failed on
// a fresh lab, every time ("not finished within 10000 ms", "no answer to CONNECT").
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labSkipReason, startLab } from './helpers/lab';
import { execIn, sendBufferForceRefused } from '../helpers/netns';

const skip = labSkipReason();

t.test('8 × 8 MB echoed through two ztunnels whose nodes have 256 KiB TCP buffers: every byte back', { skip }, async (t) => {
  // The ztunnels raise their buffers with SO_SNDBUFFORCE: where it is refused, this cannot pass.
  const refused = await sendBufferForceRefused();
  if (refused) return void t.plan(0, refused);
  const lab = await startLab(t);
  const ctx = lab.context;
  for (const node of ctx.nodes) {
    // Per network namespace (Linux 4.15 on; Node 20 needs 4.18): the lab's nodes only, gone with them at lab down.
    await execIn(node.netns, 'sysctl', ['-qw', 'net.ipv4.tcp_rmem=4096 65536 262144']);
    await execIn(node.netns, 'sysctl', ['-qw', 'net.ipv4.tcp_wmem=4096 16384 262144']);
  }
  const echo2 = ctx.pods.find((p) => p.uid === 'demo/echo-2')!;
  // The client is on node-1, echo-2 on node-2: one HBONE connection carries all eight, both ways at once.
  const settled = await Promise.allSettled(Array.from({ length: 8 }, () => lab.tcp('demo/client', `${echo2.ip}:9000`, 8_000_000)));
  const failed = settled.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
  t.same(failed, [], `${failed.length} of 8 round trips failed`);
  const results = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  t.ok(results.length === 8 && results.every((r) => r.match && r.received === 8_000_000), 'all 8 echoed intact');
  for (const node of ctx.nodes) {
    const log = readFileSync(join(lab.labDir, 'logs', `ztunnel-${node.name}.log`), 'utf8');
    t.notMatch(log, /HBONE send buffers keep the kernel's size/, `${node.name}'s ztunnel raised its HBONE send buffers (no warning)`);
  }
});
