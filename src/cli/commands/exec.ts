// d2p exec [-t|-T] [-i] [-e K=V] [-u USER] [-w DIR] [--index N] SERVICE|CONTAINER CMD… —
// docker compose exec / docker exec: runs CMD in the container's namespaces and cgroup
// through the runtime (Runtime.execStream, the shim's `exec`), streaming its output as it
// comes, and exits with CMD's exit code. -t gives CMD a pseudo-terminal opened inside the
// container; our terminal is put in raw mode so keys (Ctrl-C included) reach CMD, and
// window size changes follow. -i streams our stdin to CMD.
import type { Container } from '../../api/types';
import type { CommandContext } from '../context';
import { parseEnvFlags } from '../env-flags';
import { CliError } from '../io';
import { bridgeTerminal, NOT_A_TTY, pipeToWriter, processTerminal, type TerminalStreams } from '../terminal';
import { openRuntime, resolveOne } from './lifecycle';
import { containerId, isRunning } from '../container-state';
import type { ProjectFlags } from './ps';

export interface ExecOptions extends ProjectFlags {
  target: string;
  command: string[];
  /** -t: a pseudo-terminal for CMD. */
  tty?: boolean;
  /** -i: stream our stdin to CMD. */
  interactive?: boolean;
  env?: string[];
  user?: string;
  workdir?: string;
  /** --index: which replica of a service (from 1). */
  index?: string;
  cwd?: string;
  /** Tests give stdin directly; the CLI reads fd 0 with -i. */
  stdin?: Buffer;
  /** The terminal side (process.stdin/stdout by default); tests give their own. */
  terminal?: TerminalStreams;
}

function parseIndex(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(text)) throw new CliError(`--index ${JSON.stringify(text)}: expected a replica number from 1`, { code: 'D2P_USAGE' });
  return Number(text);
}

export async function execCommand(opts: ExecOptions, ctx: CommandContext): Promise<number> {
  if (opts.command.length === 0) throw new CliError('exec needs a command to run: d2p exec SERVICE|CONTAINER CMD…', { code: 'D2P_USAGE' });
  const env = parseEnvFlags(opts.env ?? []);
  const index = parseIndex(opts.index);
  const term = opts.terminal ?? processTerminal();
  const readsInput = opts.stdin === undefined && opts.interactive === true;
  if (opts.tty && readsInput && term.input.isTTY !== true) throw new CliError(NOT_A_TTY, { code: 'D2P_NOT_A_TTY' });
  const client = await ctx.client();
  const container = await resolveOne(client, opts.target, { ...opts, index });
  checkRunning(container);
  const tty = opts.tty === true;
  const size = tty && term.output.isTTY && term.output.columns && term.output.rows ? { cols: term.output.columns, rows: term.output.rows } : undefined;
  const runtime = await openRuntime(ctx.paths);
  const session = await runtime.execStream(containerId(container), {
    args: opts.command,
    env,
    user: opts.user,
    workingDir: opts.workdir,
    tty,
    stdin: readsInput || opts.stdin !== undefined,
    ...size,
  });
  if (session.stdin) {
    // CMD may exit without reading all we send: its stdin closing is its choice.
    session.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  if (opts.stdin !== undefined) session.stdin!.end(opts.stdin);
  const raw = tty && readsInput && term.input.isTTY === true;
  const bridge = bridgeTerminal(term, {
    raw,
    input: readsInput,
    onInput: (data) => session.stdin!.write(data),
    onEnd: () => session.stdin!.end(),
    onResize: (cols, rows) => session.resize(cols, rows),
  });
  // Without a terminal Ctrl-C reaches us as SIGINT: pass it on, as docker's sig-proxy does.
  const onInterrupt = (): void => session.kill('SIGINT');
  if (!raw) process.on('SIGINT', onInterrupt);
  try {
    const copies = [pipeToWriter(session.stdout, ctx.io.stdout), ...(session.stderr ? [pipeToWriter(session.stderr, ctx.io.stderr)] : [])];
    const exitCode = await session.exitCode;
    await Promise.all(copies);
    return exitCode;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    bridge.dispose();
  }
}

function checkRunning(c: Container): void {
  if (isRunning(c)) return;
  const phase = c.status?.phase ?? 'Pending';
  throw new CliError(`container ${c.metadata.name} is not running (phase ${phase}${c.status?.message ? `: ${c.status.message}` : ''})`, {
    code: 'D2P_NOT_RUNNING',
  });
}
