// The Markdown tables of the benches and the fault suite (src/lib/markdown.ts): the docs
// quote them as printed, so the text is pinned here to the character, both the plain
// form (most benches, the fault suite) and the aligned one bench/lab.ts prints.
import t from 'tap';
import { inMiB, mdHeader, mdRow, mdTable } from '../src/lib/markdown';

t.test('mdRow and mdHeader: `| a | b |` and the `|---|` line, numbers as given', async (t) => {
  t.equal(mdRow(['ztunnel', 3, '1.50']), '| ztunnel | 3 | 1.50 |');
  t.equal(mdRow(['total', '', '267']), '| total |  | 267 |', 'an empty cell keeps its separators');
  t.equal(mdHeader(['group', 'bytes per']), '| group | bytes per |\n|---|---|');
  t.equal(mdRow(['ECONNRESET | closed', 2]), '| ECONNRESET \\| closed | 2 |', 'a `|` in a text cell is escaped, so it stays in its cell');
});

t.test('mdTable: the header, its line and the rows, no final newline', async (t) => {
  t.equal(mdTable(['a', 'b'], [['x', 1], ['y', 2]]), '| a | b |\n|---|---|\n| x | 1 |\n| y | 2 |');
  t.equal(mdTable(['a', 'b'], []), '| a | b |\n|---|---|', 'no rows: the header alone');
});

t.test('mdTable aligned: every column as wide as its widest cell, the line as wide', async (t) => {
  const text = mdTable(['path', 'Gb/s'], [['direct', '12.50'], ['weft', '3.1']], { aligned: true });
  t.equal(text, [
    '| path   | Gb/s  |',
    '|--------|-------|',
    '| direct | 12.50 |',
    '| weft   | 3.1   |',
  ].join('\n'));
});

t.test('inMiB: bytes as MiB, one decimal unless told, `–` for none', async (t) => {
  t.equal(inMiB(150 * 1024 * 1024), '150.0');
  t.equal(inMiB(3.45 * 2 ** 20 + 1, 2), '3.45');
  t.equal(inMiB(-0.5 * 2 ** 20), '-0.5', 'a difference may be negative');
  t.equal(inMiB(NaN), '–', 'a field /proc did not have');
});
