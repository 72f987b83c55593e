// d2p exec [-t|-T] [-i] [-e K=V] [-u USER] [-w DIR] [--index N] SERVICE|CONTAINER CMD… —
// docker compose exec / docker exec: runs CMD in the container's namespaces and cgroup
// through the runtime (Runtime.execStream, the shim's `exec`), streaming its output as it
// comes, and exits with CMD's exit code. -t gives CMD a pseudo-terminal opened inside the
// container; our terminal is put in raw mode so keys (Ctrl-C included) reach CMD, and
// window size changes follow. -i streams our stdin to CMD.
import { StringDecoder } from 'node:string_decoder';
import { Writable, type Readable } from 'node:stream';

import type { Container } from '../../api/types';
import type { CommandContext } from '../context';
import { CliError, type Writer } from '../io';
import { containerId, isRunning, openRuntime, resolveOne } from './lifecycle';
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

/** What a terminal session reads and writes: process.stdin and process.stdout in the CLI. */
export interface TerminalStreams {
  input: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output: { isTTY?: boolean; columns?: number; rows?: number; on(event: 'resize', listener: () => void): unknown; removeListener(event: 'resize', listener: () => void): unknown };
}

const processTerminal = (): TerminalStreams => ({ input: process.stdin, output: process.stdout });

/** docker's words when -it meets a stdin that is not a terminal (e.g. a pipe). */
export const NOT_A_TTY = 'the input device is not a TTY; drop -t, or run from a terminal';

export interface TerminalBridge {
  /** The caller's terminal size, when it is one. */
  size?: { cols: number; rows: number };
  dispose(): void;
}

/**
 * Connects the caller's terminal to a session: raw mode when the input is a TTY (so
 * Ctrl-C, Ctrl-D and every key go to the container, as docker does with -t), input
 * bytes to onInput, end of input to onEnd, and window size changes (SIGWINCH, which Node
 * reports as 'resize' on a TTY stdout) to onResize. dispose() undoes all of it, so the
 * process can exit and the shell gets its terminal back in cooked mode.
 */
export function bridgeTerminal(
  term: TerminalStreams,
  opts: { raw: boolean; input: boolean; onInput(data: Buffer): void; onEnd(): void; onResize(cols: number, rows: number): void },
): TerminalBridge {
  const raw = opts.raw && term.input.isTTY === true && typeof term.input.setRawMode === 'function';
  if (raw) term.input.setRawMode!(true);
  const onData = (chunk: Buffer | string): void => opts.onInput(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  const onEnd = (): void => opts.onEnd();
  if (opts.input) {
    term.input.on('data', onData);
    term.input.once('end', onEnd);
    term.input.resume();
  }
  const sizeOf = (): { cols: number; rows: number } | undefined =>
    term.output.isTTY && term.output.columns && term.output.rows ? { cols: term.output.columns, rows: term.output.rows } : undefined;
  const onResize = (): void => {
    const size = sizeOf();
    if (size) opts.onResize(size.cols, size.rows);
  };
  term.output.on('resize', onResize);
  return {
    size: sizeOf(),
    dispose() {
      term.output.removeListener('resize', onResize);
      if (opts.input) {
        term.input.removeListener('data', onData);
        term.input.removeListener('end', onEnd);
        // A paused stdin no longer holds the event loop open.
        term.input.pause();
      }
      if (raw) term.input.setRawMode!(false);
    },
  };
}

/**
 * Copies a stream to a Writer: as bytes when the writer is a real stream (process.stdout,
 * so binary output and terminal escapes pass untouched), decoded as UTF-8 otherwise.
 */
export function pipeToWriter(from: Readable, to: Writer): Promise<void> {
  const decoder = new StringDecoder('utf8');
  const write = to instanceof Writable ? (b: Buffer) => to.write(b) : (b: Buffer) => to.write(decoder.write(b));
  from.on('data', write);
  return new Promise((resolve, reject) => {
    from.once('error', reject);
    from.once('close', () => {
      if (!(to instanceof Writable)) {
        const rest = decoder.end();
        if (rest) to.write(rest);
      }
      resolve();
    });
  });
}

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
