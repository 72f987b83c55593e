// d2p daemon: serve the API for one state root and run the controllers, in the foreground,
// until SIGTERM/SIGINT (runDaemon handles both and exits once everything has stopped).
// The controllers and the GitOps watcher are imported only when this daemon runs them:
// the watcher brings the Compose loader, yaml and ajv-formats (~100 modules), which a daemon
// without --manifests never uses, and every module loaded stays in its heap for good.
import type { StartControllersOptions } from '../../../controllers';
import { runDaemon, type DaemonOptions } from '../../server/daemon';
import type { CommandContext } from '../context';

export interface DaemonCommandOptions {
  /** Run without controllers: an API server and store only (debugging, tests). */
  controllers?: boolean;
  /** A manifest directory the daemon keeps applied (GitOps). */
  manifests?: string;
}

type StartControllers = NonNullable<DaemonOptions['startControllers']>;

export async function daemonCommand(opts: DaemonCommandOptions, ctx: CommandContext): Promise<number> {
  const withControllers = opts.controllers ?? true;
  const controllers: StartControllers | undefined = withControllers ? startAllControllers : undefined;
  await runDaemon({
    root: ctx.paths.root,
    socket: ctx.paths.socket,
    startControllers: opts.manifests ? await withGitOpsWatcher(controllers, opts.manifests) : controllers,
  });
  // The listening socket keeps the process alive; runDaemon's signal handlers end it.
  return 0;
}

async function startAllControllers({ client, paths }: Pick<StartControllersOptions, 'client' | 'paths'>): ReturnType<StartControllers> {
  const { startControllers } = await import('../../../controllers/index.js');
  return startControllers({ client, paths });
}

async function withGitOpsWatcher(controllers: StartControllers | undefined, dir: string): Promise<StartControllers> {
  const { withGitOps } = await import('../../gitops/daemon.js');
  return withGitOps(controllers, { dir });
}
