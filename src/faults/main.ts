/**
 * `npm run faults`: the fault suite on its own lab (root). Brings the lab up through
 * the real CLI in <repo>/.weft-lab/faults, runs each scenario under steady traffic,
 * prints one table (scenario | goal | measured | verdict) and takes the lab down.
 *
 *   npm run faults                       full durations (Redis 60 s, CA 10 min, 10,000 connections 10 min, ...)
 *   npm run faults -- --short            the CI form (test/e2e/faults.test.ts runs the same code)
 *   npm run faults -- --only redis,kill  some scenarios
 *   npm run faults -- --hold 60          hold the connections 60 s instead of the form's time
 *
 * Exit 1 when any scenario fails. Takes the machine-wide lab lock, so it waits for e2e
 * tests (and they for it).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../lab/paths';
import { withLab } from '../lab/session';
import { FaultLab } from './lab';
import { FULL, SHORT } from './scenario';
import { ABUSE_ROW, runScenarios, SCENARIOS, table } from './suite';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let durations = argv.includes('--short') ? SHORT : FULL;
  if (argv.includes('--hold')) {
    const holdS = Number(argv[argv.indexOf('--hold') + 1]);
    if (!Number.isInteger(holdS) || holdS < 1 || holdS > 3600) throw new Error('--hold takes whole seconds from 1 to 3600');
    durations = { ...durations, holdMs: holdS * 1000 };
  }
  const onlyArg = argv[argv.indexOf('--only') + 1];
  const only = argv.includes('--only') && onlyArg ? onlyArg.split(',') : undefined;
  const unknown = only?.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown?.length) throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}`);
  if (process.getuid?.() !== 0) throw new Error('the fault suite needs root (it runs the lab: network namespaces, iptables)');
  const labDir = process.env.WEFT_FAULTS_LAB_DIR ?? join(REPO_ROOT, '.weft-lab', 'faults');
  mkdirSync(labDir, { recursive: true });
  const contextFile = join(labDir, 'context.json');
  const env = { ...process.env, ...durations.labEnv, WEFT_LAB_DIR: labDir, WEFT_CONTEXT: contextFile };
  const progress = (l: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${l}\n`);
  progress(`faults: ${durations.name} form`);
  return withLab({ env, progress: (l) => progress(`faults: ${l}`) }, async (onAbort) => {
    const lab = FaultLab.fromContextFile(contextFile, env);
    onAbort(() => lab.stopTraffic());
    try {
      const started = Date.now();
      const rows = await runScenarios(lab, durations, only, progress);
      rows.push(ABUSE_ROW);
      process.stdout.write(`\nWeft fault suite, ${durations.name} form, ${new Date().toISOString()}, ${((Date.now() - started) / 60_000).toFixed(1)} min\n\n${table(rows)}\n`);
      return rows.some((r) => r.verdict === 'FAIL') ? 1 : 0;
    } finally {
      lab.stopTraffic();
    }
  });
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`faults: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
