// The fault suite's command line: a typo or --help must never start the 35-minute run
// on the machine's lab (it once did: `node dist/faults/main.js --help` ran the full suite).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { faultsUsage, parseFaultsArgs } from '../src/faults/args';
import { FULL, SHORT } from '../src/faults/scenario';
import { SCENARIOS } from '../src/faults/suite';
import { assertDistFresh } from './helpers/built';

const IDS = SCENARIOS.map((s) => s.id);

t.test('the forms, --only and --hold', async (t) => {
  t.same(parseFaultsArgs([], IDS), { help: false, durations: FULL });
  t.same(parseFaultsArgs(['--short'], IDS), { help: false, durations: SHORT });
  t.same(parseFaultsArgs(['--only', 'redis,kill'], IDS), { help: false, durations: FULL, only: ['redis', 'kill'] });
  t.same(parseFaultsArgs(['--short', '--hold', '60'], IDS), { help: false, durations: { ...SHORT, holdMs: 60_000 } });
  t.same(parseFaultsArgs(['--help'], IDS), { help: true });
  t.same(parseFaultsArgs(['-h', '--short'], IDS), { help: true });
});

t.test('anything else is refused with the usage, naming what was wrong', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--shrot'], /Unknown option '--shrot'/],
    [['run'], /Unexpected argument 'run'|positional/i],
    [['--only', 'redis,nope'], /invalid --only="redis,nope": unknown scenario nope/],
    [['--only', ','], /invalid --only=",": unknown scenario \(none given\)/],
    [['--hold', '0'], /invalid --hold="0": expected whole seconds from 1 to 3600/],
    [['--hold', '1.5'], /invalid --hold="1.5"/],
    [['--hold'], /argument missing|--hold/],
  ];
  for (const [argv, why] of cases) {
    t.throws(() => parseFaultsArgs(argv, IDS), { code: 'WEFT_USAGE', message: why }, argv.join(' '));
    t.throws(() => parseFaultsArgs(argv, IDS), { message: /usage: npm run faults -- \[--short\]/ }, `${argv.join(' ')}: with the usage`);
  }
  t.match(faultsUsage(IDS), IDS.join(', '), 'the usage lists the scenarios');
});

t.test('the built entry point answers --help and refuses a typo without taking the lab', async (t) => {
  assertDistFresh();
  const main = join(__dirname, '..', 'dist', 'faults', 'main.js');
  const help = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(help.status, 0);
  t.match(help.stdout, /^usage: npm run faults/);
  t.notMatch(help.stderr, /lab lock|bringing up/, 'no lab');
  const typo = spawnSync(process.execPath, [main, '--shrot'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(typo.status, 2);
  t.match(typo.stderr, /Unknown option '--shrot'/);
  t.notMatch(typo.stderr, /lab lock|bringing up/, 'no lab');
});
