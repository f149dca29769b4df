// Local rate limit on the lab: TrafficPolicy rateLimit 100 req/s (burst 50) on demo/echo,
// 500 req/s offered open-loop from demo/client for 4 s through demo/waypoint: the sustained
// accepted rate is 100 req/s ± 5 %, every other answer 429 with retry-after (flag RL in the
// waypoint's metrics). Over T s a bucket admits rate x T + burst: the burst is the allowance
// after a quiet spell, so the sustained rate is (accepted - burst) / T. The burst is large
// enough that a stall of the busy lab machine (under 0.5 s) loses no tokens. Figures
// printed for docs/resilience.md.
import t from 'tap';
import type { BatchAnswer } from '../../src/lab/client-batch';
import { sendBatch } from './helpers/conformance';
import { labSkipReason } from './helpers/lab';
import { applyPolicy, load, metric, spread, startAdmissionLab } from './helpers/admission-lab';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else run();

const BURST = 50;

function run(): void {
  t.test('100 req/s limit, 500 req/s offered: 100 ± 5 % accepted, the rest 429', async (t) => {
    const a = await startAdmissionLab(t);
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
    const rl = await metric(a, 'istio_requests_total', { destination_service_name: 'echo', response_code: '429', response_flags: 'RL' });
    t.equal(rl, limited, 'every 429 counted with flag RL');
    t.equal(await metric(a, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'rate_limited' }), limited, 'and as rate_limited');
    // A 429's head, after a live edit to 1 req/s (a new policy version: fresh buckets).
    await applyPolicy(a, '  rateLimit: { requestsPerSecond: 0.5, burst: 1 }\n');
    const answers = await sendBatch(a.lab, 'demo/client', [{ url: 'http://echo.demo/' }, { url: 'http://echo.demo/' }]) as BatchAnswer[];
    t.same(answers.map((x) => x.status), [200, 429], 'the edit is in force at once');
    const refused = answers[1];
    t.equal(refused?.headers?.['retry-after'], '2', 'with retry-after in seconds (one token per 2 s)');
    t.match(String(refused?.body), /local rate limit of demo\/echo exceeded/, 'and a body saying why');
  });
}
