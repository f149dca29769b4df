/**
 * `npm run faults`: the fault suite on its own lab (root). Brings the lab up through
 * the real CLI in <repo>/.weft-lab/faults, runs each scenario under steady traffic,
 * prints one table (scenario | goal | measured | verdict) and takes the lab down.
 *
 *   npm run faults -- --help    the forms and flags (src/faults/args.ts)
 *
 * Exit 1 when any scenario fails. Takes the machine-wide lab lock, so it waits for e2e
 * tests (and they for it).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../lab/paths';
import { withLab } from '../lab/session';
import { isWeftError } from '../lib/errors';
import { FaultLab } from './lab';
import { faultsUsage, parseFaultsArgs } from './args';
import { ABUSE_ROW, runScenarios, SCENARIOS, table } from './suite';

async function main(): Promise<number> {
  const ids = SCENARIOS.map((s) => s.id);
  const args = parseFaultsArgs(process.argv.slice(2), ids);
  if (args.help) {
    process.stdout.write(`${faultsUsage(ids)}\n`);
    return 0;
  }
  const { durations, only } = args;
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
  if (isWeftError(err) && err.code === 'WEFT_USAGE') {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`faults: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
