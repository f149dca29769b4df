// The fault suite's table (src/faults/suite.ts): docs/reliability.md quotes it as printed,
// so the text is pinned here to the character, a `|` inside a cell escaped.
import t from 'tap';
import { table } from '../src/faults/suite';

t.test('table: scenario | goal | measured | verdict, a `|` in a cell escaped', async (t) => {
  const text = table([
    { scenario: 'redis', goal: 'traffic keeps flowing', measured: '0 failed | 1200 ok', verdict: 'PASS', functional: true },
    { scenario: 'ca', goal: '(scenario did not complete)', measured: 'error: boom', verdict: 'FAIL', functional: false },
  ]);
  t.equal(text, [
    '| scenario | goal | measured | verdict |',
    '|---|---|---|---|',
    '| redis | traffic keeps flowing | 0 failed \\| 1200 ok | PASS |',
    '| ca | (scenario did not complete) | error: boom | FAIL |',
  ].join('\n'));
  t.equal(table([]), '| scenario | goal | measured | verdict |\n|---|---|---|---|', 'no rows: the header alone');
});
