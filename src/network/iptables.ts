// The iptables binary (iptables-nft or legacy) as both users of it run it: the bridge
// rules of networks (netns.ts) and the DNAT of published ports (nat.ts).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NetworkError, errnoOf } from './errors';

/** Runs iptables with these arguments and returns stdout; throws IptablesExitError on failure. */
export type IptablesRun = (args: string[]) => string;

export class IptablesExitError extends NetworkError {
  readonly status: number | null;
  constructor(args: string[], status: number | null, stderr: string, cause: unknown) {
    super('D2P_NETWORK_SYSTEM', `iptables ${args.join(' ')} failed (exit ${status}): ${stderr.trim() || 'no message'}`, { cause });
    this.status = status;
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

export function runIptables(binary: string): IptablesRun {
  return (args) => {
    try {
      // -w: wait for the xtables lock instead of failing while another tool holds it.
      return execFileSync(binary, ['-w', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const failed = error as { status?: number | null; stderr?: string };
      throw new IptablesExitError(args, failed.status ?? null, String(failed.stderr ?? (error as Error).message), error);
    }
  };
}

/** `iptables -t TABLE -C …` and `-S CHAIN` exit 1 when the rule or chain does not exist (iptables(8)). */
export function iptablesHas(run: IptablesRun, table: string, args: string[]): boolean {
  try {
    run(['-t', table, ...args]);
    return true;
  } catch (error) {
    if (error instanceof IptablesExitError && error.status === 1) return false;
    throw error;
  }
}
