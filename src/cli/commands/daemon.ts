// d2p daemon: serve the API for one state root and run the controllers, in the foreground,
// until SIGTERM/SIGINT (runDaemon handles both and exits once everything has stopped).
import { startControllers } from '../../../controllers';
import { runDaemon } from '../../server/daemon';
import type { CommandContext } from '../context';

export interface DaemonCommandOptions {
  /** Run without controllers: an API server and store only (debugging, tests). */
  controllers?: boolean;
}

export async function daemonCommand(opts: DaemonCommandOptions, ctx: CommandContext): Promise<number> {
  const withControllers = opts.controllers ?? true;
  await runDaemon({
    root: ctx.paths.root,
    socket: ctx.paths.socket,
    startControllers: withControllers
      ? ({ client, paths }) => startControllers({ client, paths })
      : undefined,
  });
  // The listening socket keeps the process alive; runDaemon's signal handlers end it.
  return 0;
}
