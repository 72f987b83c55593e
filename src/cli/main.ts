// The d2p command line (bin/d2p). Kept light on purpose: each command's module, and the
// heavy libraries it needs (yaml, ajv, the Compose loader), are required only when
// that command runs, because `d2p get` has a start-up budget (DESIGN.md §9).
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createContext, type CommandContext, type ContextOptions, type GlobalOptions } from './context';
import { formatError } from './format-error';
import { CliError, ReportedError, type CliIO } from './io';

type Action<O> = (opts: O, ctx: CommandContext) => Promise<number>;

export const COMMAND_NAMES = ['convert', 'apply', 'get', 'describe', 'delete', 'diff', 'daemon', 'version'] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** Finds a command's function; each lives in commands/<name>.ts as `<name>Command`. */
export type CommandLoader = (name: CommandName) => Action<never>;

/** Loads the command's module only when it runs: most of the start-up cost is in what commands import. */
const requireCommand: CommandLoader = (name) => {
  const mod = require(`./commands/${name}`) as Record<string, Action<never>>;
  return mod[`${name}Command`];
};

type Runner = <O>(cmd: Command, name: CommandName, opts: O) => Promise<void>;

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** kubectl's boolean flags take "=false" (`--wait=false`); commander reports the bad value with the option's name. */
function parseBool(value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new InvalidArgumentError('expected true or false');
}

/** --root/--socket/--debug are accepted before or after the command word. */
function addGlobalOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--root <dir>', 'state root (default /var/lib/d2p)').env('D2P_ROOT'))
    .addOption(new Option('--socket <path>', 'API socket of the daemon (default /run/d2p/d2p.sock, or <root>/d2p.sock)').env('D2P_SOCKET'))
    .option('--debug', 'print stack traces of errors');
}

function addSourceOptions(cmd: Command): Command {
  return cmd
    .option('-f, --filename <path>', 'Compose file, manifest file or directory ("-" for stdin); repeatable', collect)
    .option('-p, --project-name <name>', 'Compose project name (the namespace of its objects)')
    .option('--profile <name>', 'Compose profile to enable; repeatable', collect);
}

interface SourceFlags {
  filename?: string[];
  projectName?: string;
  profile?: string[];
  namespace?: string;
}

function sourceOptions(flags: SourceFlags): { files: string[]; projectName?: string; profiles?: string[]; namespace?: string } {
  return { files: flags.filename ?? [], projectName: flags.projectName, profiles: flags.profile, namespace: flags.namespace };
}

export function buildProgram(io: CliIO, run: Runner): Command {
  const program = addGlobalOptions(new Command('d2p'))
    .description('Run Docker Compose applications as isolated Linux processes, reconciled like Kubernetes')
    .showHelpAfterError("(run 'd2p --help' for usage)")
    // Set before the subcommands exist, so they inherit it: main decides the exit status.
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) });

  addSourceOptions(addGlobalOptions(program.command('convert')))
    .description('print the manifests a Compose application becomes')
    .option('-o, --output <format>', 'yaml or json', 'yaml')
    .action((flags: SourceFlags & { output: string }, cmd: Command) =>
      run(cmd, 'convert', { ...sourceOptions(flags), output: flags.output }),
    );

  addSourceOptions(addGlobalOptions(program.command('apply')))
    .description('apply Compose files or manifests: everything, or nothing if anything is invalid')
    .option('-n, --namespace <ns>', 'namespace of manifests that name none')
    .option('--dry-run <strategy>', 'none, server (the daemon checks, nothing is written) or client', 'none')
    .action((flags: SourceFlags & { dryRun: string }, cmd: Command) =>
      run(cmd, 'apply', { ...sourceOptions(flags), dryRun: flags.dryRun }),
    );

  addGlobalOptions(program.command('get'))
    .description('list objects: d2p get KIND [NAME…] | kind/name… | all')
    .argument('[resources...]', 'kind (ctr, svc, img, bld, net, vol, ev, all) and names')
    .option('-n, --namespace <ns>', 'namespace (default "default")')
    .option('-A, --all-namespaces', 'objects of every namespace')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web,tier!=db')
    .option('-o, --output <format>', 'wide, yaml, json or name')
    .option('-w, --watch', 'after listing, print changes as they happen')
    .option('--show-labels', 'add a LABELS column')
    .action((args: string[], flags: Record<string, unknown>, cmd: Command) => {
      const abort = new AbortController();
      // Ctrl-C ends a watch cleanly (connections closed, exit status 0), as kubectl get -w.
      if (flags.watch) process.once('SIGINT', () => abort.abort());
      return run(cmd, 'get', {
        args,
        namespace: flags.namespace as string | undefined,
        allNamespaces: flags.allNamespaces as boolean | undefined,
        selector: flags.selector as string | undefined,
        output: flags.output as string | undefined,
        watch: flags.watch as boolean | undefined,
        showLabels: flags.showLabels as boolean | undefined,
        signal: abort.signal,
      });
    });

  addGlobalOptions(program.command('describe'))
    .description('show an object, what it owns and the events about it: d2p describe KIND [NAME…]')
    .argument('[resources...]', 'kind and names, or kind/name')
    .option('-n, --namespace <ns>', 'namespace')
    .option('-l, --selector <selector>', 'label selector (when no name is given)')
    .action((args: string[], flags: Record<string, unknown>, cmd: Command) =>
      run(cmd, 'describe', {
        args,
        namespace: flags.namespace as string | undefined,
        selector: flags.selector as string | undefined,
      }),
    );

  addSourceOptions(addGlobalOptions(program.command('delete')))
    .description('delete objects: d2p delete -f FILE|DIR, or d2p delete KIND NAME…')
    .argument('[resources...]', 'kind and names, or kind/name')
    .option('-n, --namespace <ns>', 'namespace')
    .option('-l, --selector <selector>', 'delete the objects of the kind matching this label selector')
    .option('--all', 'delete every object of the kind in the namespace')
    .option('--ignore-not-found', 'say nothing about objects that do not exist')
    .option('--wait [bool]', 'wait until the objects are gone (default true)', parseBool, true)
    .option('--no-wait', 'return once the deletions are requested')
    .option('--timeout <duration>', 'how long --wait waits', '60s')
    .action((args: string[], flags: SourceFlags & Record<string, unknown>, cmd: Command) =>
      run(cmd, 'delete', {
        ...sourceOptions(flags),
        args,
        selector: flags.selector as string | undefined,
        all: flags.all as boolean | undefined,
        ignoreNotFound: flags.ignoreNotFound as boolean | undefined,
        wait: flags.wait as boolean,
        timeout: flags.timeout as string,
      }),
    );

  addSourceOptions(addGlobalOptions(program.command('diff')))
    .description('show what apply would change; exit 1 when it would change something')
    .option('-n, --namespace <ns>', 'namespace of manifests that name none')
    .action((flags: SourceFlags, cmd: Command) => run(cmd, 'diff', sourceOptions(flags)));

  addGlobalOptions(program.command('daemon'))
    .description('serve the API and run the controllers in the foreground')
    .option('--no-controllers', 'serve the API only')
    .action((flags: { controllers: boolean }, cmd: Command) =>
      run(cmd, 'daemon', { controllers: flags.controllers }),
    );

  addGlobalOptions(program.command('version'))
    .description('print the version')
    .action((_flags: unknown, cmd: Command) => run(cmd, 'version', {}));

  return program;
}

export interface MainOptions {
  /** Tests pass the command functions imported (vitest cannot require() .ts modules). */
  load?: CommandLoader;
  context?: ContextOptions;
}

/** Runs one command line; resolves with the exit status. Never throws for expected errors. */
export async function main(argv: readonly string[], io: CliIO, opts: MainOptions = {}): Promise<number> {
  let status = 0;
  const load = opts.load ?? requireCommand;
  const run: Runner = async (cmd, name, commandOpts) => {
    const global = cmd.optsWithGlobals() as GlobalOptions;
    const ctx = createContext(global, io, opts.context);
    try {
      status = await (load(name) as Action<typeof commandOpts>)(commandOpts, ctx);
    } catch (err) {
      status = reportError(err, io, global.debug ?? false);
    } finally {
      await ctx.close();
    }
  };
  const program = buildProgram(io, run);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    return commanderExit(err, io);
  }
  return status;
}

function reportError(err: unknown, io: CliIO, debug: boolean): number {
  if (err instanceof ReportedError) {
    if (err.message) io.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  io.stderr.write(formatError(err, { debug }));
  return err instanceof CliError ? err.exitCode : 1;
}

/** commander already printed its message (unknown option, --help); only the status is left. */
function commanderExit(err: unknown, io: CliIO): number {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('commander.')) return (err as { exitCode: number }).exitCode;
  return reportError(err, io, false);
}

/** Run as a program: bin/d2p requires this file, and ensureDaemon runs it with node directly. */
function isEntryPoint(): boolean {
  const entry = require.main;
  return entry !== undefined && (entry === module || path.basename(entry.filename) === 'd2p');
}

if (isEntryPoint()) {
  // `d2p get … | head` closes the pipe early; that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(formatError(err, { debug: true }));
      process.exitCode = 1;
    },
  );
}
