// The d2p command line (bin/d2p). Kept light on purpose: each command's module, and the
// heavy libraries it needs (yaml, ajv, the Compose loader), are required only when
// that command runs, because `d2p get` has a start-up budget (DESIGN.md §9).
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createContext, type CommandContext, type ContextOptions, type GlobalOptions } from './context';
import { formatError } from './format-error';
import { CliError, ReportedError, type CliIO } from './io';

type Action<O> = (opts: O, ctx: CommandContext) => Promise<number>;

/** The Compose commands of issue 5; `lifecycle` serves start|stop|restart|kill|pause|unpause|rm. */
const WORKLOAD_COMMANDS = ['up', 'down', 'ps', 'logs', 'exec', 'run', 'lifecycle', 'stats', 'top', 'port'] as const;

/** The words that run the `lifecycle` command, as docker compose's verbs. */
export const LIFECYCLE_ACTIONS = ['start', 'stop', 'restart', 'kill', 'pause', 'unpause', 'rm'] as const;

export const COMMAND_NAMES = ['convert', 'apply', 'get', 'describe', 'delete', 'diff', 'daemon', 'watch', 'version', 'image', 'build', 'network', ...WORKLOAD_COMMANDS] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** Finds a command's function; each lives in commands/<name>.ts as `<name>Command`. */
export type CommandLoader = (name: CommandName) => Action<never>;

/**
 * Loads the command's module only when it runs: most of the start-up cost is in what
 * commands import. The path is computed, not a literal, so that a bundler leaves it alone:
 * a command's bundle (hack/build-cli-bundles.js) holds that command only, and gives main()
 * its own loader.
 */
const requireCommand: CommandLoader = (name) => {
  const mod = require(path.join(__dirname, 'commands', name)) as Record<string, Action<never>>;
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

/** Whether to build a command: all of them, or only the one the command line names. */
type Wanted = (name: string) => boolean;

/**
 * The program, with every command, or with `only` that one: building all ~30 commands and
 * their options took ~7 ms of every start, one ~1.5 ms (DESIGN.md §9's start-up budget).
 */
export function buildProgram(io: CliIO, run: Runner, only?: string): Command {
  const want: Wanted = (name) => only === undefined || name === only;
  const program = addGlobalOptions(new Command('d2p'))
    .description('Run Docker Compose applications as isolated Linux processes, reconciled like Kubernetes')
    .showHelpAfterError("(run 'd2p --help' for usage)")
    // Set before the subcommands exist, so they inherit it: main decides the exit status.
    .exitOverride()
    // `d2p run IMG sh -c …` and `d2p exec web ls -l`: options after the operand belong to the command run.
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) });

  if (want('convert')) {
    addSourceOptions(addGlobalOptions(program.command('convert')))
      .description('print the manifests a Compose application becomes')
      .option('-o, --output <format>', 'yaml or json', 'yaml')
      .action((flags: SourceFlags & { output: string }, cmd: Command) =>
        run(cmd, 'convert', { ...sourceOptions(flags), output: flags.output }),
      );
  }

  if (want('apply')) {
    addSourceOptions(addGlobalOptions(program.command('apply')))
      .description('apply Compose files or manifests: everything, or nothing if anything is invalid')
      .option('-n, --namespace <ns>', 'namespace of manifests that name none')
      .option('--dry-run <strategy>', 'none, server (the daemon checks, nothing is written) or client', 'none')
      .action((flags: SourceFlags & { dryRun: string }, cmd: Command) =>
        run(cmd, 'apply', { ...sourceOptions(flags), dryRun: flags.dryRun }),
      );
  }

  if (want('get')) {
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
  }

  if (want('describe')) {
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
  }

  if (want('delete')) {
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
  }

  if (want('diff')) {
    addSourceOptions(addGlobalOptions(program.command('diff')))
      .description('show what apply would change; exit 1 when it would change something')
      .option('-n, --namespace <ns>', 'namespace of manifests that name none')
      .action((flags: SourceFlags, cmd: Command) => run(cmd, 'diff', sourceOptions(flags)));
  }

  if (want('daemon')) {
    addGlobalOptions(program.command('daemon'))
      .description('serve the API and run the controllers in the foreground')
      .option('--no-controllers', 'serve the API only')
      .option('--manifests <dir>', 'keep the Compose files and manifests of this directory applied (GitOps)')
      .action((flags: { controllers: boolean; manifests?: string }, cmd: Command) =>
        run(cmd, 'daemon', { controllers: flags.controllers, manifests: flags.manifests }),
      );
  }

  if (want('watch')) {
    addGlobalOptions(program.command('watch'))
      .description('keep a directory of Compose files and manifests applied, printing one line per sync (Ctrl-C stops)')
      .argument('<dir>', 'the manifest directory')
      .option('--name <name>', 'name of the Source object (default: the directory name)')
      .option('-n, --namespace <ns>', 'namespace of the Source object', 'd2p-system')
      .option('--no-prune', 'keep objects whose files were removed')
      .option('--interval <duration>', 'full resync period, which also puts back drift', '30s')
      .action((dir: string, flags: { name?: string; namespace: string; prune: boolean; interval: string }, cmd: Command) => {
        const abort = new AbortController();
        process.once('SIGINT', () => abort.abort());
        process.once('SIGTERM', () => abort.abort());
        return run(cmd, 'watch', { dir, ...flags, signal: abort.signal });
      });
  }

  if (want('version')) {
    addGlobalOptions(program.command('version'))
      .description('print the version')
      .action((_flags: unknown, cmd: Command) => run(cmd, 'version', {}));
  }

  registerWorkloadCommands(program, run, want);
  registerImageCommands(program, run, want);
  registerBuildCommand(program, run, want);
  registerNetworkCommand(program, run, want);
  return program;
}

/** `d2p network ls|inspect|create|rm|connect|disconnect …` parses its own subcommands (commands/network.ts). */
function registerNetworkCommand(program: Command, run: Runner, want: Wanted): void {
  if (want('network')) {
    addGlobalOptions(program.command('network'))
      .description('manage networks: ls, inspect, create, rm, connect, disconnect (a running container is connected without a restart)')
      .argument('[args...]', 'd2p network --help lists them')
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action((args: string[], _flags: unknown, cmd: Command) => run(cmd, 'network', { args }));
  }
}

/**
 * `d2p image SUBCOMMAND …` parses its own subcommands (commands/image.ts), so only the word
 * is registered here; `d2p pull` and `d2p images` are docker's shortcuts for two of them.
 */
function registerImageCommands(program: Command, run: Runner, want: Wanted): void {
  const words: [word: string, subcommand: string[], description: string][] = [
    ['image', [], 'manage local images: pull, ls, inspect, rm, tag, push, prune, save, load, login, logout'],
    ['pull', ['pull'], 'pull an image from a registry (d2p image pull)'],
    ['images', ['ls'], 'list local images (d2p image ls)'],
    ['login', ['login'], 'log in to a registry (d2p image login)'],
    ['logout', ['logout'], 'log out of a registry (d2p image logout)'],
  ];
  for (const [word, subcommand, description] of words) {
    if (!want(word)) continue;
    addGlobalOptions(program.command(word))
      .description(description)
      .argument('[args...]', 'd2p image --help lists them')
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action((args: string[], _flags: unknown, cmd: Command) => run(cmd, 'image', { args: [...subcommand, ...args] }));
  }
}

/** docker build, run in the CLI process (commands/build.ts). */
function registerBuildCommand(program: Command, run: Runner, want: Wanted): void {
  if (want('build')) {
    addGlobalOptions(program.command('build'))
      .description('build an image from a Dockerfile and a context directory: d2p build [OPTIONS] PATH')
      .argument('<path>', 'the build context directory')
      .option('-t, --tag <name:tag>', 'name and tag of the image; repeatable', collect)
      .option('-f, --file <path>', 'the Dockerfile (default: PATH/Dockerfile)')
      .option('--build-arg <K=V>', 'build-time variable; repeatable', collect)
      .option('--target <stage>', 'build this stage and the ones it needs only')
      .option('--no-cache', 'run every step, ignoring the build cache')
      .option('--progress <mode>', 'auto, plain or tty', 'auto')
      .option('--network <mode>', 'network of RUN steps: none (default) or host')
      .option('--platform <os/arch>', 'platform of the image (default: this machine)')
      .option('-q, --quiet', 'print only the image ID')
      .action((contextPath: string, flags: Record<string, unknown>, cmd: Command) =>
        run(cmd, 'build', {
          path: contextPath,
          tags: flags.tag,
          file: flags.file,
          buildArgs: flags.buildArg,
          target: flags.target,
          noCache: flags.cache === false,
          progress: flags.progress,
          network: flags.network,
          platform: flags.platform,
          quiet: flags.quiet,
        }),
      );
  }
}

/** -p/--filename/--profile of the Compose commands; `-f` stays free where docker gives it another meaning (logs -f, rm -f). */
function addProjectOptions(cmd: Command, shortFile = true): Command {
  return cmd
    .option(shortFile ? '-f, --filename <path>' : '--filename <path>', 'Compose file; repeatable', collect)
    .option('-p, --project-name <name>', 'Compose project name (the namespace of its objects)')
    .option('--profile <name>', 'Compose profile to enable; repeatable', collect);
}

function projectOptions(flags: SourceFlags): { files?: string[]; projectName?: string; profiles?: string[] } {
  return { files: flags.filename, projectName: flags.projectName, profiles: flags.profile };
}

/** up, down, ps, logs, exec, run, start|stop|restart|kill|pause|unpause|rm, stats, top (issue 5). */
function registerWorkloadCommands(program: Command, run: Runner, want: Wanted): void {
  type Flags = SourceFlags & Record<string, unknown>;
  if (want('up')) {
    addProjectOptions(addGlobalOptions(program.command('up')))
      .description('create and start the Compose project: attached (Ctrl-C stops it), -d, or -d --wait')
      .option('-d, --detach', 'return once applied')
      .option('--wait', 'return once every service is available (implies -d)')
      .option('--wait-timeout <seconds>', 'how long --wait waits')
      .option('--build', 'build the images of services with a build: section first')
      .option('--no-color', 'no colours in the log prefixes')
      .action((flags: Flags, cmd: Command) =>
        run(cmd, 'up', { ...projectOptions(flags), detach: flags.detach, wait: flags.wait, waitTimeout: flags.waitTimeout, build: flags.build, noColor: flags.color === false }),
      );
  }
  if (want('down')) {
    addProjectOptions(addGlobalOptions(program.command('down')))
      .description('remove the project: containers and networks; volumes with -v; images with --rmi all')
      .option('-v, --volumes', 'remove the named volumes too')
      .option('--rmi <which>', 'remove images too: all, or local (built ones)')
      .option('--remove-orphans', 'accepted; down removes every container of the project anyway')
      .option('--timeout <seconds>', 'how long to wait for each kind to be gone')
      .action((flags: Flags, cmd: Command) =>
        run(cmd, 'down', { ...projectOptions(flags), volumes: flags.volumes, rmi: flags.rmi, removeOrphans: flags.removeOrphans, timeout: flags.timeout }),
      );
  }
  if (want('ps')) {
    addProjectOptions(addGlobalOptions(program.command('ps')))
      .description("list the project's containers")
      .argument('[services...]', 'only these services')
      .option('-a, --all', 'stopped containers too')
      .option('-q, --quiet', 'names only')
      .option('--format <format>', 'table or json', 'table')
      .option('--no-trunc', 'do not cut COMMAND')
      .action((services: string[], flags: Flags, cmd: Command) =>
        run(cmd, 'ps', { ...projectOptions(flags), services, all: flags.all, quiet: flags.quiet, format: flags.format, noTrunc: flags.trunc === false }),
      );
  }
  if (want('logs')) {
    addProjectOptions(addGlobalOptions(program.command('logs')), false)
      .description("print the project's container logs")
      .argument('[services...]', 'only these services')
      .option('-f, --follow', 'keep printing new lines (Ctrl-C stops)')
      .option('-n, --tail <lines>', 'only the last lines of each container, or "all"')
      .option('--since <time>', 'only lines since a timestamp or a duration ago (10m)')
      .option('-t, --timestamps', 'print each line\'s time')
      .option('--no-color', 'no colours in the prefixes')
      .option('--no-log-prefix', 'no "service-n  | " prefix')
      .action((services: string[], flags: Flags, cmd: Command) =>
        run(cmd, 'logs', {
          ...projectOptions(flags),
          services,
          follow: flags.follow,
          tail: flags.tail,
          since: flags.since,
          timestamps: flags.timestamps,
          noColor: flags.color === false,
          noLogPrefix: flags.logPrefix === false,
        }),
      );
  }
  if (want('exec')) {
    addProjectOptions(addGlobalOptions(program.command('exec')))
      .description('run a command in a running container: d2p exec SERVICE|CONTAINER CMD…')
      .argument('<target>', 'service or container')
      .argument('<command...>', 'command and its arguments')
      .passThroughOptions()
      // --tty before --no-tty: defined first, --no-tty would make a terminal the default (commander).
      .option('-t, --tty', 'a pseudo-terminal (with -i: interactive, raw mode, resize, Ctrl-C to the container)')
      .option('-T, --no-tty', 'no terminal (the default)')
      .option('-i, --interactive', 'pass stdin to the command')
      .option('-e, --env <K=V>', 'environment variable; repeatable', collect)
      .option('-u, --user <user>', 'user[:group] to run as')
      .option('-w, --workdir <dir>', 'working directory')
      .option('--index <n>', 'which replica of the service (from 1)')
      .action((target: string, command: string[], flags: Flags, cmd: Command) =>
        run(cmd, 'exec', { ...projectOptions(flags), target, command, tty: flags.tty === true, interactive: flags.interactive, env: flags.env, user: flags.user, workdir: flags.workdir, index: flags.index }),
      );
  }
  if (want('run')) {
    addGlobalOptions(program.command('run'))
      .description('run a command in a new container: d2p run [OPTIONS] IMAGE [CMD…]')
      .argument('<image>', 'image reference')
      .argument('[command...]', 'command and its arguments')
      .passThroughOptions()
      .option('--rm', 'remove the container when it exits')
      .option('-d, --detach', 'print the name and return')
      .option('--name <name>', 'container name (default: a random adjective_surname)')
      .option('-e, --env <K=V>', 'environment variable; repeatable', collect)
      .option('-v, --volume <src:dst[:ro]>', 'bind mount or volume; repeatable', collect)
      .option('-p, --publish <[ip:]host:container>', 'publish a port; repeatable', collect)
      .option('-w, --workdir <dir>', 'working directory')
      .option('-u, --user <user>', 'user[:group] to run as')
      .option('--entrypoint <cmd>', 'override the image entrypoint')
      .option('--restart <policy>', 'no, always, unless-stopped, on-failure[:N]')
      .option('--init', 'run an init as PID 1')
      .option('--hostname <name>', 'hostname')
      .option('-t, --tty', 'a pseudo-terminal (with -i: interactive, raw mode, resize, Ctrl-C to the container)')
      .option('-i, --interactive', 'attach stdin')
      .action((image: string, command: string[], flags: Flags, cmd: Command) =>
        run(cmd, 'run', {
          image,
          command,
          ...(['rm', 'detach', 'name', 'env', 'volume', 'publish', 'workdir', 'user', 'entrypoint', 'restart', 'init', 'hostname', 'tty', 'interactive'] as const).reduce(
            (o, k) => ({ ...o, [k]: flags[k] }),
            {},
          ),
        }),
      );
  }
  for (const action of LIFECYCLE_ACTIONS) {
    if (!want(action)) continue;
    const cmd = addProjectOptions(addGlobalOptions(program.command(action)), action !== 'rm')
      .description(`${action} containers: names, namespace/name, or services of the project`)
      .argument('<targets...>', 'containers or services');
    if (action === 'stop' || action === 'restart') cmd.option('-t, --timeout <seconds>', 'seconds before SIGKILL');
    if (action === 'kill') cmd.option('-s, --signal <signal>', 'signal to send', 'SIGKILL');
    if (action === 'rm') cmd.option('-f, --force', 'remove running containers too');
    cmd.action((targets: string[], flags: Flags, c: Command) =>
      run(c, 'lifecycle', { ...projectOptions(flags), action, targets, timeout: flags.timeout, signal: flags.signal, force: flags.force }),
    );
  }
  if (want('stats')) {
    addProjectOptions(addGlobalOptions(program.command('stats')))
      .description('live CPU, memory, network and pids of running containers')
      .argument('[containers...]', 'containers or services (default: the project, or every container)')
      .option('--no-stream', 'print once')
      .option('-a, --all', 'stopped containers too')
      .action((containers: string[], flags: Flags, cmd: Command) =>
        run(cmd, 'stats', { ...projectOptions(flags), containers, noStream: flags.stream === false, all: flags.all }),
      );
  }
  if (want('top')) {
    addProjectOptions(addGlobalOptions(program.command('top')))
      .description("the processes of a container (or of a service's containers)")
      .argument('<targets...>', 'containers or services')
      .action((targets: string[], flags: Flags, cmd: Command) => run(cmd, 'top', { ...projectOptions(flags), targets }));
  }
  if (want('port')) {
    addGlobalOptions(program.command('port'))
      .description('where the ports of a container are published (the real host port, also a random one)')
      .argument('<container>', 'container name')
      .argument('[private-port]', 'PORT or PORT/tcp|udp')
      .option('-n, --namespace <ns>', 'namespace (Compose project) of the container')
      .action((container: string, privatePort: string | undefined, flags: Flags, cmd: Command) =>
        run(cmd, 'port', { container, privatePort, namespace: flags.namespace as string | undefined }),
      );
  }
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
  const word = commandWord(argv);
  let program = buildProgram(io, run, word);
  // Not one of ours (a typo, `help`): the whole program, for commander's help and suggestions.
  if (word !== undefined && program.commands.length === 0) program = buildProgram(io, run);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (err) {
    return commanderExit(err, io);
  }
  return status;
}

/**
 * The command word of a command line: its first operand once the global options (which
 * may come first, `--root DIR` taking a value) are skipped. Undefined for anything else
 * (`--help`, `--version`), which needs the whole program.
 */
export function commandWord(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--root' || arg === '--socket') i++;
    else if (arg === '--debug' || arg.startsWith('--root=') || arg.startsWith('--socket=')) continue;
    else return arg.startsWith('-') ? undefined : arg;
  }
  return undefined;
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

/**
 * Runs this process's command line and sets its exit status. bin/d2p calls it on this
 * module, or on the bundle of the command its line names (dist/cli/<command>.js, see
 * hack/build-cli-bundles.js) with that command's loader; node running this file directly
 * (ensureDaemon's `node main.js daemon`) calls it below.
 */
export function runProgram(opts: MainOptions = {}): void {
  // `d2p get … | head` closes the pipe early; that is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, opts).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(formatError(err, { debug: true }));
      process.exitCode = 1;
    },
  );
}

if (require.main === module) runProgram();
