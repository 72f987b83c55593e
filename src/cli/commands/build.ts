// d2p build [-t TAG…] [-f Dockerfile] [--build-arg K=V…] [--target T] [--no-cache]
//           [--progress auto|plain|tty] [--network none|host] [--platform P] [-q] PATH
// docker build: the builder runs right here in the CLI process, as root on the machine that
// owns the image store (as the docker CLI drives its local engine); no daemon is needed.
// Progress goes to stderr as BuildKit prints it; stdout gets the image ID with -q.
import * as path from 'node:path';
import type { Build } from '../../api/types';
import { registryAuthFile } from '../../../controllers/image';
import { buildImage, BuildError, type BuildOptions, type BuildResult } from '../../build/builder';
import { buildOptionsFromSpec, openBuildDeps, sourceDateEpoch } from '../../build/builder-deps';
import { buildPrinter, type ProgressMode } from '../../build/builder-progress';
import { DockerfileError } from '../../build/dockerfile/index';
import { DockerignoreError } from '../../build/dockerignore';
import type { CommandContext } from '../context';
import { CliError } from '../io';

export interface BuildCommandOptions {
  path: string;
  tags?: string[];
  file?: string;
  buildArgs?: string[];
  target?: string;
  noCache?: boolean;
  progress?: string;
  network?: string;
  platform?: string;
  quiet?: boolean;
  cwd?: string;
}

export async function buildCommand(opts: BuildCommandOptions, ctx: CommandContext): Promise<number> {
  const cwd = opts.cwd ?? process.cwd();
  const buildArgs = parseBuildArgs(opts.buildArgs ?? []);
  const options: BuildOptions = {
    contextDir: path.resolve(cwd, opts.path),
    buildArgs,
    tags: opts.tags ?? [],
    network: parseNetwork(opts.network),
  };
  // docker build: -f is relative to the current directory, not to the context.
  if (opts.file !== undefined) options.dockerfile = path.resolve(cwd, opts.file);
  if (opts.target !== undefined) options.target = opts.target;
  if (opts.noCache) options.noCache = true;
  if (opts.platform !== undefined) options.platform = opts.platform;
  const epoch = cliErrors(() => sourceDateEpoch(buildArgs.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH, 'SOURCE_DATE_EPOCH'));
  if (epoch !== undefined) options.sourceDateEpoch = epoch;
  const result = await runBuild(options, ctx, opts.quiet ? 'quiet' : progressMode(opts.progress, ctx));
  if (opts.quiet) ctx.io.stdout.write(`${result.imageId}\n`);
  return 0;
}

/** Builds with the CLI's paths, printing progress to stderr; errors become CliErrors naming the step. */
export async function runBuild(options: BuildOptions, ctx: CommandContext, mode: ProgressMode): Promise<BuildResult> {
  const printer = buildPrinter(ctx.io.stderr, mode);
  const deps = await openBuildDeps(ctx.paths);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  try {
    const result = await buildImage(
      { ...options, onProgress: (e) => printer.onProgress(e), signal: abort.signal, pull: { authFile: registryAuthFile(ctx.paths) } },
      deps,
    );
    printer.finish(true);
    return result;
  } catch (err) {
    printer.finish(false);
    throw toCliError(err);
  } finally {
    process.removeListener('SIGINT', onSignal);
    // The RUN steps' containers leave their files behind them; this process is about to end.
    await deps.runtime.settled();
  }
}

/** `d2p up --build`: every Build object of the project, one after the other. */
export async function buildObjects(builds: readonly Build[], ctx: CommandContext, mode: ProgressMode = progressMode(undefined, ctx)): Promise<BuildResult[]> {
  const results: BuildResult[] = [];
  for (const b of builds) {
    const where = `build ${b.metadata.namespace ?? 'default'}/${b.metadata.name}`;
    const options = cliErrors(() => buildOptionsFromSpec(b.spec as NonNullable<Build['spec']>, where));
    ctx.io.stderr.write(`[+] Building ${b.metadata.name} (${options.tags?.join(', ') ?? 'untagged'})\n`);
    results.push(await runBuild(options, ctx, mode));
  }
  return results;
}

function toCliError(err: unknown): unknown {
  if (err instanceof BuildError || err instanceof DockerfileError || err instanceof DockerignoreError) {
    return new CliError(`failed to build: ${err.message}`, { code: err.code, cause: err });
  }
  return err;
}

function cliErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw toCliError(err);
  }
}

/** `--build-arg K=V`, or `--build-arg K` taking K from the environment (left out when unset), as docker. */
export function parseBuildArgs(items: readonly string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key === '') throw new CliError(`--build-arg ${JSON.stringify(item)}: expected KEY=VALUE or KEY`, { code: 'D2P_USAGE' });
    const value = eq < 0 ? env[key] : item.slice(eq + 1);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function parseNetwork(value: string | undefined): 'none' | 'host' {
  if (value === undefined || value === 'none' || value === 'default') return 'none';
  if (value === 'host') return 'host';
  throw new CliError(`--network ${JSON.stringify(value)}: expected none (the default) or host`, { code: 'D2P_USAGE' });
}

function progressMode(value: string | undefined, ctx: CommandContext): ProgressMode {
  if (value === 'plain' || value === 'tty') return value;
  if (value === undefined || value === 'auto') return (ctx.io.stderr as { isTTY?: boolean }).isTTY ? 'tty' : 'plain';
  throw new CliError(`--progress ${JSON.stringify(value)}: expected auto, plain or tty`, { code: 'D2P_USAGE' });
}
