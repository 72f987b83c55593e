// d2p watch DIR: the GitOps loop in the foreground, for trying a directory before handing it
// to the daemon (`d2p daemon --manifests DIR`). It talks to the daemon through the client,
// starting one when none answers, and prints one line per sync until Ctrl-C.
import { formatSyncLine, startGitOps } from '../../gitops';
import type { CommandContext } from '../context';

export interface WatchCommandOptions {
  dir: string;
  name?: string;
  namespace?: string;
  /** default true */
  prune?: boolean;
  /** Full resync period, e.g. "30s". */
  interval?: string;
  /** Aborted by SIGINT/SIGTERM: stop watching and exit 0. */
  signal?: AbortSignal;
}

export async function watchCommand(opts: WatchCommandOptions, ctx: CommandContext): Promise<number> {
  const client = await ctx.client();
  const gitops = await startGitOps({
    client,
    dir: opts.dir,
    name: opts.name,
    namespace: opts.namespace,
    prune: opts.prune,
    interval: opts.interval,
    onSync: (report) => ctx.io.stdout.write(`${formatSyncLine(report)}\n`),
    log: (line) => ctx.io.stderr.write(`${line}\n`),
  });
  ctx.io.stderr.write(`watching ${gitops.dir} as source ${gitops.namespace}/${gitops.name}\n`);
  try {
    await aborted(opts.signal);
  } finally {
    await gitops.stop();
  }
  return 0;
}

/** Resolves when the signal aborts; never, without one (the command runs until killed). */
function aborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
