/**
 * Running the Gateway API conformance cases on the lab (test/fixtures/gateway/lab.yaml):
 * requests go from a client pod through the real path (source ztunnel → waypoint →
 * destination ztunnel → echo pod) in batches, one process per batch inside the pod
 * (`weft lab requests`); each answer is judged against upstream's expectation, and a
 * batch is sent again until every case holds (as upstream's
 * MakeRequestAndExpectEventuallyConsistentResponse does: a route applied a moment ago
 * reaches the waypoint through the registry), a bounded number of times.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import type { BatchAnswer, BatchRequest, BatchSummary } from '../../../src/lab/client-batch';
import { DIST, REPO_ROOT } from '../../../src/lab/paths';
import { run, type RunResult } from '../../../src/lab/run';
import type { LabHandle } from './lab';
import { judge, type Expect } from '../../helpers/conformance-judge';

export { joined, judge, type Expect } from '../../helpers/conformance-judge';

export const CONFORMANCE_TOPOLOGY = join(REPO_ROOT, 'test', 'fixtures', 'gateway', 'lab.yaml');
export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'gateway');

/** How often a batch is sent before its last answers are judged final. */
const TRIES = 40;
const PAUSE_MS = 150;

/**
 * Runs `weft lab <args>` in a pod's netns directly (`ip netns exec`, one process: no
 * `weft lab exec` in between, which would cost a second Node start per call).
 */
export async function labInPod(lab: LabHandle, pod: string, args: string[], input?: string): Promise<RunResult> {
  const p = lab.state()!.plan.pods.find((x) => x.uid === pod);
  if (!p) throw new Error(`no pod ${pod} in the lab`);
  return run('ip', ['netns', 'exec', p.netns, process.execPath, DIST.main, 'lab', ...args], { input, allowFailure: true, env: lab.env });
}

/** `weft lab requests` in a pod: the answers, in order. */
export async function sendBatch(lab: LabHandle, pod: string, reqs: BatchRequest[]): Promise<(BatchAnswer | BatchSummary)[]> {
  const res = await labInPod(lab, pod, ['requests'], JSON.stringify(reqs));
  if (res.code !== 0) throw new Error(`lab requests in ${pod} failed (${res.code}): ${res.stderr}`);
  return JSON.parse(res.stdout) as (BatchAnswer | BatchSummary)[];
}

export interface Case {
  /** Shown in the assertion. */
  name: string;
  pod: string;
  /** A function for requests that must differ on every send (the retry simulation's uuid). */
  request: BatchRequest | (() => BatchRequest);
  want: Expect;
}

/**
 * Sends every case (a batch per pod) until all hold or TRIES batches went by, then
 * asserts each case on its last answer. Returns how many batches it took.
 */
export async function expectCases(t: Test, lab: LabHandle, cases: Case[]): Promise<number> {
  const pods = [...new Set(cases.map((c) => c.pod))];
  let verdicts: string[][] = [];
  let answers: BatchAnswer[] = [];
  let tries = 0;
  while (tries < TRIES) {
    tries++;
    const byPod = await Promise.all(pods.map((pod) => {
      const mine = cases.filter((c) => c.pod === pod);
      return sendBatch(lab, pod, mine.map((c) => (typeof c.request === 'function' ? c.request() : c.request))).then((a) => new Map(mine.map((c, i) => [c, a[i] as BatchAnswer])));
    }));
    answers = cases.map((c) => byPod[pods.indexOf(c.pod)]!.get(c)!);
    verdicts = cases.map((c, i) => judge(c.want, answers[i]!));
    if (verdicts.every((v) => v.length === 0)) break;
    await new Promise((r) => setTimeout(r, PAUSE_MS));
  }
  cases.forEach((c, i) => t.same(verdicts[i], [], c.name));
  return tries;
}

/** `weft apply -f` / `weft delete -f` of a fixture; throws with the CLI's output when it fails. */
export async function applyFixture(lab: LabHandle, verb: 'apply' | 'delete', manifest: string): Promise<void> {
  const res = await lab.weft([verb, '-f', join(FIXTURES, manifest)]);
  if (res.code !== 0) throw new Error(`weft ${verb} -f ${manifest} failed (${res.code}): ${res.stderr}${res.stdout}`);
}

/** `weft apply -f -` of YAML text. */
export async function applyText(lab: LabHandle, verb: 'apply' | 'delete', yaml: string): Promise<void> {
  const res = await lab.weft([verb, '-f', '-'], yaml);
  if (res.code !== 0) throw new Error(`weft ${verb} -f - failed (${res.code}): ${res.stderr}${res.stdout}\n${yaml}`);
}

/** kind/namespace/name of every object in a fixture. */
function objectKeys(manifest: string): string[] {
  return parseAllDocuments(readFileSync(join(FIXTURES, manifest), 'utf8')).map((d) => {
    const o = d.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } };
    return `${o.kind}/${o.metadata?.namespace}/${o.metadata?.name}`;
  });
}

/**
 * Replaces the objects of fixture `from` with those of `to`. Two CLI runs in parallel
 * when the two name different objects; when they share a name (upstream reuses route
 * names across manifests) the delete must land before the apply, or it would delete
 * what the apply just wrote.
 */
export async function switchFixture(lab: LabHandle, from: string | undefined, to: string | undefined): Promise<void> {
  if (from === to) return;
  const shared = from && to ? objectKeys(from).some((k) => objectKeys(to).includes(k)) : false;
  if (shared) {
    await applyFixture(lab, 'delete', from!);
    await applyFixture(lab, 'apply', to!);
    return;
  }
  await Promise.all([from && applyFixture(lab, 'delete', from), to && applyFixture(lab, 'apply', to)]);
}
