// `d2p daemon --manifests DIR`: the watcher runs inside the daemon as one more client of its
// API, started after the controllers and stopped before them (and before the API server
// closes), through runDaemon's startControllers hook so runDaemon needs no change.
import type { Controllers, DaemonOptions } from '../server/daemon';
import { formatSyncLine, type SyncReport } from './sync';
import { startGitOps, type GitOpsOptions } from './watcher';

type StartControllers = NonNullable<DaemonOptions['startControllers']>;

/** `start` (the controllers, or nothing) followed by a GitOps watcher of `gitops.dir`. */
export function withGitOps(start: StartControllers | undefined, gitops: Omit<GitOpsOptions, 'client'>): StartControllers {
  return async (ctx) => {
    const controllers: Controllers | undefined = start ? await start(ctx) : undefined;
    try {
      const log = gitops.log ?? daemonLog;
      const onSync = gitops.onSync ?? ((report: SyncReport) => logIfNotable(report, log));
      const watcher = await startGitOps({ ...gitops, log, onSync, client: ctx.client });
      return {
        stop: async () => {
          try {
            await watcher.stop();
          } finally {
            await controllers?.stop();
          }
        },
      };
    } catch (err) {
      await controllers?.stop();
      throw err;
    }
  };
}

/** The daemon's log format (src/server/daemon.ts), so both read as one log. */
function daemonLog(line: string): void {
  process.stderr.write(`${new Date().toISOString()} d2p gitops: ${line}\n`);
}

/** A periodic resync that changed nothing is not worth a line every 30 seconds. */
function logIfNotable(report: SyncReport, log: (line: string) => void): void {
  const notable = report.error !== undefined || report.applied.length + report.pruned.length + report.driftCorrected.length + report.fileErrors.length > 0;
  if (notable) log(formatSyncLine(report));
}
