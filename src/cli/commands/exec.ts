// d2p exec [-T] [-i] [-e K=V] [-u USER] [-w DIR] [--index N] SERVICE|CONTAINER CMD… —
// docker compose exec / docker exec: runs CMD in the container's namespaces and cgroup
// through the runtime (Runtime.exec, the shim's `exec`), and exits with CMD's exit code.
// Runtime.exec hands back the output once the process has ended, so there is no
// interactive terminal yet: -t is refused with that reason rather than faked.
import type { Container } from '../../api/types';
import type { CommandContext } from '../context';
import { CliError } from '../io';
import { containerId, isRunning, openRuntime, resolveOne } from './lifecycle';
import type { ProjectFlags } from './ps';

export interface ExecOptions extends ProjectFlags {
  target: string;
  command: string[];
  /** -t: refused, see the header. */
  tty?: boolean;
  /** -i: pass our stdin to CMD (read to its end first). */
  interactive?: boolean;
  env?: string[];
  user?: string;
  workdir?: string;
  /** --index: which replica of a service (from 1). */
  index?: string;
  cwd?: string;
  /** Tests give stdin directly; the CLI reads fd 0 with -i. */
  stdin?: Buffer;
}

export const TTY_UNSUPPORTED =
  'a terminal (-t/-it) is not supported yet: the runtime returns an exec\'s output only once it has ended, so there is no interactive session; run without -t (use -T with docker compose habits, -i to pass stdin)';

/** `-e K=V`, or `-e K` to take K from our environment (dropped when unset), as docker does. */
export function parseEnvFlags(flags: readonly string[], env: Record<string, string | undefined> = process.env): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const name = eq < 0 ? flag : flag.slice(0, eq);
    if (name === '' || /\s/.test(name)) throw new CliError(`-e ${JSON.stringify(flag)}: expected NAME=VALUE or NAME`, { code: 'D2P_USAGE' });
    if (eq >= 0) out.push({ name, value: flag.slice(eq + 1) });
    else if (env[name] !== undefined) out.push({ name, value: env[name]! });
  }
  return out;
}

function parseIndex(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(text)) throw new CliError(`--index ${JSON.stringify(text)}: expected a replica number from 1`, { code: 'D2P_USAGE' });
  return Number(text);
}

export async function execCommand(opts: ExecOptions, ctx: CommandContext): Promise<number> {
  if (opts.tty) throw new CliError(TTY_UNSUPPORTED, { code: 'D2P_TTY_UNSUPPORTED' });
  if (opts.command.length === 0) throw new CliError('exec needs a command to run: d2p exec SERVICE|CONTAINER CMD…', { code: 'D2P_USAGE' });
  const env = parseEnvFlags(opts.env ?? []);
  const index = parseIndex(opts.index);
  const client = await ctx.client();
  const container = await resolveOne(client, opts.target, { ...opts, index });
  checkRunning(container);
  const stdin = opts.stdin ?? (opts.interactive ? await readAll(process.stdin) : undefined);
  const result = await openRuntime(ctx.paths).exec(containerId(container), {
    args: opts.command,
    env,
    user: opts.user,
    workingDir: opts.workdir,
    stdin,
  });
  ctx.io.stdout.write(result.stdout.toString('utf8'));
  ctx.io.stderr.write(result.stderr.toString('utf8'));
  return result.exitCode;
}

function checkRunning(c: Container): void {
  if (isRunning(c)) return;
  const phase = c.status?.phase ?? 'Pending';
  throw new CliError(`container ${c.metadata.name} is not running (phase ${phase}${c.status?.message ? `: ${c.status.message}` : ''})`, {
    code: 'D2P_NOT_RUNNING',
  });
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}
