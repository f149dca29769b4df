// The safe regex engine (src/gateway/regex.ts): whole-value matches agreeing with JS
// RegExp on the subset, linear work on patterns that make backtrackers explode, and
// refusals that name the unsupported construct.
import t from 'tap';
import { MAX_PROGRAM, RegexError, compileRegex } from '../src/gateway/regex';

// [pattern, inputs]: each input is checked against JS RegExp's ^(?:pattern)$, which agrees on this subset.
const TABLE: Array<[string, string[]]> = [
  ['abc', ['abc', 'ab', 'abcd', '', 'xabc']],
  ['/api/.*', ['/api/', '/api/v1/users', '/api', '/apix', '/API/x']],
  ['/v[0-9]+/items/[a-z0-9-]{1,36}', ['/v1/items/abc-1', '/v12/items/', '/v/items/a', '/v3/items/' + 'a'.repeat(36), '/v3/items/' + 'a'.repeat(37)]],
  ['a|b|cd', ['a', 'b', 'cd', 'c', 'ab', '']],
  ['(a|b)*c', ['c', 'abababc', 'abca', 'ac', 'bbbbbbbbbbbbbbbbbbbbbc']],
  ['(?:foo|bar)+baz?', ['foobarba', 'foobaz', 'barbarbarbaz', 'baz', 'fooba']],
  ['x{3}', ['xxx', 'xx', 'xxxx']],
  ['x{2,}', ['x', 'xx', 'xxxxxxx']],
  ['x{2,4}y', ['xy', 'xxy', 'xxxy', 'xxxxy', 'xxxxxy']],
  ['x{0}y', ['y', 'xy']],
  ['x{,3}', ['x{,3}', 'xxx']],
  ['a{b', ['a{b', 'ab']],
  ['\\d+\\.\\d+', ['1.5', '10.25', '1x5', '.5', '1.']],
  ['\\w+@\\w+\\.com', ['joe@example.com', 'joe@ex-ample.com', '@x.com']],
  ['\\s*\\S+\\s*', ['  hi  ', 'hi', ' ', 'h i']],
  ['\\D\\W', ['a-', '1-', 'aa']],
  ['[^/]+/[^/]+', ['a/b', 'a/b/c', '/b', 'a/']],
  ['[a-cx-z]+', ['abcxyz', 'abd', 'zzz']],
  ['[\\d.-]+', ['1.2-3', '1,2']],
  ['[-a]+', ['-a-', 'b']],
  ['[a-]+', ['-a-', 'b']],
  ['.', ['a', '\n', '', 'ab', '\u00e9']],
  ['.*', ['', 'anything at all', 'line\nbreak']],
  ['^abc$', ['abc', 'abcd']],
  ['a^b', ['ab']],
  ['a$|b', ['a', 'b', 'ab']],
  ['\\bfoo\\b.*', ['foo bar', 'foobar']],
  ['.*\\Bar', ['bar', 'foobar']],
  ['(a*)*', ['', 'a', 'aaaa', 'b']],
  ['(a|)+b', ['b', 'aab']],
  ['(a?){5}a{5}', ['aaaaa', 'aaaaaaaaaa', 'aaaa', 'aaaaaaaaaaa']],
  ['\\x41\\t', ['A\t', 'A ']],
  ['\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$\\/', ['()[]{}*+?|^$/']],
  ['(?:a+?)b', ['aaab', 'b']],
  ['(?<year>\\d{4})-(?<m>\\d\\d)', ['2024-01', '24-01']],
  ['[\\]a]+', [']a]', 'b']],
  ['[.]', ['.', 'a']],
  ['', ['', 'a']],
  ['(){2}a', ['a', '']],
  ['(^)?a(b$)*', ['a', 'ab', 'abb']],
  ['(|a)*b', ['b', 'aab']],
];

t.test('agrees with JS RegExp (whole-value match) on a table of patterns and inputs', async (t) => {
  let checked = 0;
  for (const [pattern, inputs] of TABLE) {
    const safe = compileRegex(pattern);
    const js = new RegExp(`^(?:${pattern})$`);
    for (const input of inputs) {
      t.equal(safe.matches(input), js.test(input), `${JSON.stringify(pattern)} on ${JSON.stringify(input)}`);
      checked++;
    }
  }
  t.ok(checked > 100, `${checked} cases`);
});

t.test('whole-value match, not search', async (t) => {
  t.ok(compileRegex('/foo').matches('/foo'));
  t.notOk(compileRegex('/foo').matches('/foo/bar'), 'a prefix is not a match');
  t.notOk(compileRegex('foo').matches('xfoo'), 'nor a suffix');
  t.ok(compileRegex('/foo.*').matches('/foo/bar'));
});

t.test('RE2 syntax JS lacks: ]-first classes, POSIX classes, \\A \\z, (?i), \\x{...}', async (t) => {
  t.ok(compileRegex('[]a]+').matches(']a'), '] right after [ is a literal');
  t.ok(compileRegex('[^]a]').matches('b'));
  t.notOk(compileRegex('[^]a]').matches(']'));
  t.ok(compileRegex('[[:alpha:]]+[[:digit:]]').matches('abc1'));
  t.notOk(compileRegex('[[:^alpha:]]').matches('a'));
  t.ok(compileRegex('\\Aab\\z').matches('ab'));
  t.ok(compileRegex('(?i)/Api/[a-z]+').matches('/aPI/ABC'), '(?i) folds ASCII case, classes included');
  t.ok(compileRegex('x(?i:ab)c').matches('xABc'));
  t.notOk(compileRegex('x(?i:ab)c').matches('xABC'), '(?i:...) ends with its group');
  t.notOk(compileRegex('(?i)[^a]').matches('A'), 'a negated folded class excludes both cases');
  t.ok(compileRegex('\\x{1F600}').matches('\u{1F600}'), 'code points, not UTF-16 units');
  t.ok(compileRegex('.').matches('\u{1F600}'));
});

t.test('pathological patterns run in linear steps, where a backtracker explodes', async (t) => {
  const input = `${'a'.repeat(10_000)}b`;
  for (const pattern of ['(a+)+$', '(a*)*$', '(a|aa)+$', '(a|a)*c', '(.*a){20}$', 'a*a*a*a*a*a*a*a*c']) {
    const re = compileRegex(pattern);
    const { matched, steps } = re.exec(input);
    t.notOk(matched, `${pattern} does not match`);
    t.ok(steps <= re.size * (input.length + 1), `${pattern}: ${steps} steps <= ${re.size} instructions x ${input.length + 1} positions`);
  }
  // The same work bound holds for a successful match.
  const re = compileRegex('(a+)+');
  const r = re.exec('a'.repeat(10_000));
  t.ok(r.matched);
  t.ok(r.steps <= re.size * 10_001, `${r.steps} steps`);
});

t.test('refusals name what is unsupported or wrong', async (t) => {
  const refused: Array<[string, RegExp]> = [
    ['(a)\\1', /backreferences \(\\1\) are not supported/],
    ['(?P<x>a)(?P=x)', /named backreferences/],
    ['(?<x>a)\\k<x>', /named backreferences/],
    ['a(?=b)', /lookahead/],
    ['a(?!b)', /lookahead/],
    ['(?<=a)b', /lookbehind/],
    ['(?<!a)b', /lookbehind/],
    ['a'.repeat(1025), /longer than 1024 characters/],
    ['a{101}', /exceeds the limit of 100/],
    ['a{1,101}', /exceeds the limit of 100/],
    ['(a{100}){30}', new RegExp(`exceeds ${MAX_PROGRAM} instructions`)],
    ['((((a{10}){10}){10}){10})', new RegExp(`exceeds ${MAX_PROGRAM} instructions`)],
    ['a{3,2}', /maximum below its minimum/],
    ['(ab', /missing "\)"/],
    ['ab)', /unmatched "\)"/],
    ['[ab', /missing "]"/],
    ['*a', /nothing to repeat/],
    ['a**', /cannot follow another one/],
    ['a*+', /possessive/],
    ['^*', /nothing to repeat/],
    ['[z-a]', /runs backwards/],
    ['[\\d-z]', /single characters/],
    ['\\p{L}', /Unicode classes/],
    ['(?m)^a', /group modifier "\(\?m\)" is not supported/],
    ['(?s:.)', /not supported/],
    ['\\q', /unknown escape "\\q"/],
    ['a\\', /trailing/],
    ['\\x4', /\\x needs two hex digits/],
    ['\\01', /octal/],
    ['[[:foo:]]', /unknown POSIX class/],
  ];
  for (const [pattern, message] of refused) {
    let err: unknown;
    try { compileRegex(pattern); } catch (e) { err = e; }
    t.ok(err instanceof RegexError, `${pattern.slice(0, 30)} refused with a RegexError`);
    t.match((err as Error | undefined)?.message, message);
    t.match((err as Error | undefined)?.message, /^invalid regular expression /);
  }
  // The bounds themselves are accepted.
  t.doesNotThrow(() => compileRegex('a'.repeat(1024)));
  t.doesNotThrow(() => compileRegex('a{100}'));
  t.doesNotThrow(() => compileRegex('[a-z]{1,100}'));
});

t.test('differential: random patterns and inputs agree with JS RegExp (seeded)', async (t) => {
  let seed = 0x5eed1234;
  const rand = (n: number): number => {
    // mulberry32: deterministic, so a failure reproduces.
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  const atoms = ['a', 'b', '.', '[ab]', '[^a]', '\\w', 'ab', ''];
  const quants = ['*', '+', '?', '{2}', '{0,2}', '{1,}', '*?'];
  const gen = (depth: number): string => {
    const k = depth <= 0 ? 0 : rand(6);
    if (k === 0) return atoms[rand(atoms.length)]!;
    if (k === 1) return `(${gen(depth - 1)})${quants[rand(quants.length)]}`;
    if (k === 2) return `(?:${gen(depth - 1)}|${gen(depth - 1)})`;
    if (k === 3) return `${gen(depth - 1)}${gen(depth - 1)}`;
    if (k === 4) return [`^${gen(depth - 1)}`, `${gen(depth - 1)}$`, `\\b${gen(depth - 1)}`][rand(3)]!;
    return `(${gen(depth - 1)})`;
  };
  const disagree: string[] = [];
  let runs = 0;
  for (let i = 0; i < 1500; i++) {
    const pattern = gen(4);
    const safe = compileRegex(pattern);
    const js = new RegExp(`^(?:${pattern})$`);
    for (let j = 0; j < 12; j++) {
      const input = Array.from({ length: rand(7) }, () => 'ab-'[rand(3)]).join('');
      runs++;
      if (safe.matches(input) !== js.test(input)) disagree.push(`${pattern} on ${JSON.stringify(input)}`);
    }
  }
  t.same(disagree.slice(0, 10), [], `${runs} runs, ${disagree.length} disagreements`);
});
