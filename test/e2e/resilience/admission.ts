// The admission section of test/e2e/resilience.test.ts (on the shared resilience lab):
// TrafficPolicy faults, rateLimit and loadShedding on demo/echo, through demo/waypoint,
// with open-loop load from demo/client (`weft lab load`). Each phase applies its own
// policy (a new policy version: fresh admission state) and checks its own counters.
//
// - Faults: abort 503 at 50 % and delay 200 ms at 10 % over 1,000 requests: the abort
//   share within ±5 % of 50 %, the delay share within ±3 % of 10 % (counted by the
//   waypoint's admission metrics; cross-checked by the client's latencies).
// - Rate limit: 100 req/s (burst 50), 500 req/s offered for 4 s: the sustained accepted
//   rate is 100 req/s ± 5 %, every other answer 429 with retry-after (flag RL). Over T s
//   a bucket admits rate x T + burst: the burst is the allowance after a quiet spell, so
//   the sustained rate is (accepted - burst) / T; the burst is large enough that a stall
//   of the busy lab machine (under 0.5 s) loses no tokens.
// - Shedding: both echo pods then serve at most 2 requests at a time, 20 ms each (the lab
//   echo's behaviour, set live; reset when the section ends), so demo/echo handles about
//   200 req/s; 400 req/s are offered for 3 s. With loadShedding (Gradient) the excess is
//   answered 503 (flag SH) at once and the accepted requests' p99 stays near the service
//   time; without it, every request is accepted and waits in the backends' queues.
// Figures printed for docs/resilience.md.
import type { Test } from 'tap';
import type { BatchAnswer } from '../../../src/lab/client-batch';
import { percentile } from '../../../src/bench/stats';
import { sendBatch } from '../helpers/conformance';
import { applyPolicy, deletePolicy, load, scrape, spread, sumOf, type AdmissionLab } from '../helpers/admission-lab';
import { sectionDir, setBehaviour, settle, type ResilienceLab } from '../helpers/resilience-lab';

const REQUESTS = 1000;
const BURST = 50;
const OFFERED = { rate: 400, durationMs: 3000, conns: 256 };

/** Faults, then a rate limit, then load shedding; leaves no policy, and the echo pods' behaviour as it was. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('admission on the lab: faults, then a rate limit, then load shedding', async (t) => {
    const a: AdmissionLab = { lab: r.lab, dir: sectionDir(r, 'admission'), waypointIp: r.waypointIp };
    t.teardown(async () => {
      for (const pod of ['demo/echo-1', 'demo/echo-2']) await setBehaviour(r.lab, pod, 'serviceTime=0&concurrency=0');
      await deletePolicy(a).catch(() => undefined); // gone already unless a phase failed
      await settle(r);
    });
    await t.test('abort 50 %, delay 200 ms at 10 %, over 1,000 requests', (t) => faults(t, a));
    await t.test('100 req/s limit, 500 req/s offered: 100 ± 5 % accepted, the rest 429', (t) => rateLimit(t, a));
    await t.test('backend saturated: the adaptive limit keeps accepted p99 bounded while the excess is shed', (t) => shedding(t, a));
  });
}

async function faults(t: Test, a: AdmissionLab): Promise<void> {
  await applyPolicy(a, `  faults:
    abort: { httpStatus: 503, percentage: 50 }
    delay: { fixedDelay: 200ms, percentage: 10 }
`);
  const r = await load(a, { rate: 200, durationMs: (REQUESTS / 200) * 1000, conns: 32 });
  t.equal(r.requests, REQUESTS);
  t.same(r.errors, {}, 'every request answered');
  const aborted = r.statuses['503'] ?? 0;
  // One read of the waypoint's metrics after the load: every counter below comes from it.
  const page = await scrape(a);
  const delays = sumOf(page, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'fault_delay' });
  const aborts = sumOf(page, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'fault_abort' });
  const all = [...(r.latencies['200'] ?? []), ...(r.latencies['503'] ?? [])];
  const slow = all.filter((ms) => ms >= 200).length;
  t.comment(`aborted ${aborted} of ${REQUESTS} (${(aborted / 10).toFixed(1)} %), delayed ${delays} (${(delays / 10).toFixed(1)} %); client saw ${slow} answers of 200 ms or more`);
  t.comment(`latency: 200 ${spread(r.latencies['200'] ?? [])}; 503 ${spread(r.latencies['503'] ?? [])}`);
  t.same(Object.keys(r.statuses).sort(), ['200', '503']);
  t.equal(aborts, aborted, 'every 503 is an injected abort');
  t.equal(sumOf(page, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: 'FI' }), aborted, 'counted with flag FI');
  const di = sumOf(page, 'istio_requests_total', { destination_service_name: 'echo', response_code: '200', response_flags: 'DI' });
  t.comment(`forwarded after a delay (200, flag DI): ${di}; the other ${delays - di} delayed requests were then aborted`);
  t.ok(di > 0 && di <= delays, 'forwarded delayed requests counted with flag DI');
  t.ok(Math.abs(aborted / REQUESTS - 0.5) <= 0.05, `abort share ${(aborted / 10).toFixed(1)} % within 50 ± 5 %`);
  t.ok(Math.abs(delays / REQUESTS - 0.1) <= 0.03, `delay share ${(delays / 10).toFixed(1)} % within 10 ± 3 %`);
  t.ok(slow >= delays, 'every delayed request took at least the delay');
}

async function rateLimit(t: Test, a: AdmissionLab): Promise<void> {
  await applyPolicy(a, `  rateLimit: { requestsPerSecond: 100, burst: ${BURST} }\n`);
  const r = await load(a, { rate: 500, durationMs: 4000, conns: 32 });
  const ok = r.statuses['200'] ?? 0;
  const limited = r.statuses['429'] ?? 0;
  const seconds = r.elapsedMs / 1000;
  const accepted = (ok - BURST) / seconds;
  t.comment(`offered ${r.requests} requests in ${r.elapsedMs} ms (${(r.requests / seconds).toFixed(0)} req/s): ${ok} accepted (${BURST} of them the burst) = ${accepted.toFixed(1)} req/s sustained, ${limited} answered 429`);
  t.comment(`latency: accepted ${spread(r.latencies['200'] ?? [])}; 429 ${spread(r.latencies['429'] ?? [])}`);
  t.same(r.errors, {}, 'every request answered');
  t.same(Object.keys(r.statuses).sort(), ['200', '429'], 'only 200 and 429');
  t.ok(r.requests / seconds > 300, `the offered rate stayed well above the limit (${(r.requests / seconds).toFixed(0)} req/s)`);
  t.ok(accepted >= 95 && accepted <= 105, `accepted ${accepted.toFixed(1)} req/s within 100 ± 5 %`);
  const page = await scrape(a);
  const rl = sumOf(page, 'istio_requests_total', { destination_service_name: 'echo', response_code: '429', response_flags: 'RL' });
  t.equal(rl, limited, 'every 429 counted with flag RL');
  t.equal(sumOf(page, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'rate_limited' }), limited, 'and as rate_limited');
  // A 429's head, after a live edit to 1 req/s (a new policy version: fresh buckets).
  await applyPolicy(a, '  rateLimit: { requestsPerSecond: 0.5, burst: 1 }\n');
  const answers = await sendBatch(a.lab, 'demo/client', [{ url: 'http://echo.demo/' }, { url: 'http://echo.demo/' }]) as BatchAnswer[];
  t.same(answers.map((x) => x.status), [200, 429], 'the edit is in force at once');
  const refused = answers[1];
  t.equal(refused?.headers?.['retry-after'], '2', 'with retry-after in seconds (one token per 2 s)');
  t.match(String(refused?.body), /local rate limit of demo\/echo exceeded/, 'and a body saying why');
}

async function shedding(t: Test, a: AdmissionLab): Promise<void> {
  // Both echo pods serve 2 at a time, 20 ms each, until the section ends (live: same lab as above).
  for (const pod of ['demo/echo-1', 'demo/echo-2']) {
    const res = await a.lab.exec(pod, ['weft', 'lab', 'request', 'http://127.0.0.1:8080/_echo/behaviour?serviceTime=20ms&concurrency=2']);
    t.equal(res.code, 0, `behaviour of ${pod}: ${res.stderr}`);
  }
  await applyPolicy(a, '  loadShedding: { algorithm: Gradient, gradient: { minRttRequests: 20 } }\n');
  const shed = await load(a, OFFERED);
  const page = await scrape(a);
  const limit = sumOf(page, 'weft_waypoint_concurrency_limit', { destination_service_name: 'echo' });
  const shedCount = shed.statuses['503'] ?? 0;
  const okWith = shed.latencies['200'] ?? [];
  t.comment(`with loadShedding: ${okWith.length} accepted (${(okWith.length / (shed.elapsedMs / 1000)).toFixed(0)} req/s), ${shedCount} shed; accepted ${spread(okWith)}; shed ${spread(shed.latencies['503'] ?? [])}; concurrency limit at the end ${limit}`);
  t.same(shed.errors, {}, 'every request answered');
  t.same(Object.keys(shed.statuses).sort(), ['200', '503'], 'accepted or shed, nothing else');
  t.ok(shedCount > 0, 'the excess was shed');
  t.equal(sumOf(page, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: 'SH' }), shedCount, 'every 503 counted with flag SH');

  const view = await a.lab.weft(['admission']);
  t.equal(view.code, 0, view.stderr);
  t.match(view.stdout, /demo\/echo\s+loadShedding\s+0\s+0\s+0\s+\d+/, 'weft admission shows the Service with its shed count');
  t.comment(`weft admission:\n${view.stdout.trimEnd()}`);

  await deletePolicy(a);
  const plain = await load(a, OFFERED);
  const okWithout = plain.latencies['200'] ?? [];
  const flags: Record<string, number> = {};
  const after = await scrape(a);
  for (const flag of ['-', 'SH', 'UO', 'UH', 'UF', 'UT', 'URX', 'UC']) {
    const n = sumOf(after, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: flag });
    if (n > 0) flags[flag] = n;
  }
  t.comment(`without a policy: ${okWithout.length} accepted, statuses ${JSON.stringify(plain.statuses)}; accepted ${spread(okWithout)}; the waypoint's 503s of both phases by flag ${JSON.stringify(flags)}`);
  t.same(plain.errors, {});
  const p99With = percentile(okWith, 99);
  const p99Without = percentile(okWithout, 99);
  t.comment(`accepted p99: ${p99With.toFixed(1)} ms with shedding, ${p99Without.toFixed(1)} ms without (${(p99Without / p99With).toFixed(1)}x)`);
  t.ok(p99With < p99Without, 'shedding keeps the accepted requests\' p99 below the unshed queue\'s');
}
