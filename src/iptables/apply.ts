import { WeftError, isWeftError } from '../lib/errors';
import type { Logger } from '../lib/log';
import { IPTABLES_BINARY, invalid, type IpFamily } from './ip';
import { CAPTURE_CHAINS, GUARD_CHAIN } from './rules';
import { SERVICES_CHAIN } from './services';
import type { CommandRunner } from './runner';

/** A rule in a built-in chain that sends packets into a chain Weft owns. */
export interface JumpSpec {
  /** Built-in chain the jump lives in, e.g. PREROUTING. */
  from: string;
  /** Owned chain it jumps to. */
  to: string;
  /**
   * `first` inserts at rule 1 (capture must run before anything else, kube-proxy
   * included); `last` appends (service DNAT runs after capture).
   */
  position: 'first' | 'last';
}

export interface IptablesApplierOptions {
  runner: CommandRunner;
  /** Apply inside this named network namespace; default: the current one. */
  netns?: string;
  /** Default `nat`. */
  table?: string;
  /** Exactly the chains this applier owns; every one must start with `WEFT-`. */
  chains: readonly string[];
  /** Jumps from built-in chains into owned chains, each kept present exactly once. */
  jumps: readonly JumpSpec[];
  /**
   * `iptables` (the system's alternative), `iptables-nft` or `iptables-legacy`; the
   * save/restore commands are derived from it. Use the backend the rest of the node
   * (kube-proxy, the CNI) uses: nft and legacy rules both run, but each tool only
   * shows its own.
   */
  binary?: string;
  /** Seconds to wait for the xtables lock (legacy backend). Default 5. */
  lockWaitSeconds?: number;
  logger?: Logger;
}

export type IptablesBackend = 'nft' | 'legacy';

/** Owned-chain selection of an `iptables-save` dump. */
interface SavedTable {
  chains: Set<string>;
  /** Every `-A` line: chain and the rule spec after `-A <chain> `. */
  rules: { chain: string; spec: string }[];
}

const BUILTIN = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

function targetOf(spec: string): string | undefined {
  const m = /(?:^|\s)(?:-j|--jump|-g|--goto)\s+(\S+)/.exec(spec);
  return m?.[1];
}

function parseSave(text: string, table: string): SavedTable {
  const out: SavedTable = { chains: new Set(), rules: [] };
  let inTable = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inTable = line === `*${table}`;
    else if (!inTable || line === '' || line.startsWith('#')) continue;
    else if (line === 'COMMIT') inTable = false;
    else if (line.startsWith(':')) out.chains.add(line.slice(1).split(/\s+/)[0]!);
    else if (line.startsWith('-A ')) {
      const m = /^-A\s+(\S+)\s+(.*)$/.exec(line);
      if (m) out.rules.push({ chain: m[1]!, spec: m[2]! });
    }
  }
  return out;
}

/**
 * Applies rule text into chains Weft owns, atomically, and keeps the jumps into them.
 *
 * One `iptables-restore --noflush` transaction per call: declaring an owned chain
 * (`:WEFT-X - [0:0]`) creates or flushes it and the text refills it, so packets see
 * either the old or the new rule set, never a half-applied one, and everything outside
 * the owned chains is left alone. Existing connections keep their conntrack NAT
 * binding, so a change only affects new connections.
 */
export class IptablesApplier {
  private readonly opts: Required<Omit<IptablesApplierOptions, 'netns' | 'logger'>> & Pick<IptablesApplierOptions, 'netns' | 'logger'>;
  private readonly owned: Set<string>;
  /** Serialises apply/remove of this applier: each reads the table, then writes it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: IptablesApplierOptions) {
    this.opts = { table: 'nat', binary: 'iptables', lockWaitSeconds: 5, ...options };
    this.owned = new Set(options.chains);
    for (const c of this.owned) {
      if (!/^WEFT-[A-Z0-9-]+$/.test(c)) {
        throw new WeftError('WEFT_CONFIG_INVALID', `invalid chains entry ${JSON.stringify(c)}: owned chains must be named WEFT-<UPPERCASE>`);
      }
    }
    for (const j of options.jumps) {
      if (!BUILTIN.has(j.from) || !this.owned.has(j.to)) {
        throw new WeftError('WEFT_CONFIG_INVALID', `invalid jump ${j.from} -> ${j.to}: must go from a built-in chain to an owned chain`);
      }
    }
  }

  /** Owned chain names, sorted. */
  get chains(): string[] {
    return [...this.owned].sort();
  }

  /**
   * Replaces the contents of the owned chains with `rulesText` (one `*<table>` block
   * that only declares owned chains and appends to them), ensures each jump exists
   * exactly once, and deletes owned chains the text no longer declares.
   */
  async apply(rulesText: string): Promise<void> {
    const parsed = this.validate(rulesText);
    return this.serialise(() => this.withRetry(async () => {
      const saved = await this.save();
      const tx = this.transaction(saved, parsed.declared, parsed.rules);
      if (tx === undefined) return;
      await this.restore(tx, 'apply');
      this.opts.logger?.debug({ chains: parsed.declared, rules: parsed.rules.length }, 'iptables rules applied');
    }));
  }

  /** Deletes the jumps into owned chains and the owned chains themselves. */
  remove(): Promise<void> {
    return this.serialise(() => this.withRetry(async () => {
      const saved = await this.save();
      const tx = this.transaction(saved, [], [], { jumps: false });
      if (tx === undefined) return;
      await this.restore(tx, 'remove');
      this.opts.logger?.debug({ chains: this.chains }, 'iptables rules removed');
    }));
  }

  /**
   * What is wrong with the rules in force compared with `rulesText` (empty: in force):
   * every declared chain exists with as many rules as the text appends (counted, since
   * iptables-save may spell a rule differently than we wrote it), and every jump into
   * them is there exactly once, the `first` ones ahead of every foreign rule.
   */
  async check(rulesText: string): Promise<string[]> {
    const parsed = this.validate(rulesText);
    const saved = await this.save();
    const problems: string[] = [];
    for (const chain of parsed.declared) {
      const want = parsed.rules.filter((l) => /^-A\s+(\S+)/.exec(l)?.[1] === chain).length;
      const have = saved.rules.filter((r) => r.chain === chain).length;
      if (!saved.chains.has(chain)) problems.push(`chain ${this.opts.table}/${chain} is missing`);
      else if (have !== want) problems.push(`chain ${this.opts.table}/${chain} has ${have} rule(s), expected ${want}`);
    }
    for (const j of this.opts.jumps.filter((j) => parsed.declared.includes(j.to))) {
      const n = saved.rules.filter((r) => r.chain === j.from && r.spec === `-j ${j.to}`).length;
      if (n !== 1) problems.push(`${this.opts.table}/${j.from} has ${n} jump(s) to ${j.to}, expected 1`);
      else if (j.position === 'first' && !this.inPlace(saved, j)) problems.push(`${this.opts.table}/${j.from} has a foreign rule ahead of the jump to ${j.to}`);
    }
    return problems;
  }

  /** The current `-A` lines of the owned chains and of the jumps into them. */
  async ownedRules(): Promise<string[]> {
    const saved = await this.save();
    return saved.rules
      .filter((r) => this.owned.has(r.chain) || this.owned.has(targetOf(r.spec) ?? ''))
      .map((r) => `-A ${r.chain} ${r.spec}`);
  }

  private serialise<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * The table is read, then written: another tool changing our jumps in between makes
   * a `-D`/`-X` line fail and with it the whole transaction (nothing applied); a busy
   * xtables lock fails it too. One fresh attempt covers both; rule errors are final.
   */
  private async withRetry(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (!isWeftError(err, 'WEFT_IPTABLES_APPLY_FAILED') || err.details?.['retryable'] !== true) throw err;
      this.opts.logger?.warn({ err }, 'iptables-restore failed, retrying once with a fresh table read');
      await fn();
    }
  }

  private validate(text: string): { declared: string[]; rules: string[] } {
    const { table } = this.opts;
    const fail = (why: string) => new WeftError('WEFT_IPTABLES_APPLY_FAILED',
      `refusing to apply rules: ${why}; the text must be one *${table} block that only declares and appends to ${this.chains.join(', ')}`,
      { details: { phase: 'validate' } });
    const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (lines[0] !== `*${table}` || lines[lines.length - 1] !== 'COMMIT') throw fail(`it does not start with *${table} and end with COMMIT`);
    const declared: string[] = [];
    const rules: string[] = [];
    for (const line of lines.slice(1, -1)) {
      const decl = /^:(\S+)\s+-\s+\[\d+:\d+\]$/.exec(line);
      const rule = /^-A\s+(\S+)\s+\S/.exec(line);
      if (decl) {
        const chain = decl[1]!;
        if (!this.owned.has(chain)) throw fail(`it declares chain ${chain} which this applier does not own`);
        declared.push(chain);
      } else if (rule) {
        const chain = rule[1]!;
        if (!declared.includes(chain)) throw fail(`"${line}" appends to ${chain}, which the text does not declare`);
        rules.push(line);
      } else {
        throw fail(`line "${line}" is neither a chain declaration nor -A`);
      }
    }
    return { declared, rules };
  }

  /**
   * Builds one restore transaction. Order matters within it: declarations flush owned
   * chains first, then references to chains being dropped are deleted, then those
   * chains, then the new rules and any missing jumps.
   */
  private transaction(saved: SavedTable, declared: string[], rules: string[], o = { jumps: true }): string | undefined {
    const keep = new Set(declared);
    const stale = [...this.owned].filter((c) => saved.chains.has(c) && !keep.has(c)).sort();
    const wanted = o.jumps ? this.opts.jumps.filter((j) => keep.has(j.to)) : [];
    const deletes: string[] = [];
    const copies = new Map<JumpSpec, number>();
    for (const r of saved.rules) {
      const target = targetOf(r.spec);
      if (target === undefined || !this.owned.has(target) || this.owned.has(r.chain)) continue;
      const spec = wanted.find((j) => j.from === r.chain && j.to === target && r.spec === `-j ${target}`);
      if (spec) copies.set(spec, (copies.get(spec) ?? 0) + 1);
      else deletes.push(`-D ${r.chain} ${r.spec}`);
    }
    // Duplicates: `-D <spec>` removes the first copy, not necessarily the misplaced
    // one, and deleting by rule number could hit a foreign rule if the chain changed
    // since we read it. So drop every copy and insert one afresh, in this transaction.
    for (const [spec, n] of copies) {
      if (n > 1) {
        for (let i = 0; i < n; i++) deletes.push(`-D ${spec.from} -j ${spec.to}`);
        copies.delete(spec);
      }
    }
    // A `first` jump that something else (kube-proxy, a CNI) got ahead of would let that
    // rule act before capture: move it back to the top, atomically, in this transaction.
    for (const spec of copies.keys()) {
      if (spec.position === 'first' && !this.inPlace(saved, spec)) {
        deletes.push(`-D ${spec.from} -j ${spec.to}`);
        copies.delete(spec);
      }
    }
    const present = new Set(copies.keys());
    const missing = wanted.filter((j) => !present.has(j));
    if (declared.length === 0 && stale.length === 0 && deletes.length === 0 && missing.length === 0) return undefined;
    return [
      `*${this.opts.table}`,
      ...[...declared, ...stale].map((c) => `:${c} - [0:0]`),
      ...deletes,
      ...stale.map((c) => `-X ${c}`),
      ...rules,
      // Reverse so that several `first` jumps in one built-in chain keep spec order.
      ...missing.filter((j) => j.position === 'first').reverse().map((j) => `-I ${j.from} 1 -j ${j.to}`),
      ...missing.filter((j) => j.position === 'last').map((j) => `-A ${j.from} -j ${j.to}`),
      'COMMIT',
      '',
    ].join('\n');
  }

  /** Whether a `first` jump is preceded in its built-in chain only by other `first` jumps of ours. */
  private inPlace(saved: SavedTable, spec: JumpSpec): boolean {
    for (const r of saved.rules) {
      if (r.chain !== spec.from) continue;
      const target = targetOf(r.spec);
      if (target === spec.to && r.spec === `-j ${spec.to}`) return true;
      const ours = this.opts.jumps.some((j) => j.position === 'first' && j.from === spec.from && j.to === target && r.spec === `-j ${target}`);
      if (!ours) return false;
    }
    return false;
  }

  private async save(): Promise<SavedTable> {
    const { runner, netns, binary, table, lockWaitSeconds } = this.opts;
    try {
      const res = await runner.run(`${binary}-save`, ['-t', table], { netns, timeoutMs: (lockWaitSeconds + 10) * 1000 });
      return parseSave(res.stdout, table);
    } catch (err) {
      throw this.applyFailed('read', err);
    }
  }

  private async restore(tx: string, what: string): Promise<void> {
    const { runner, netns, binary, lockWaitSeconds } = this.opts;
    this.opts.logger?.trace({ transaction: tx }, `iptables-restore (${what})`);
    try {
      await runner.run(`${binary}-restore`, ['--noflush', '-w', String(lockWaitSeconds)], {
        netns, input: tx, timeoutMs: (lockWaitSeconds + 10) * 1000,
      });
    } catch (err) {
      throw this.applyFailed(what, err, tx);
    }
  }

  private applyFailed(what: string, err: unknown, tx?: string): WeftError {
    const stderr = isWeftError(err) ? String(err.details?.['stderr'] ?? err.message) : String(err);
    const why = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('Try `')).join('; ');
    const lineNo = /line:?\s*(\d+)/.exec(stderr)?.[1];
    const offending = tx && lineNo ? tx.split('\n')[Number(lineNo) - 1] : undefined;
    const retryable = /^-[DX] /.test(offending ?? '') || /xtables lock|temporarily unavailable/i.test(stderr);
    return new WeftError('WEFT_IPTABLES_APPLY_FAILED',
      `${this.opts.binary} could not ${what} the ${this.chains.join('/')} rules${this.opts.netns ? ` in netns ${this.opts.netns}` : ''}: ${why}`
        + (offending ? ` (at "${offending}")` : '')
        + '; check that this runs as root and the kernel has the nat table and conntrack (modprobe iptable_nat nf_conntrack)',
      { cause: err, details: { phase: what, stderr, transaction: tx, retryable } });
  }
}

type FamilyApplierOptions = Omit<IptablesApplierOptions, 'chains' | 'jumps' | 'table' | 'binary'> & {
  /** Default 4 (iptables); 6 selects ip6tables. */
  family?: IpFamily;
  /**
   * Overrides the backend, e.g. `iptables-legacy` or `/usr/sbin/iptables-nft`; each
   * family runs its own command of it (IPv6: ip6tables-legacy, /usr/sbin/ip6tables-nft).
   */
  binary?: string;
};

/**
 * The family's command. An override chooses a backend (and a directory), not a family:
 * IPv4 and IPv6 rules live in separate tables with separate tools, and iptables-restore
 * refuses IPv6 addresses, so IPv6 runs the ip6tables sibling of whichever name was given.
 */
function binaryFor(o: FamilyApplierOptions): string {
  const family = o.family ?? 4;
  if (o.binary === undefined) return IPTABLES_BINARY[family];
  const m = /^(.*\/)?ip6?tables(-nft|-legacy)?$/.exec(o.binary);
  if (!m) throw invalid('binary', o.binary, 'iptables, iptables-nft or iptables-legacy, optionally with its directory (/usr/sbin/iptables-legacy)');
  return `${m[1] ?? ''}${IPTABLES_BINARY[family]}${m[2] ?? ''}`;
}

/** The capture applier (nat): owns the WEFT capture chains, jumped to first in PREROUTING and OUTPUT. */
export function createCaptureApplier(options: FamilyApplierOptions): IptablesApplier {
  const C = CAPTURE_CHAINS;
  const { family: _f, ...rest } = options;
  return new IptablesApplier({
    ...rest,
    binary: binaryFor(options),
    chains: [C.prerouting, C.output, C.outbound, C.inbound],
    jumps: [
      { from: 'PREROUTING', to: C.prerouting, position: 'first' },
      { from: 'OUTPUT', to: C.output, position: 'first' },
    ],
  });
}

/** The capture guard applier (filter): owns WEFT-FORWARD, jumped to first in FORWARD. */
export function createGuardApplier(options: FamilyApplierOptions): IptablesApplier {
  const { family: _f, ...rest } = options;
  return new IptablesApplier({
    ...rest,
    binary: binaryFor(options),
    table: 'filter',
    chains: [GUARD_CHAIN],
    jumps: [{ from: 'FORWARD', to: GUARD_CHAIN, position: 'first' }],
  });
}

/**
 * The service (kube-proxy emulation) applier: owns WEFT-SERVICES, appended to
 * PREROUTING so it runs after the capture jump. Independent of the capture applier:
 * either can be applied or removed without touching the other's chains.
 */
export function createServicesApplier(options: Omit<IptablesApplierOptions, 'chains' | 'jumps' | 'table'>): IptablesApplier {
  return new IptablesApplier({
    ...options,
    chains: [SERVICES_CHAIN],
    jumps: [{ from: 'PREROUTING', to: SERVICES_CHAIN, position: 'last' }],
  });
}

/** Which netfilter backend `binary` drives here (from `<binary> --version`). */
export async function detectIptablesBackend(runner: CommandRunner, opts: { netns?: string; binary?: string } = {}): Promise<IptablesBackend> {
  const binary = opts.binary ?? 'iptables';
  const res = await runner.run(binary, ['--version'], { netns: opts.netns });
  if (/nf_tables/.test(res.stdout)) return 'nft';
  if (/legacy/.test(res.stdout) || /^iptables v1\.[0-6]\./.test(res.stdout)) return 'legacy';
  throw new WeftError('WEFT_COMMAND_FAILED', `cannot tell the iptables backend from "${res.stdout.trim()}"; pass binary=iptables-nft or iptables-legacy explicitly`);
}
