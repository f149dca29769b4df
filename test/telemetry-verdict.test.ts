/**
 * The verdicts of finished requests and connections (src/telemetry/verdict.ts): one
 * table over every flag the waypoint and the ztunnel raise.
 */
import t from 'tap';
import { connectionVerdict, requestVerdict } from '../src/telemetry/verdict';
import { RESPONSE_FLAGS } from '../src/waypoint/metrics';
import { TAP_VERDICTS } from '../src/telemetry/types';

t.test('requests: the flag says what the proxy did', async (t) => {
  const cases: Array<[flag: string, attempts: number, status: number, verdict: string]> = [
    ['-', 1, 200, 'routed'],
    ['-', 1, 503, 'routed'],
    ['-', 0, 301, 'routed'],
    ['-', 3, 200, 'retried'],
    ['UAEX', 0, 403, 'denied'],
    ['SH', 0, 503, 'shed'],
    ['RL', 0, 429, 'limited'],
    ['UO', 0, 503, 'overflow'],
    ['FI', 0, 503, 'faulted'],
    ['DI', 1, 200, 'faulted'],
    ['UH', 0, 503, 'ejected'],
    ['NR', 0, 404, 'no_route'],
    ['DC', 1, 0, 'cancelled'],
    ['UF', 1, 503, 'failed'],
    ['UT', 1, 504, 'failed'],
    ['UC', 1, 200, 'failed'],
    ['URX', 3, 503, 'failed'],
    ['UF', 2, 200, 'retried'],
    ['UT', 2, 0, 'failed'],
    ['DPE', 0, 400, 'failed'],
  ];
  for (const [responseFlag, attempts, status, verdict] of cases) {
    t.equal(requestVerdict({ responseFlag, attempts, status }), verdict, `${responseFlag} after ${attempts} attempt(s), ${status}`);
  }
  for (const responseFlag of RESPONSE_FLAGS) {
    t.ok((TAP_VERDICTS as readonly string[]).includes(requestVerdict({ responseFlag, attempts: 1, status: 200 })), `${responseFlag} has a verdict`);
  }
});

t.test('connections: DENY is denied, any other flag failed', async (t) => {
  t.equal(connectionVerdict('-'), 'routed');
  t.equal(connectionVerdict('DENY'), 'denied');
  for (const flag of ['CONNECT', 'TLS_FAILURE', 'NO_HEALTHY_UPSTREAM', 'NO_ROUTE', 'LOOP', 'NO_WAYPOINT', 'BAD_REQUEST', 'UPSTREAM_RESET', 'DOWNSTREAM_RESET', 'ABORTED']) {
    t.equal(connectionVerdict(flag), 'failed', flag);
  }
});
