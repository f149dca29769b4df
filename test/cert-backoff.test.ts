/**
 * The certificate manager's timing decisions, driven by a manual clock: refresh at
 * half-life, backoff 0.5 s → 150 s, the old certificate kept until notAfter, timers
 * longer than setTimeout's limit. The CA side is a real Issuer behind a tiny
 * in-process source (no network: this file pins decision logic).
 */
import t from 'tap';
import { Registry } from 'prom-client';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { CertificateManager, CertState, type CertificateSource } from '../src/ca/cert-manager';
import type { NodeCredentials } from '../src/ca/client';
import { nodeIdentity } from '../src/ca/authorize';
import { backoffDelay } from '../src/lib/backoff';
import { boundedDelay } from '../src/lib/clock';
import { ManualClock } from './helpers/clock';
import { Limiter } from '../src/ca/limiter';
import { WeftError } from '../src/lib/errors';
import { silentLogger } from '../src/lib/log';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/demo/sa/a`;
const HOUR = 3600e3;

class LocalSource implements CertificateSource {
  failing = false;
  calls = 0;
  nodeCredentials: NodeCredentials | undefined;
  readonly trustDomain = TD;
  /** `ttlMs` is read per call: the issuer uses real time, the manager the manual clock. */
  constructor(private readonly issuer: Issuer, private readonly ttlMs: () => number) {}
  get rootPem(): string { return this.issuer.rootPem; }
  setNodeCredentials(creds: NodeCredentials): void { this.nodeCredentials = creds; }
  async join(): Promise<NodeCredentials> { throw new Error('not used'); }
  async createCertificate(csrPem: string, _ttlSec: number, impersonated?: string): Promise<string[]> {
    this.calls++;
    if (this.failing) throw new WeftError('WEFT_CA_UNREACHABLE', 'CA down (test)');
    return this.issuer.signCsr(csrPem, { identity: impersonated ?? nodeIdentity(TD), ttlMs: this.ttlMs() });
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`never happened: ${what}`);
}

t.test('backoffDelay: 0.5 s doubling to 150 s, jittered within ±20 %, never above the cap', async (t) => {
  for (let n = 1; n <= 20; n++) {
    const base = Math.min(150_000, 500 * 2 ** (n - 1));
    t.equal(backoffDelay(n, {}, () => 0), Math.round(base * 0.8), `failure ${n}, low jitter`);
    t.equal(backoffDelay(n, {}, () => 1), Math.min(150_000, Math.round(base * 1.2)), `failure ${n}, high jitter`);
  }
  t.equal(backoffDelay(1, {}, () => 0.5), 500);
  t.equal(backoffDelay(1000, {}, () => 0.5), 150_000, 'no overflow for huge counts');
  t.equal(backoffDelay(3, { initialMs: 100, maxMs: 300 }, () => 0.5), 300);
});

t.test('boundedDelay waits beyond setTimeout\'s 24.8-day limit and can be cancelled', async (t) => {
  const clock = new ManualClock(Date.now());
  let fired = 0;
  boundedDelay(40 * 24 * HOUR, () => { fired++; }, clock);
  t.equal(clock.armed[0], 2 ** 31 - 1, 'armed in chunks');
  clock.runNext();
  t.equal(fired, 0, 'not yet after the first chunk');
  clock.runNext();
  t.equal(fired, 1);
  const cancel = boundedDelay(1000, () => { fired++; }, clock);
  cancel();
  t.equal(clock.pending, 0);
});

t.test('refresh at half-life; on failure back off, keep the old cert until notAfter, then recover', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const clock = new ManualClock(Date.now());
  // One hour on the manual clock, however far it has run ahead of real time.
  const source = new LocalSource(issuer, () => clock.now() - Date.now() + HOUR);
  // A node certificate valid for 30 days keeps node renewals out of this timeline.
  const nodeKey = await generateKeyAndCsr();
  source.nodeCredentials = { keyPem: nodeKey.keyPem, certChainPem: issuer.signCsr(nodeKey.csrPem, { identity: nodeIdentity(TD), ttlMs: 30 * 24 * HOUR, commonName: 'node-1' }) };
  const states: string[] = [];
  const m = new CertificateManager({ client: source, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), clock });
  t.teardown(() => m.stop());
  m.on('state', (id, from, to) => { if (id === ID) states.push(`${from}->${to}`); });
  t.equal(m.list()[0]!.state, CertState.Ready, 'node certificate adopted at construction');

  m.setWanted([ID]);
  await until('first certificate', () => m.current(ID) !== undefined);
  const first = m.current(ID)!;
  const received = clock.now();

  // The next timer is the half-life refresh, counted from receipt (notBefore is backdated).
  source.failing = true;
  const jump = clock.runNext();
  t.ok(Math.abs(jump - (first.notAfter.getTime() - received) / 2) < 1000, `refresh at half-life (${jump} ms)`);
  await until('first failure', () => m.list().find((s) => s.identity === ID)!.failures === 1);
  t.equal(m.list().find((s) => s.identity === ID)!.state, CertState.Refreshing);
  t.equal(m.current(ID), first, 'old certificate kept');

  const retries: number[] = [];
  for (let n = 2; n <= 12; n++) {
    retries.push(clock.runNext());
    await until(`failure ${n}`, () => m.list().find((s) => s.identity === ID)!.failures === n);
    t.equal(m.current(ID), first, `still served after ${n} failures`);
  }
  retries.forEach((d, i) => {
    const base = Math.min(150_000, 500 * 2 ** i);
    t.ok(d >= base * 0.8 - 1 && d <= Math.min(150_000, base * 1.2) + 1, `retry ${i + 1} after ${d} ms (base ${base})`);
  });

  // Keep failing until the certificate expires: it is then withdrawn.
  while (clock.now() < first.notAfter.getTime()) {
    const failures = m.list().find((s) => s.identity === ID)!.failures;
    clock.runNext();
    if (clock.now() < first.notAfter.getTime()) await until('another failure', () => m.list().find((s) => s.identity === ID)!.failures > failures);
  }
  t.equal(m.list().find((s) => s.identity === ID)!.state, CertState.Expired);
  t.equal(m.current(ID), undefined, 'never serves an expired certificate');

  source.failing = false;
  const before = source.calls;
  const gap = clock.runNext();
  t.ok(gap <= 150_000, 'next retry within the cap');
  await until('recovery', () => m.current(ID) !== undefined);
  t.ok(source.calls > before);
  t.not(m.current(ID)!.serial, first.serial);
  t.equal(m.list().find((s) => s.identity === ID)!.failures, 0, 'failures reset');
  t.same(states, ['Pending->Ready', 'Ready->Refreshing', 'Refreshing->Expired', 'Expired->Ready']);

  m.stop();
  t.equal(clock.pending, 0, 'stop() clears every timer');
});

t.test('a first fetch that fails goes Pending -> Failed and retries; get() times out with the reason', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const source = new LocalSource(issuer, () => HOUR);
  const nodeKey = await generateKeyAndCsr();
  source.nodeCredentials = { keyPem: nodeKey.keyPem, certChainPem: issuer.signCsr(nodeKey.csrPem, { identity: nodeIdentity(TD), ttlMs: 24 * HOUR, commonName: 'node-1' }) };
  source.failing = true;
  const clock = new ManualClock(Date.now());
  const m = new CertificateManager({ client: source, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), clock, getTimeoutMs: 5000 });
  t.teardown(() => m.stop());
  const pending = m.get(ID);
  await until('failed', () => m.list().find((s) => s.identity === ID)?.state === CertState.Failed);
  // Timers: the waiter's timeout (5 s) and the first retry (~0.5 s). Run until the waiter gives up.
  while (clock.pending > 0 && clock.now() < Date.now() + 60_000) {
    clock.runNext();
    await new Promise((r) => setTimeout(r, 20));
    if (await Promise.race([pending.then(() => true, () => true), Promise.resolve(false)])) break;
  }
  await t.rejects(pending, { code: 'WEFT_CERT_UNAVAILABLE', message: /state Failed.*CA down/ });
});

t.test('Limiter: never more than max at once, in order, close() drops the queue', async (t) => {
  const limiter = new Limiter(2);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates: Array<() => void> = [];
  const task = (i: number) => limiter.run(async () => {
    running++;
    peak = Math.max(peak, running);
    order.push(i);
    await new Promise<void>((r) => gates.push(r));
    running--;
    return i;
  });
  const all = [0, 1, 2, 3, 4].map(task);
  await new Promise((r) => setImmediate(r));
  t.equal(running, 2);
  // Release one at a time; a newcomer arriving mid-handoff must still queue.
  while (order.length < 5 || gates.length > 0) {
    gates.shift()?.();
    await new Promise((r) => setImmediate(r));
    if (order.length === 3) void task(5).catch(() => undefined);
    t.ok(running <= 2, 'at most 2 running');
  }
  t.same(await Promise.all(all), [0, 1, 2, 3, 4]);
  t.equal(peak, 2);
  t.same(order.slice(0, 5), [0, 1, 2, 3, 4], 'first come, first served');
  const blocked = new Limiter(1);
  let release!: () => void;
  const first = blocked.run(() => new Promise<void>((r) => { release = r; }));
  const queued = blocked.run(async () => 'ran');
  blocked.close();
  await t.rejects(queued, /closed/);
  release();
  await first;
  await t.rejects(blocked.run(async () => 1), /closed/);
});
