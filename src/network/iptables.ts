// The iptables binary (iptables-nft or legacy) as both users of it run it: the bridge
// rules of networks (netns.ts) and the DNAT of published ports (nat.ts). Both read the
// tables with one iptables-save, work out what is missing or left over, and write it with
// one iptables-restore, so the helpers for that live here too.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { NetworkError, errnoOf } from './errors';

export class IptablesExitError extends NetworkError {
  readonly status: number | null;
  /** Which tool failed: iptables, iptables-save or iptables-restore. */
  readonly program: string;
  constructor(args: string[], status: number | null, stderr: string, cause: unknown, program = 'iptables') {
    super('D2P_NETWORK_SYSTEM', `${[program, ...args].join(' ')} failed (exit ${status}): ${stderr.trim() || 'no message'}`, { cause, errno: errnoOf(cause) });
    this.status = status;
    this.program = program;
  }
}

/** A failed iptables-restore, with the input it was applying: which rules did not go in, and why. */
export class IptablesRestoreError extends IptablesExitError {
  /** The input fed to iptables-restore, line by line. */
  readonly lines: string[];
  /** The input line iptables-restore named in its message ("line 3 failed"), when it named one. */
  readonly failedLine: string | undefined;
  constructor(args: string[], lines: string[], status: number | null, stderr: string, cause: unknown) {
    const lineNumber = /line (\d+) failed/.exec(stderr)?.[1];
    const failedLine = lineNumber === undefined ? undefined : lines[Number(lineNumber) - 1];
    const detail = [stderr.trim() || 'no message', ...(failedLine === undefined ? [] : [`(line ${lineNumber} is "${failedLine}")`]), `while applying: ${lines.join(' ⏎ ')}`];
    super(args, status, detail.join(' '), cause, 'iptables-restore');
    this.lines = lines;
    this.failedLine = failedLine;
  }
}

/** The iptables binary if this machine has one, else undefined. */
export function findIptables(searchPath = process.env.PATH ?? ''): string | undefined {
  const dirs = [...searchPath.split(':').filter((d) => d !== ''), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const candidate = path.join(dir, 'iptables');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch (error) {
      if (!['ENOENT', 'EACCES', 'ENOTDIR'].includes(errnoOf(error) ?? '')) throw error;
    }
  }
  return undefined;
}

/** What a failed child process left: its exit status (null when it never ran, e.g. ENOENT) and its stderr, else Node's message. */
function failureOf(error: unknown): { status: number | null; stderr: string } {
  const failed = error as { code?: unknown; stderr?: unknown };
  // execFile reports the exit status as a numeric `code`, and a failure to start as a string one (ENOENT).
  const status = typeof failed.code === 'number' ? failed.code : null;
  const stderr = typeof failed.stderr === 'string' && failed.stderr.trim() !== '' ? failed.stderr : (error as Error).message;
  return { status, stderr };
}

function exitError(args: string[], error: unknown, program = 'iptables'): IptablesExitError {
  const { status, stderr } = failureOf(error);
  return new IptablesExitError(args, status, stderr, error, program);
}

// -w: wait for the xtables lock instead of failing while another tool holds it.
const WAIT_FOR_LOCK = '-w';

/** `iptables -C …` exits 1 when the rule or chain does not exist (iptables(8)); any other failure is one. */
function isNotFound(error: unknown): boolean {
  return error instanceof IptablesExitError && error.status === 1;
}

/**
 * The iptables tools run as child processes the event loop does not wait for: an iptables
 * process takes milliseconds, and the daemon's loop serves every controller meanwhile.
 */
export interface IptablesTools {
  /** `iptables -w ARGS`; resolves to stdout, rejects with IptablesExitError. */
  run(args: string[]): Promise<string>;
  /** `iptables-save`: every table's chains and rules, in the form iptables-restore reads. */
  save(): Promise<string>;
  /**
   * `iptables-restore -w --noflush` fed `input`: all its changes in one process, committed
   * per table (nf_tables: all tables in one transaction), so a failed line applies nothing
   * of its table. Rejects with IptablesRestoreError.
   */
  restore(input: string): Promise<void>;
}

const execFileAsync = promisify(execFile);
/** iptables-save of a machine with many rules (kube-proxy's) runs to megabytes; execFile's default cap is 1 MiB. */
const MAX_OUTPUT = 256 * 1024 * 1024;

/**
 * iptables-save and iptables-restore ship next to each iptables binary under its name plus
 * a suffix (iptables-save, iptables-nft-save, iptables-legacy-save), so the three always
 * talk to the same backend.
 */
export function iptablesTools(binary: string): IptablesTools {
  const saveBinary = `${binary}-save`;
  const restoreBinary = `${binary}-restore`;
  const execute = async (file: string, args: string[], input?: string): Promise<string> => {
    const pending = execFileAsync(file, args, { encoding: 'utf8', maxBuffer: MAX_OUTPUT });
    let inputError: Error | undefined;
    pending.child.stdin?.on('error', (error) => {
      inputError = error;
    });
    // Without input, stdin is closed unwritten: a tool that exits at once must not meet EPIPE.
    if (input === undefined) pending.child.stdin?.end();
    else pending.child.stdin?.end(input);
    // A tool that failed may have stopped reading (EPIPE): its exit status and stderr say why.
    const { stdout } = await pending;
    // A tool that exited 0 without reading all its input did not apply all of it.
    if (inputError !== undefined) throw inputError;
    return stdout;
  };
  return {
    async run(args) {
      try {
        return await execute(binary, [WAIT_FOR_LOCK, ...args]);
      } catch (error) {
        throw exitError(args, error);
      }
    },
    async save() {
      // No -w: iptables-save accepts no such option (1.8.9, nft and legacy); it only reads.
      try {
        return await execute(saveBinary, []);
      } catch (error) {
        throw exitError([], error, saveBinary);
      }
    },
    async restore(input) {
      // -w is accepted by iptables-restore since 1.6.2, legacy and nft alike.
      const args = [WAIT_FOR_LOCK, '--noflush'];
      try {
        await execute(restoreBinary, args, input);
      } catch (error) {
        const { status, stderr } = failureOf(error);
        throw new IptablesRestoreError(args, input.split('\n').filter((line) => line !== ''), status, stderr, error);
      }
    },
  };
}

/** `iptables -t TABLE -C …` through the asynchronous runner: false when the rule is not there. */
async function iptablesHasAsync(tools: Pick<IptablesTools, 'run'>, table: string, args: string[]): Promise<boolean> {
  try {
    await tools.run(['-t', table, ...args]);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** One table of `iptables-save` output: its chains, and its rules as the `-A CHAIN …` lines printed. */
interface SavedTable {
  chains: Set<string>;
  rules: string[];
}

/** The tables of `iptables-save` output by name; a table not listed has not been created (nft) or loaded (legacy). */
function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let current: SavedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line.startsWith('*')) {
      current = { chains: new Set(), rules: [] };
      tables.set(line.slice(1), current);
    } else if (line === 'COMMIT') {
      current = undefined;
    } else if (current !== undefined && line.startsWith(':')) {
      current.chains.add(line.slice(1).split(' ')[0]);
    } else if (current !== undefined && line.startsWith('-A ')) {
      current.rules.push(line);
    }
  }
  return tables;
}

// ---------------------------------------------------------------------------- read, compare, write

export type IptablesTable = 'filter' | 'nat';

/** One rule in one chain; `spec` is written as iptables-save prints it, so the text can be looked up in a save. */
export interface IptablesRule {
  table: IptablesTable;
  chain: string;
  spec: string[];
  /**
   * A word every equivalent rule's saved line holds however iptables orders it: an
   * interface (names are printed as given), an address or the jump target.
   */
  anchor: string;
  /** Inserted as the chain's first rule instead of appended. */
  first?: boolean;
}

/** Words that iptables-restore reads as one token each: a space or quote would split a line or start a new one. */
const RESTORE_TOKEN = /^[^\s"'#]+$/;

/** The line iptables-save prints for a rule (and iptables-restore reads). */
export function savedLine(rule: IptablesRule): string {
  return ['-A', rule.chain, ...rule.spec].join(' ');
}

/** The iptables-restore input of a change, table by table (in the order first written to): `*table`, its lines, `COMMIT`. */
export class RestoreInput {
  private readonly tables = new Map<IptablesTable, string[]>();

  add(table: IptablesTable, words: string[]): void {
    const bad = words.find((word) => !RESTORE_TOKEN.test(word));
    if (bad !== undefined) throw new NetworkError('D2P_NETWORK_INVALID', `firewall rule word ${JSON.stringify(bad)} (in "${words.join(' ')}") cannot be written to iptables-restore: it holds a space, quote or #`);
    const lines = this.tables.get(table) ?? [];
    lines.push(words.join(' '));
    this.tables.set(table, lines);
  }

  /**
   * Only for a chain that does not exist: iptables-restore flushes a declared chain even
   * with --noflush.
   */
  declareChain(table: IptablesTable, chain: string): void {
    this.add(table, [`:${chain}`, '-', '[0:0]']);
  }

  addRule(rule: IptablesRule): void {
    this.add(rule.table, rule.first ? ['-I', rule.chain, '1', ...rule.spec] : ['-A', rule.chain, ...rule.spec]);
  }

  get empty(): boolean {
    return this.tables.size === 0;
  }

  toString(): string {
    return [...this.tables].map(([table, lines]) => [`*${table}`, ...lines, 'COMMIT'].join('\n')).join('\n') + '\n';
  }
}

/** What one iptables-save showed of the tables our chains live in. */
export class IptablesState {
  private readonly tables: Map<string, SavedTable>;

  /** `ownChains`: the chains of the caller, which a rule may jump to only once they exist. */
  constructor(
    saved: string,
    private readonly ownChains: ReadonlySet<string>,
  ) {
    this.tables = parseIptablesSave(saved);
  }

  hasChain(table: IptablesTable, chain: string): boolean {
    return this.tables.get(table)?.chains.has(chain) ?? false;
  }

  /** How often the rule is in the save, textually: iptables happily holds duplicates. */
  count(rule: IptablesRule): number {
    const line = savedLine(rule);
    return (this.tables.get(rule.table)?.rules ?? []).filter((saved) => saved === line).length;
  }

  /** The saved lines of a chain. */
  rulesOf(table: IptablesTable, chain: string): string[] {
    return (this.tables.get(table)?.rules ?? []).filter((line) => line.startsWith(`-A ${chain} `));
  }

  /**
   * The saved lines of a chain once a change deleting `deleted` (lines `TABLE -A …`, one
   * per copy) is applied.
   */
  rulesLeft(table: IptablesTable, chain: string, deleted: readonly string[]): string[] {
    const toDelete = [...deleted];
    return this.rulesOf(table, chain).filter((line) => {
      const index = toDelete.indexOf(`${table} ${line}`);
      if (index >= 0) toDelete.splice(index, 1);
      return index < 0;
    });
  }

  /** The lines of `hook` that jump to `target`, whatever their matches (a jump of an older version too). */
  jumpsTo(table: IptablesTable, hook: string, target: string): string[] {
    return this.rulesOf(table, hook).filter((line) => {
      const words = line.split(' ');
      return words[words.length - 2] === '-j' && words[words.length - 1] === target;
    });
  }

  /**
   * Whether the rule may be in the tables although not verbatim: its chain and, for a jump
   * to one of ours, its target exist (`iptables -C` of a jump to a missing chain fails
   * rather than saying no), and a line of the chain outside `known` (the lines of the rules
   * at hand) names the rule's anchor.
   */
  mayHoldInOtherForm(rule: IptablesRule, known: ReadonlySet<string>): boolean {
    const target = rule.spec[rule.spec.indexOf('-j') + 1];
    if (!this.hasChain(rule.table, rule.chain) || (this.ownChains.has(target) && !this.hasChain(rule.table, target))) return false;
    return this.rulesOf(rule.table, rule.chain).some((line) => !known.has(line) && line.split(' ').includes(rule.anchor));
  }
}

/** `iptables -C` of the rule, which compares rules, not text. */
function ruleExists(tools: Pick<IptablesTools, 'run'>, rule: IptablesRule): Promise<boolean> {
  return iptablesHasAsync(tools, rule.table, ['-C', rule.chain, ...rule.spec]);
}

/**
 * Not in the save verbatim but there per `iptables -C` (a subnet written as 172.18.0.1/16,
 * an iptables that orders matches differently): a formatting difference must neither add a
 * rule twice nor leave one behind. Asked only when some unexplained line could be it, so a
 * usual save costs no iptables process.
 */
async function presentInOtherForm(tools: Pick<IptablesTools, 'run'>, state: IptablesState, rule: IptablesRule, known: ReadonlySet<string>): Promise<boolean> {
  return state.count(rule) === 0 && state.mayHoldInOtherForm(rule, known) && (await ruleExists(tools, rule));
}

/** In the tables verbatim, or in another form per `iptables -C`. */
export async function ruleHeld(tools: Pick<IptablesTools, 'run'>, state: IptablesState, rule: IptablesRule, known: ReadonlySet<string>): Promise<boolean> {
  return state.count(rule) > 0 || (await presentInOtherForm(tools, state, rule, known));
}

/**
 * Deletes, with `iptables -D` one copy at a time, the rules present only in another form:
 * the save cannot tell how many copies of them there are. True when it deleted one, so the
 * caller reads the tables again.
 */
export async function deleteOtherForms(tools: Pick<IptablesTools, 'run'>, state: IptablesState, rules: readonly IptablesRule[]): Promise<boolean> {
  const known = new Set(rules.map(savedLine));
  const otherForm = (await Promise.all(rules.map(async (rule) => ((await presentInOtherForm(tools, state, rule, known)) ? rule : undefined)))).filter((rule) => rule !== undefined);
  for (const rule of otherForm) while (await ruleExists(tools, rule)) await tools.run(['-t', rule.table, '-D', rule.chain, ...rule.spec]);
  return otherForm.length > 0;
}

/** Adds a `-D` of every saved copy of the rules; returns the deleted lines (`TABLE -A …`) for IptablesState.rulesLeft. */
export function deleteEveryCopy(state: IptablesState, rules: readonly IptablesRule[], changes: RestoreInput): string[] {
  const deleted: string[] = [];
  for (const rule of rules) {
    for (let copy = 0; copy < state.count(rule); copy++) {
      changes.add(rule.table, ['-D', rule.chain, ...rule.spec]);
      deleted.push(`${rule.table} ${savedLine(rule)}`);
    }
  }
  return deleted;
}

/** Adds the `-D` of every jump from `hooks` to `chain`, whatever its matches (a chain still referenced cannot go). */
export function deleteJumpsTo(state: IptablesState, table: IptablesTable, chain: string, hooks: readonly string[], changes: RestoreInput): void {
  for (const hook of hooks) for (const line of state.jumpsTo(table, hook, chain)) changes.add(table, ['-D', ...line.split(' ').slice(1)]);
}

/** Each rule once (the same rule wanted twice would be added or deleted twice). */
export function uniqueRules(rules: IptablesRule[]): IptablesRule[] {
  const seen = new Set<string>();
  return rules.filter((rule) => {
    const key = `${rule.table} ${savedLine(rule)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Adds to `changes` the chains that do not exist (declaring an existing one would flush
 * it) and the rules the tables do not hold, in the order given. `known`: lines of other
 * rules at hand, which an unexplained saved line is not taken for.
 */
export async function addMissing(
  tools: Pick<IptablesTools, 'run'>,
  state: IptablesState,
  chains: ReadonlyArray<readonly [IptablesTable, string]>,
  rules: readonly IptablesRule[],
  known: ReadonlySet<string>,
  changes: RestoreInput,
): Promise<void> {
  for (const [table, chain] of chains) if (!state.hasChain(table, chain)) changes.declareChain(table, chain);
  const allKnown = new Set([...known, ...rules.map(savedLine)]);
  const present = await Promise.all(rules.map((rule) => ruleHeld(tools, state, rule, allKnown)));
  for (const rule of rules.filter((_, index) => !present[index])) changes.addRule(rule);
}

/**
 * Runs operations on the tables one at a time: two that both found a chain missing would
 * both declare it, and iptables-restore flushes a declared chain even with --noflush.
 */
export class OneAtATime {
  private pending: Promise<unknown> = Promise.resolve();

  run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.pending.then(operation);
    // The next operation waits for this one to end, not to succeed; its caller gets the error.
    this.pending = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
