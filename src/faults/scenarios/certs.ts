/**
 * Certificates under faults: the CA stopped for a while (existing certificates keep
 * serving, issuance resumes when it is back), and rotation under load with short
 * lifetimes (no request fails while certificates change underneath).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultLab } from '../lab';
import { flowsOf } from '../lab';
import { adminGet, httpGet } from '../observe';
import { RegistryStore } from '../../registry/store';
import type { CertificateInfo } from '../../ztunnel/admin-types';
import { restartZtunnel } from './ztunnel';
import { secs, summarize, verdict, type Durations, type Row } from '../scenario';
import { until } from '../../lab/procs';

const LATE = { name: 'faults-late', sa: 'faults-late' };

async function certs(lab: FaultLab, node: string): Promise<CertificateInfo[]> {
  return (await adminGet<{ certificates: CertificateInfo[] }>(lab.node(node).adminSocket!, '/certs')).certificates;
}

function caReadyUrl(lab: FaultLab): string {
  // The lab's CA serves readiness on the bridge address, port 15014 (docs/lab.md).
  return `http://${lab.ctx.caAddress.split(':')[0]}:15014/healthz/ready`;
}

export async function caDown(lab: FaultLab, d: Durations): Promise<Row> {
  const row = { scenario: `CA down ${secs(d.caDownMs)}`, goal: 'existing certificates keep serving; issuance resumes on its return (a new identity is issued within 10 s)' };
  const client = lab.pod('demo/client');
  const vip = lab.ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
  const totalMs = d.warmMs + d.caDownMs + 15_000;
  const runs = [lab.flows('demo/client', `${vip.vip}:80`, d.rate, totalMs)];
  await sleep(d.warmMs);
  const ca = lab.process('ca');
  const env = lab.environ(ca);
  const t0 = Date.now();
  process.kill(ca.pid!, 'SIGTERM');
  await lab.exited(ca, 20_000);
  // A workload of a new identity lands on node-1 while the CA is away: its certificate
  // can only come once the CA is back.
  const store = RegistryStore.connect(lab.ctx.redisUrl);
  const node1 = lab.ctx.nodes[0]!;
  const identity = `spiffe://${lab.ctx.trustDomain}/ns/demo/sa/${LATE.sa}`;
  let issuedMs = NaN;
  let validDuring = true;
  try {
    await store.put('workload', {
      uid: `demo/${LATE.name}`, name: LATE.name, namespace: 'demo', node: node1.name, addresses: ['198.19.1.250'],
      serviceAccount: LATE.sa, labels: { app: LATE.name }, status: 'Healthy',
    });
    const checkUntil = t0 + d.caDownMs;
    while (Date.now() < checkUntil) {
      for (const n of lab.ctx.nodes) {
        const list = await certs(lab, n.name).catch(() => []);
        if (list.some((c) => c.identity !== identity && (c.notAfter === undefined || Date.parse(c.notAfter) < Date.now()))) validDuring = false;
      }
      await sleep(Math.min(5000, Math.max(0, checkUntil - Date.now())));
    }
    const t1 = Date.now();
    lab.restart(ca, env);
    const readyOk = await until(async () => (await httpGet(caReadyUrl(lab), 1000)).status === 200, 30_000, 50);
    const readyMs = Date.now() - t1;
    const readyAt = Date.now();
    if (await until(async () => (await certs(lab, node1.name)).some((c) => c.identity === identity && c.serial), 180_000, 100)) issuedMs = Date.now() - readyAt;
    await sleep(2000); // a little traffic after the return too
    for (const r of runs) r.stop();
    await Promise.all(runs.map((r) => r.done));
    const s = summarize(runs.flatMap(flowsOf), client.ip);
    const during = summarize(runs.flatMap(flowsOf), client.ip, t0, t1);
    const measured = [
      `${s.total} flows, ${s.failed} failed (${during.total} while the CA was down, ${during.failed} failed${during.errors.length ? `: ${during.errors.join(', ')}` : ''})`,
      `every existing certificate ${validDuring ? 'stayed valid' : 'did NOT stay valid'}`,
      `CA ready ${readyOk ? `${readyMs} ms` : 'never'} after restart`,
      `the new identity's certificate ${Number.isFinite(issuedMs) ? `${issuedMs} ms after the CA was ready` : 'never issued'}`,
    ].join('; ');
    return { ...row, measured, ...verdict(s.failed === 0 && validDuring && readyOk && Number.isFinite(issuedMs), issuedMs <= 10_000) };
  } finally {
    await store.delete('workload', `demo/${LATE.name}`).catch(() => undefined);
    await store.close();
  }
}

export async function rotation(lab: FaultLab, d: Durations): Promise<Row> {
  const row = { scenario: `certificate rotation under load (TTL ${d.rotationTtl}, ${d.rotationTailMs === undefined ? '' : 'up to '}${secs(d.rotationMs)})`, goal: '0 failed requests' };
  const client = lab.pod('demo/client');
  const vip = lab.ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
  // The ztunnels ask for the lifetime: restart them to ask for a short one, unless the
  // lab was brought up that way already (the short form sets WEFT_CERT_TTL for lab up).
  const lifetimes = (await Promise.all(lab.ctx.nodes.map((n) => certs(lab, n.name)))).flat()
    .filter((c) => c.notAfter && c.notBefore).map((c) => Date.parse(c.notAfter!) - Date.parse(c.notBefore!));
  if (lifetimes.length === 0 || Math.max(...lifetimes) > 10 * 60_000) {
    for (const n of lab.ctx.nodes) await restartZtunnel(lab, n.name, 'SIGTERM', 0, { WEFT_CERT_TTL: d.rotationTtl });
  }
  const serials = new Map<string, Set<string>>();
  const note = async () => {
    for (const n of lab.ctx.nodes) {
      for (const c of await certs(lab, n.name).catch(() => [])) {
        // Workload identities only: the node's own certificate has its own (long) lifetime.
        if (!c.serial || !c.identity.includes('/ns/') || c.identity.includes('/ns/weft-system/')) continue;
        const k = `${n.name} ${c.identity}`;
        if (!serials.has(k)) serials.set(k, new Set());
        serials.get(k)!.add(c.serial);
      }
    }
  };
  await note();
  const runs = [
    lab.flows('demo/client', `${vip.vip}:80`, d.rate, d.rotationMs),
    lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, d.rate, d.rotationMs),
  ];
  const live = lab.traffic<{ conn?: number; how?: string; rounds?: number }>('demo/client',
    ['live', '--target', `${lab.pod('demo/echo-2').ip}:9000`, '--count', '4', '--duration', String(d.rotationMs)]);
  const started = Date.now();
  let until_ = started + d.rotationMs;
  const rotatedAll = () => serials.size > 0 && [...serials.values()].every((x) => x.size >= 2);
  while (Date.now() < until_) {
    await note();
    // The short form: every certificate has rotated under the load; a little more traffic on the new ones, then stop.
    if (d.rotationTailMs !== undefined && rotatedAll()) until_ = Math.min(until_, Date.now() + d.rotationTailMs);
    await sleep(Math.max(0, Math.min(1000, until_ - Date.now())));
  }
  // Stopped early, the flows stop starting new ones and the long connections end 'done', as at their own end.
  if (d.rotationTailMs !== undefined) for (const r of [...runs, live]) r.stop();
  await Promise.all([...runs.map((r) => r.done), live.done]);
  const ranMs = Date.now() - started;
  await note();
  const s = summarize(runs.flatMap(flowsOf), client.ip);
  const rotations = [...serials.values()].map((x) => x.size - 1);
  const still = [...serials].filter(([, x]) => x.size < 2).map(([k]) => k.replace(/spiffe:\/\/[^/]+\//, ''));
  const minRot = rotations.length ? Math.min(...rotations) : 0;
  const ends = live.lines.filter((l) => l.conn !== undefined);
  const liveOk = ends.length === 4 && ends.every((e) => e.how === 'done');
  const measured = [
    `${s.total} requests, ${s.failed} failed${s.errors.length ? ` (${s.errors.join(', ')})` : ''}`,
    `${serials.size} workload certificates rotated ${minRot}–${rotations.length ? Math.max(...rotations) : 0} times each${still.length ? ` (never: ${still.join(', ')})` : ''}`,
    `4 long connections: ${ends.filter((e) => e.how === 'done').length} lasted the whole run`,
    `ran ${secs(ranMs)}`,
  ].join('; ');
  return { ...row, measured, ...verdict(s.failed === 0 && minRot >= 1 && liveOk) };
}
