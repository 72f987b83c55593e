// d2p logs [-f] [--tail N] [--since T] [-t] [SERVICE…] — docker compose logs: the json-file
// logs of the project's containers, merged by time, each line prefixed "web-1  | ". With
// -f it keeps printing, across restarts (a recreated container writes a new file at the
// same path) and for replicas that appear later. The CLI runs as root on the machine the
// daemon runs on, so it reads the runtime's log files directly; which containers exist
// still comes from the API.
import type { CommandContext } from '../context';
import { interruptSignal } from '../container-state';
import type { Writer } from '../io';
import { PrefixedPrinter, ProjectFollower } from '../log-follower';
import { parseSince, parseTail, type LogFilter } from '../logs-reader';
import { projectContainers, requireProject, type ProjectFlags } from './ps';

export interface LogsOptions extends ProjectFlags {
  services?: string[];
  follow?: boolean;
  tail?: string;
  since?: string;
  timestamps?: boolean;
  noColor?: boolean;
  noLogPrefix?: boolean;
  cwd?: string;
  /** Ends -f (Ctrl-C in the CLI, the end of a test). */
  signal?: AbortSignal;
}

/** Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function wantsColour(out: Writer, noColor = false): boolean {
  return !noColor && (out as { isTTY?: boolean }).isTTY === true && !process.env.NO_COLOR;
}

export async function logsCommand(opts: LogsOptions, ctx: CommandContext): Promise<number> {
  const filter: LogFilter = {
    tail: parseTail(opts.tail),
    sinceNs: opts.since === undefined ? undefined : parseSince(opts.since, ctx.now()),
  };
  const project = await requireProject(opts, { cwd: opts.cwd });
  const client = await ctx.client();
  const services = opts.services ?? [];
  const containers = await projectContainers(client, project, services);
  const printer = new PrefixedPrinter(ctx.io.stdout, {
    colour: wantsColour(ctx.io.stdout, opts.noColor),
    timestamps: opts.timestamps ?? false,
    prefix: !opts.noLogPrefix,
  });
  const followers = new ProjectFollower(ctx.paths.containers, printer, filter);
  followers.addAll(containers);
  if (!opts.follow) return 0;
  const interrupt = interruptSignal(opts.signal);
  try {
    await followers.run(() => projectContainers(client, project, services), interrupt.signal);
  } finally {
    interrupt.dispose();
  }
  return 0;
}

