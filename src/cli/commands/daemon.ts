// d2p daemon: serve the API for one state root and run the controllers, in the foreground,
// until SIGTERM/SIGINT (runDaemon handles both and exits once everything has stopped).
import { startControllers } from '../../../controllers';
import { withGitOps } from '../../gitops/daemon';
import { runDaemon, type DaemonOptions } from '../../server/daemon';
import type { CommandContext } from '../context';

export interface DaemonCommandOptions {
  /** Run without controllers: an API server and store only (debugging, tests). */
  controllers?: boolean;
  /** A manifest directory the daemon keeps applied (GitOps). */
  manifests?: string;
}

export async function daemonCommand(opts: DaemonCommandOptions, ctx: CommandContext): Promise<number> {
  const withControllers = opts.controllers ?? true;
  const controllers: DaemonOptions['startControllers'] = withControllers
    ? ({ client, paths }) => startControllers({ client, paths })
    : undefined;
  await runDaemon({
    root: ctx.paths.root,
    socket: ctx.paths.socket,
    startControllers: opts.manifests ? withGitOps(controllers, { dir: opts.manifests }) : controllers,
  });
  // The listening socket keeps the process alive; runDaemon's signal handlers end it.
  return 0;
}
