// Commands with subcommands of their own (`d2p image …`, `d2p network …`) parse them with a
// commander program of their own, built per call; this runs such a program.
import { type Command, CommanderError } from 'commander';

import { ReportedError } from './io';

/**
 * Parses `args` with the program `build` makes; the subcommand reports its exit status
 * through the callback it is given. commander has printed a usage problem or the help
 * itself by the time it throws, so only the status is left to pass on.
 */
export async function runSubcommands(build: (setStatus: (code: number) => void) => Command, args: readonly string[]): Promise<number> {
  let status = 0;
  const program = build((code) => (status = code));
  try {
    await program.parseAsync([...args], { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.exitCode === 0) return 0;
    throw new ReportedError('', err.exitCode);
  }
  return status;
}
