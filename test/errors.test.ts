import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CATALOGUE, WeftError, isWeftError, type ErrorCode } from '../src/lib/errors';

const doc = readFileSync(join(__dirname, '..', 'docs', 'errors.md'), 'utf8');
const documented = new Set([...doc.matchAll(/^\| `(WEFT_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
const catalogued = new Set(Object.keys(ERROR_CATALOGUE));

t.test('every catalogued code is documented', async (t) => {
  for (const code of catalogued) t.ok(documented.has(code), `${code} is in docs/errors.md`);
});

t.test('every documented code exists', async (t) => {
  for (const code of documented) t.ok(catalogued.has(code), `${code} is in src/lib/errors.ts`);
});

t.test('codes are well-formed and carry a summary', async (t) => {
  for (const [code, summary] of Object.entries(ERROR_CATALOGUE)) {
    t.match(code, /^WEFT_[A-Z0-9_]+$/);
    t.ok(summary.length > 10, `${code} has a summary`);
  }
});

t.test('WeftError carries code, cause and details', async (t) => {
  const cause = new Error('inner');
  const err = new WeftError('WEFT_USAGE', 'bad', { cause, details: { flag: 'x' } });
  t.equal(err.code, 'WEFT_USAGE' satisfies ErrorCode);
  t.equal(err.cause, cause);
  t.same(err.details, { flag: 'x' });
  t.ok(isWeftError(err));
  t.ok(isWeftError(err, 'WEFT_USAGE'));
  t.notOk(isWeftError(err, 'WEFT_CONFIG_INVALID'));
  t.notOk(isWeftError(new Error('plain')));
});
