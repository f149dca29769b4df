/**
 * The parser of Weft's safe regular expressions (regex.ts runs them): a practical subset
 * of RE2's syntax, the dialect Envoy and Istio use for Gateway API RegularExpression
 * matches, so a route that works on Istio works here. Everything outside the subset is
 * refused at parse time with a RegexError naming the construct, never guessed at:
 * backreferences and lookaround cannot be run without backtracking, and the rest
 * (Unicode classes, inline flags other than `i`) is rare in routes.
 *
 * Character matching is on Unicode code points (as RE2 on UTF-8), not UTF-16 units.
 */

/** A refusal of a pattern: what is wrong or unsupported, and where. */
export class RegexError extends Error {
  constructor(readonly pattern: string, readonly problem: string) {
    super(`invalid regular expression ${JSON.stringify(pattern.length > 60 ? `${pattern.slice(0, 60)}...` : pattern)}: ${problem}`);
    this.name = 'RegexError';
  }
}

/** Longest pattern accepted (characters). */
export const MAX_PATTERN_LENGTH = 1024;
/** Largest count in `{n}`, `{n,}`, `{n,m}` (RE2 allows 1000; routes never need that many). */
export const MAX_REPEAT = 100;

const MAX_CODE_POINT = 0x10ffff;

/** Sorted, non-overlapping, non-adjacent inclusive code point ranges. */
export type Ranges = Array<[number, number]>;

export type Assertion = 'begin' | 'end' | 'wordBoundary' | 'notWordBoundary';

export type Node =
  | { t: 'empty' }
  | { t: 'chars'; ranges: Ranges }
  | { t: 'assert'; kind: Assertion }
  | { t: 'cat'; items: Node[] }
  | { t: 'alt'; alts: Node[] }
  /** max -1 = unbounded. Greediness does not matter for a yes/no whole match. */
  | { t: 'rep'; node: Node; min: number; max: number };

export function normalize(input: Ranges): Ranges {
  const sorted = input.filter(([lo, hi]) => lo <= hi).sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export function negate(r: Ranges): Ranges {
  const out: Ranges = [];
  let next = 0;
  for (const [lo, hi] of normalize(r)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** ASCII case folding for `(?i)`, as far as routes need it (paths and header values are ASCII). */
function fold(r: Ranges): Ranges {
  const extra: Ranges = [];
  for (const [lo, hi] of r) {
    const a = Math.max(lo, 0x41); const b = Math.min(hi, 0x5a);
    if (a <= b) extra.push([a + 32, b + 32]);
    const c = Math.max(lo, 0x61); const d = Math.min(hi, 0x7a);
    if (c <= d) extra.push([c - 32, d - 32]);
  }
  return normalize([...r, ...extra]);
}

const c = (ch: string): number => ch.codePointAt(0)!;
const DIGIT: Ranges = [[c('0'), c('9')]];
const WORD: Ranges = normalize([[c('0'), c('9')], [c('A'), c('Z')], [c('_'), c('_')], [c('a'), c('z')]]);
/** RE2's \s: space, \t, \n, \f, \r (not \v). */
const SPACE: Ranges = normalize([[9, 10], [12, 13], [32, 32]]);
const POSIX: Record<string, Ranges> = {
  alpha: normalize([[c('A'), c('Z')], [c('a'), c('z')]]),
  digit: DIGIT,
  alnum: normalize([[c('0'), c('9')], [c('A'), c('Z')], [c('a'), c('z')]]),
  upper: [[c('A'), c('Z')]],
  lower: [[c('a'), c('z')]],
  space: normalize([[9, 13], [32, 32]]),
  xdigit: normalize([[c('0'), c('9')], [c('A'), c('F')], [c('a'), c('f')]]),
  punct: normalize([[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e]]),
  word: WORD,
};
const CLASS_ESCAPES: Record<string, Ranges> = {
  d: DIGIT, D: negate(DIGIT), w: WORD, W: negate(WORD), s: SPACE, S: negate(SPACE),
};
const CONTROL_ESCAPES: Record<string, number> = { t: 9, n: 10, v: 11, f: 12, r: 13, a: 7 };
/** ASCII punctuation and space may be escaped to stand for themselves (as in RE2). */
const ESCAPABLE = /^[\x20-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]$/;

/** Parses `pattern` (already checked for length) into a Node, or throws RegexError. */
export function parse(pattern: string): Node {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    throw new RegexError(pattern, `patterns longer than ${MAX_PATTERN_LENGTH} characters are not accepted (got ${pattern.length})`);
  }
  const p = new Parser(pattern);
  const node = p.alternation(false);
  if (p.i < p.cps.length) p.fail(`unmatched ")" at offset ${p.offset()}`);
  return node;
}

class Parser {
  readonly cps: string[];
  i = 0;
  foldCase = false;

  constructor(readonly pattern: string) {
    this.cps = Array.from(pattern);
  }

  fail(problem: string): never {
    throw new RegexError(this.pattern, problem);
  }

  offset(): number {
    return this.cps.slice(0, this.i).join('').length;
  }

  peek(k = 0): string | undefined {
    return this.cps[this.i + k];
  }

  alternation(inGroup: boolean): Node {
    const alts: Node[] = [this.concatenation()];
    while (this.peek() === '|') {
      this.i++;
      alts.push(this.concatenation());
    }
    if (inGroup && this.peek() !== ')') this.fail('missing ")" to close a group');
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts };
  }

  concatenation(): Node {
    const items: Node[] = [];
    for (let ch = this.peek(); ch !== undefined && ch !== '|' && ch !== ')'; ch = this.peek()) {
      const atom = this.atom();
      items.push(this.quantified(atom));
    }
    return items.length === 0 ? { t: 'empty' } : items.length === 1 ? items[0]! : { t: 'cat', items };
  }

  quantified(atom: Node): Node {
    let node = atom;
    let quantifiedOnce = false;
    for (;;) {
      const ch = this.peek();
      let min: number; let max: number;
      if (ch === '*') { min = 0; max = -1; this.i++; }
      else if (ch === '+') { min = 1; max = -1; this.i++; }
      else if (ch === '?') { min = 0; max = 1; this.i++; }
      else if (ch === '{') {
        const counted = this.counted();
        if (!counted) return node;
        [min, max] = counted;
      } else return node;
      if (quantifiedOnce) this.fail(`a repetition operator cannot follow another one (offset ${this.offset() - 1}); group the inner one with (?:...)`);
      if (node.t === 'assert' || node.t === 'empty') this.fail(`nothing to repeat before offset ${this.offset() - 1}`);
      if (this.peek() === '?') this.i++; // lazy: same yes/no answer
      if (this.peek() === '+') this.fail('possessive repetition (*+, ++, ?+) is not supported');
      node = { t: 'rep', node, min, max };
      quantifiedOnce = true;
    }
  }

  /** `{n}`, `{n,}`, `{n,m}`; returns undefined (and consumes nothing) when `{` is a literal, as in RE2. */
  counted(): [number, number] | undefined {
    const rest = this.cps.slice(this.i, this.i + 16).join('');
    const m = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (!m) return undefined;
    this.i += m[0].length;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? -1 : Number(m[3]);
    if (min > MAX_REPEAT || max > MAX_REPEAT) this.fail(`counted repetition ${m[0]} exceeds the limit of ${MAX_REPEAT}`);
    if (max !== -1 && max < min) this.fail(`counted repetition ${m[0]} has its maximum below its minimum`);
    return [min, max];
  }

  atom(): Node {
    const ch = this.peek()!;
    this.i++;
    switch (ch) {
      case '(': return this.group();
      case '[': return { t: 'chars', ranges: this.charClass() }; // folded inside, before negation
      case '.': return this.chars(negate([[10, 10]]));
      case '^': return { t: 'assert', kind: 'begin' };
      case '$': return { t: 'assert', kind: 'end' };
      case '\\': return this.escape();
      case '*': case '+': case '?':
        return this.fail(`nothing to repeat before "${ch}" at offset ${this.offset() - 1}`);
      default: return this.chars([[c(ch), c(ch)]]);
    }
  }

  chars(ranges: Ranges): Node {
    return { t: 'chars', ranges: this.foldCase ? fold(ranges) : ranges };
  }

  group(): Node {
    const saved = this.foldCase;
    if (this.peek() === '?') {
      const next = this.peek(1);
      if (next === ':') this.i += 2;
      else if (next === '=' || next === '!') this.fail('lookahead (?= and (?! is not supported (it needs backtracking)');
      else if (next === '<' && (this.peek(2) === '=' || this.peek(2) === '!')) this.fail('lookbehind (?<= and (?<! is not supported (it needs backtracking)');
      else if (next === '<' || (next === 'P' && this.peek(2) === '<')) {
        // A named group: captures do not matter for a yes/no match.
        const close = this.cps.indexOf('>', this.i);
        const name = close === -1 ? '' : this.cps.slice(this.i + (next === 'P' ? 3 : 2), close).join('');
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail('a named group needs a name of letters, digits and "_"');
        this.i = close + 1;
      } else if (next === 'P' && this.peek(2) === '=') this.fail('named backreferences (?P=name) are not supported');
      else {
        // Inline flags: only `i` (case-insensitive), as (?i) or (?i:...).
        let j = this.i + 1;
        let flags = '';
        while (j < this.cps.length && /[a-zA-Z-]/.test(this.cps[j]!)) flags += this.cps[j++];
        if (flags !== 'i' || (this.cps[j] !== ')' && this.cps[j] !== ':')) {
          this.fail(`group modifier "(?${flags}${this.cps[j] ?? ''}" is not supported (only (?:...), (?i) and (?i:...))`);
        }
        this.foldCase = true;
        this.i = j + 1;
        if (this.cps[j] === ')') return { t: 'empty' }; // (?i) applies to the rest of the enclosing group
      }
    }
    const inner = this.alternation(true);
    this.i++; // ')'
    this.foldCase = saved;
    // A group may be repeated even when it holds nothing or only an anchor: `()*`, `(^)?`.
    return inner.t === 'empty' || inner.t === 'assert' ? { t: 'cat', items: [inner] } : inner;
  }

  escape(): Node {
    const ch = this.peek();
    if (ch === undefined) return this.fail('a trailing "\\" escapes nothing');
    this.i++;
    if (ch === 'b') return { t: 'assert', kind: 'wordBoundary' };
    if (ch === 'B') return { t: 'assert', kind: 'notWordBoundary' };
    if (ch === 'A') return { t: 'assert', kind: 'begin' };
    if (ch === 'z') return { t: 'assert', kind: 'end' };
    return this.chars(this.escapedChars(ch, false));
  }

  /** The code points an escape (after the `\`) stands for, in or outside a class. */
  escapedChars(ch: string, inClass: boolean): Ranges {
    if (CLASS_ESCAPES[ch]) return CLASS_ESCAPES[ch]!;
    if (CONTROL_ESCAPES[ch] !== undefined) return [[CONTROL_ESCAPES[ch]!, CONTROL_ESCAPES[ch]!]];
    if (ch >= '1' && ch <= '9') this.fail(`backreferences (\\${ch}) are not supported (they need backtracking)`);
    if (ch === '0') {
      if (this.peek() !== undefined && /[0-9]/.test(this.peek()!)) this.fail('octal escapes are not supported; use \\xHH');
      return [[0, 0]];
    }
    if (ch === 'x') {
      const rest = this.cps.slice(this.i, this.i + 10).join('');
      const m = /^(?:([0-9A-Fa-f]{2})|\{([0-9A-Fa-f]{1,6})\})/.exec(rest);
      const cp = m ? parseInt(m[1] ?? m[2]!, 16) : NaN;
      if (!m || cp > MAX_CODE_POINT) this.fail('\\x needs two hex digits or {hex} up to 10FFFF');
      this.i += m[0].length;
      return [[cp, cp]];
    }
    if (ch === 'p' || ch === 'P') this.fail(`Unicode classes (\\${ch}{...}) are not supported`);
    if (ch === 'k') this.fail('named backreferences (\\k<name>) are not supported');
    if (ESCAPABLE.test(ch)) return [[c(ch), c(ch)]];
    return this.fail(`unknown escape "\\${ch}"${inClass ? ' in a character class' : ''}`);
  }

  /** After `[`: a class like RE2's, where a `]` right after `[` or `[^` is a literal. */
  charClass(): Ranges {
    let negated = false;
    if (this.peek() === '^') { negated = true; this.i++; }
    const ranges: Ranges = [];
    let first = true;
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) this.fail('missing "]" to close a character class');
      if (ch === ']' && !first) { this.i++; break; }
      first = false;
      if (ch === '[' && this.peek(1) === ':') {
        const rest = this.cps.slice(this.i, this.i + 12).join('');
        const m = /^\[:(\^?)([a-z]+):\]/.exec(rest);
        if (m) {
          const set = POSIX[m[2]!];
          if (!set) this.fail(`unknown POSIX class [:${m[2]}:]`);
          ranges.push(...(m[1] ? negate(set) : set));
          this.i += m[0].length;
          continue;
        }
      }
      const lo = this.classAtom();
      if (this.peek() === '-' && this.peek(1) !== undefined && this.peek(1) !== ']') {
        this.i++;
        const hi = this.classAtom();
        if (lo.length !== 1 || hi.length !== 1 || lo[0]![0] !== lo[0]![1] || hi[0]![0] !== hi[0]![1]) {
          this.fail('a range in a character class needs single characters at both ends');
        }
        if (hi[0]![0] < lo[0]![0]) this.fail('a range in a character class runs backwards');
        ranges.push([lo[0]![0], hi[0]![0]]);
      } else ranges.push(...lo);
    }
    const set = normalize(this.foldCase ? fold(ranges) : ranges);
    return negated ? negate(set) : set;
  }

  classAtom(): Ranges {
    const ch = this.peek()!;
    this.i++;
    if (ch !== '\\') return [[c(ch), c(ch)]];
    const e = this.peek();
    if (e === undefined) this.fail('a trailing "\\" escapes nothing');
    this.i++;
    if (e === 'b') return [[8, 8]];
    return this.escapedChars(e, true);
  }
}
