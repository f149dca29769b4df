/**
 * A safe, bounded regular-expression engine for Gateway API `RegularExpression`
 * matches (paths, headers, query parameters, gRPC methods). JS RegExp backtracks, so a
 * route such as `(a+)+$` could make one request burn seconds of the waypoint's only
 * thread; this engine compiles the pattern to an NFA (Thompson's construction) and runs
 * it by simulation (Pike's VM, every thread in lock step, each instruction at most once
 * per input position), so a match costs at most O(program size × input length) steps,
 * whatever the pattern and input.
 *
 * Bounds, all enforced when the route is validated, never at request time:
 * pattern ≤ 1,024 characters, counted repetition ≤ 100, compiled program ≤ 2,048
 * instructions. The syntax is the RE2 subset regex-parse.ts describes.
 *
 * Semantics: a **whole-value** match — `matches(s)` is true when the pattern matches all
 * of `s`, as if written `^(?:pattern)$`. Envoy (and so Istio) run Gateway API regexes
 * with RE2 full-match for paths and headers, and Gateway API's conformance tests are
 * written that way, so a route behaves the same on Istio and on Weft. Query
 * parameters and gRPC methods use the same rule.
 */
import { MAX_PATTERN_LENGTH, MAX_REPEAT, RegexError, parse, type Assertion, type Node, type Ranges } from './regex-parse';

export { RegexError, MAX_PATTERN_LENGTH, MAX_REPEAT };

/** Largest compiled program accepted (instructions); bounds the work per input character. */
export const MAX_PROGRAM = 2048;

type Inst =
  | { op: 'char'; ranges: Ranges; next: number }
  | { op: 'split'; a: number; b: number }
  | { op: 'assert'; kind: Assertion; next: number }
  | { op: 'match' };

/** What one match run cost, for tests and benchmarks. */
export interface MatchResult {
  matched: boolean;
  /** Instructions visited: at most program size × (input code points + 1). */
  steps: number;
}

export interface SafeRegex {
  readonly pattern: string;
  /** Instructions in the compiled program. */
  readonly size: number;
  /** True when the pattern matches the whole of `input`. */
  matches(input: string): boolean;
  exec(input: string): MatchResult;
}

/** Compiles `pattern`, or throws RegexError saying what is invalid or unsupported. */
export function compileRegex(pattern: string): SafeRegex {
  const ast = parse(pattern);
  const prog: Inst[] = [];
  const emit = (inst: Inst): number => {
    prog.push(inst);
    if (prog.length > MAX_PROGRAM) {
      throw new RegexError(pattern, `the compiled program exceeds ${MAX_PROGRAM} instructions; use fewer or smaller counted repetitions`);
    }
    return prog.length - 1;
  };
  const start = compile(ast, emit({ op: 'match' }), prog, emit);
  return new Program(pattern, prog, start);
}

/** Emits `node` so that it continues at `next`; returns its first instruction. Built back to front. */
function compile(node: Node, next: number, prog: Inst[], emit: (i: Inst) => number): number {
  switch (node.t) {
    case 'empty': return next;
    case 'chars': return emit({ op: 'char', ranges: node.ranges, next });
    case 'assert': return emit({ op: 'assert', kind: node.kind, next });
    case 'cat': {
      let at = next;
      for (let i = node.items.length - 1; i >= 0; i--) at = compile(node.items[i]!, at, prog, emit);
      return at;
    }
    case 'alt': {
      let at = compile(node.alts[node.alts.length - 1]!, next, prog, emit);
      for (let i = node.alts.length - 2; i >= 0; i--) at = emit({ op: 'split', a: compile(node.alts[i]!, next, prog, emit), b: at });
      return at;
    }
    case 'rep': {
      let tail = next;
      if (node.max === -1) {
        const loop = emit({ op: 'split', a: -1, b: next });
        const body = compile(node.node, loop, prog, emit);
        (prog[loop] as { a: number }).a = body;
        tail = loop;
      } else {
        // x{n,m}: the m-n optional copies nest, (x(x)?)?, so each is tried only after the previous.
        for (let k = node.max - node.min; k > 0; k--) tail = emit({ op: 'split', a: compile(node.node, tail, prog, emit), b: next });
      }
      for (let k = node.min; k > 0; k--) tail = compile(node.node, tail, prog, emit);
      return tail;
    }
  }
}

function inRanges(ranges: Ranges, cp: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (cp < r[0]) hi = mid - 1;
    else if (cp > r[1]) lo = mid + 1;
    else return true;
  }
  return false;
}

const isWord = (cp: number): boolean =>
  (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || cp === 0x5f || (cp >= 0x61 && cp <= 0x7a);

class Program implements SafeRegex {
  constructor(readonly pattern: string, private readonly prog: Inst[], private readonly start: number) {}

  get size(): number {
    return this.prog.length;
  }

  matches(input: string): boolean {
    return this.exec(input).matched;
  }

  exec(input: string): MatchResult {
    const n = this.prog.length;
    let clist = new Int32Array(n);
    let nlist = new Int32Array(n);
    let ccount = 0;
    // mark[pc] = the generation (input position + 1) in which pc was last added; no pc twice per position.
    const mark = new Int32Array(n).fill(-1);
    const stack = new Int32Array(n + 1);
    let steps = 0;

    // prev/cur: code points either side of the position (-1 at the ends), for assertions.
    const add = (list: Int32Array, count: number, pc0: number, gen: number, prev: number, cur: number): number => {
      let sp = 0;
      stack[sp++] = pc0;
      while (sp > 0) {
        const pc = stack[--sp]!;
        if (mark[pc] === gen) continue;
        mark[pc] = gen;
        steps++;
        const inst = this.prog[pc]!;
        if (inst.op === 'split') {
          stack[sp++] = inst.b;
          stack[sp++] = inst.a;
        } else if (inst.op === 'assert') {
          if (holds(inst.kind, prev, cur)) stack[sp++] = inst.next;
        } else list[count++] = pc;
      }
      return count;
    };

    let pos = 0;
    let prev = -1;
    let cur = input.length > 0 ? input.codePointAt(0)! : -1;
    ccount = add(clist, 0, this.start, 0, prev, cur);
    let gen = 0;
    while (cur !== -1 && ccount > 0) {
      const width = cur > 0xffff ? 2 : 1;
      const nextPos = pos + width;
      const next = nextPos < input.length ? input.codePointAt(nextPos)! : -1;
      gen++;
      let ncount = 0;
      for (let i = 0; i < ccount; i++) {
        const inst = this.prog[clist[i]!]!;
        if (inst.op === 'char' && inRanges(inst.ranges, cur)) ncount = add(nlist, ncount, inst.next, gen, cur, next);
      }
      [clist, nlist] = [nlist, clist];
      ccount = ncount;
      pos = nextPos;
      prev = cur;
      cur = next;
    }
    let matched = false;
    if (cur === -1) {
      for (let i = 0; i < ccount && !matched; i++) matched = this.prog[clist[i]!]!.op === 'match';
    }
    return { matched, steps };
  }
}

function holds(kind: Assertion, prev: number, cur: number): boolean {
  switch (kind) {
    case 'begin': return prev === -1;
    case 'end': return cur === -1;
    case 'wordBoundary': return (prev !== -1 && isWord(prev)) !== (cur !== -1 && isWord(cur));
    case 'notWordBoundary': return (prev !== -1 && isWord(prev)) === (cur !== -1 && isWord(cur));
  }
}
