/**
 * The fault suite's command line, checked before anything runs: the suite takes the
 * machine's lab for up to 35 minutes, so an unknown flag (a typo, or `--help`) must be
 * refused or answered, never read as "run everything".
 */
import { parseArgs } from 'node:util';
import { WeftError } from '../lib/errors';
import { FULL, SHORT, type Durations } from './scenario';

export function faultsUsage(scenarioIds: readonly string[]): string {
  return [
    'usage: npm run faults -- [--short] [--only ID,ID...] [--hold SECONDS]',
    '  (no flags)      the full form: Redis 60 s, CA 10 min, 10,000 connections held 10 min, ... (~35 min)',
    '  --short         the CI form (test/e2e/faults.test.ts runs the same code)',
    `  --only IDS      only these scenarios: ${scenarioIds.join(', ')}`,
    "  --hold SECONDS  hold the connections this long (1-3600) instead of the form's time",
  ].join('\n');
}

export type FaultsArgs = { help: true } | { help: false; durations: Durations; only?: string[] };

export function parseFaultsArgs(argv: string[], scenarioIds: readonly string[]): FaultsArgs {
  const usage = (what: string) => new WeftError('WEFT_USAGE', `${what}\n${faultsUsage(scenarioIds)}`);
  let values: { short?: boolean; only?: string; hold?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: { short: { type: 'boolean' }, only: { type: 'string' }, hold: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    throw usage(`faults: ${(err as Error).message}`);
  }
  if (values.help) return { help: true };
  let durations = values.short ? SHORT : FULL;
  if (values.hold !== undefined) {
    const holdS = Number(values.hold);
    if (!Number.isInteger(holdS) || holdS < 1 || holdS > 3600) throw usage(`faults: invalid --hold=${JSON.stringify(values.hold)}: expected whole seconds from 1 to 3600`);
    durations = { ...durations, holdMs: holdS * 1000 };
  }
  let only: string[] | undefined;
  if (values.only !== undefined) {
    only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = only.filter((id) => !scenarioIds.includes(id));
    if (only.length === 0 || unknown.length > 0) throw usage(`faults: invalid --only=${JSON.stringify(values.only)}: unknown scenario ${unknown.join(', ') || '(none given)'}`);
  }
  return { help: false, durations, ...(only ? { only } : {}) };
}
