/**
 * The lab of the observability demonstrations (test/e2e/observability.test.ts; one
 * bring-up for every view, to keep the suite short): the default topology plus a
 * `frontend` pod and Service in demo, demo/waypoint on node-2 serving the demo namespace,
 * tracing at 100 % in every proxy, and demo traffic on demand: demo/client calls
 * frontend.demo, which calls echo.demo (a two-hop chain through the waypoint, lab echo's
 * `?via=`), and echo.demo directly; legacy/client calls echo.legacy (L4, not in the mesh).
 */
import type { Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { defaultTopologyFile, DIST } from '../../../src/lab/paths';
import type { LoadSummary } from '../../../src/lab/client-load';
import { bindDemoToWaypoint, startLab, type LabHandle } from './lab';

export interface ObservabilityLab {
  lab: LabHandle;
  /** A scratch directory removed at teardown (screenshots go to test artefacts instead: artefactDir). */
  dir: string;
  waypointIp: string;
  /** Node addresses by name (ztunnel metrics at <address>:15020). */
  nodes: Record<string, string>;
  /** Where views' pictures go (kept after the run: .weft-lab/artefacts/observability). */
  artefactDir: string;
  /** Demo traffic for `seconds`: chain and direct requests from demo/client, L4 from legacy/client. Resolves when it ended. */
  traffic(opts?: { seconds?: number; rate?: number; path?: string }): Promise<LoadSummary[]>;
  /**
   * The same traffic for a view that needs requests only while it looks: runs until
   * `stop()` (at most `seconds`), without a summary.
   */
  backgroundTraffic(opts: { seconds: number; rate?: number }): { stop(): Promise<void> };
}

const EXTRA = {
  pods: '  - { name: frontend, namespace: demo, node: node-1, serviceAccount: frontend, labels: { app: frontend }, run: echo }\n',
  services: '  - name: frontend\n    namespace: demo\n    selector: { app: frontend }\n    ports:\n      - { name: http, port: 80, targetPort: 8080 }\n',
};

export async function startObservabilityLab(t: Test): Promise<ObservabilityLab> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-observability-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let text = readFileSync(defaultTopologyFile(), 'utf8');
  // Appended at the end of each list: the addresses and VIPs of the others stay as documented.
  text = text.replace(/\nservices:\n/, `\n${EXTRA.pods}\nservices:\n`);
  text = `${text.trimEnd()}\n${EXTRA.services}\nwaypoints:\n  - { name: waypoint, namespace: demo, node: node-2 }\n`;
  writeFileSync(join(dir, 'lab.yaml'), text);
  const lab = await startLab(t, { topology: join(dir, 'lab.yaml'), env: { WEFT_TRACE_SAMPLING: '1' } });
  const state = lab.state()!;
  const waypointIp = state.waypoints!.find((w) => w.uid === 'demo/waypoint')!.ip;
  const nodes = Object.fromEntries(lab.context.nodes.map((n) => [n.name, n.address!]));
  const artefactDir = join(lab.labDir, '..', 'artefacts', 'observability');
  const targets = (path = '/'): [string, string][] => [
    ['demo/client', `http://frontend.demo${path}?via=echo.demo`],
    ['demo/client', `http://echo.demo${path}`],
    ['legacy/client', 'http://echo.legacy/'],
  ];
  const loadArgs = (url: string, seconds: number, rate: number) => ['lab', 'load', url, '--rate', String(rate), '--duration', `${seconds * 1000}ms`, '--conns', '4'];
  const o: ObservabilityLab = {
    lab, dir, waypointIp, nodes, artefactDir,
    async traffic(opts = {}) {
      const seconds = opts.seconds ?? 3;
      const rate = opts.rate ?? 20;
      const load = async (pod: string, url: string): Promise<LoadSummary> => {
        const res = await lab.exec(pod, ['weft', ...loadArgs(url, seconds, rate)]);
        if (!res.stdout.trim()) throw new Error(`weft lab load ${url} from ${pod} failed (${res.code}): ${res.stderr}`);
        return JSON.parse(res.stdout) as LoadSummary;
      };
      return Promise.all(targets(opts.path).map(([pod, url]) => load(pod, url)));
    },
    backgroundTraffic(opts) {
      // `weft lab load` in the pod's netns directly (as `weft lab exec` runs it), so it can be stopped by its pid.
      const children = targets().map(([pod, url]) => {
        const netns = state.plan.pods.find((p) => p.uid === pod)!.netns;
        const child = spawn('ip', ['netns', 'exec', netns, process.execPath, DIST.main, ...loadArgs(url, opts.seconds, opts.rate ?? 20)],
          { env: lab.env, stdio: 'ignore' });
        return { child, exited: new Promise<void>((r) => child.once('close', () => r())) };
      });
      return {
        async stop() {
          for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM');
          await Promise.all(children.map((c) => c.exited));
        },
      };
    },
  };
  await bindDemoToWaypoint(lab, waypointIp);
  return o;
}
