// The iptables binary (iptables-nft or legacy) as both users of it run it: the bridge
// rules of networks (netns.ts) and the DNAT of published ports (nat.ts).
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { NetworkError, errnoOf } from './errors';

/** Runs iptables with these arguments and returns stdout; throws IptablesExitError on failure. */
export type IptablesRun = (args: string[]) => string;

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
  const failed = error as { status?: unknown; code?: unknown; stderr?: unknown };
  // execFileSync reports the exit status as `status`, execFile as a numeric `code`.
  const status = typeof failed.status === 'number' ? failed.status : typeof failed.code === 'number' ? failed.code : null;
  const stderr = typeof failed.stderr === 'string' && failed.stderr.trim() !== '' ? failed.stderr : (error as Error).message;
  return { status, stderr };
}

function exitError(args: string[], error: unknown, program = 'iptables'): IptablesExitError {
  const { status, stderr } = failureOf(error);
  return new IptablesExitError(args, status, stderr, error, program);
}

// -w: wait for the xtables lock instead of failing while another tool holds it.
const WAIT_FOR_LOCK = '-w';

export function runIptables(binary: string): IptablesRun {
  return (args) => {
    try {
      return execFileSync(binary, [WAIT_FOR_LOCK, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      throw exitError(args, error);
    }
  };
}

/** `iptables -C …` and `-S CHAIN` exit 1 when the rule or chain does not exist (iptables(8)); any other failure is one. */
function isNotFound(error: unknown): boolean {
  return error instanceof IptablesExitError && error.status === 1;
}

/** `iptables -t TABLE -C …` and `-S CHAIN` exit 1 when the rule or chain does not exist (iptables(8)). */
export function iptablesHas(run: IptablesRun, table: string, args: string[]): boolean {
  try {
    run(['-t', table, ...args]);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
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
export async function iptablesHasAsync(tools: Pick<IptablesTools, 'run'>, table: string, args: string[]): Promise<boolean> {
  try {
    await tools.run(['-t', table, ...args]);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** One table of `iptables-save` output: its chains, and its rules as the `-A CHAIN …` lines printed. */
export interface SavedTable {
  chains: Set<string>;
  rules: string[];
}

/** The tables of `iptables-save` output by name; a table not listed has not been created (nft) or loaded (legacy). */
export function parseIptablesSave(text: string): Map<string, SavedTable> {
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
