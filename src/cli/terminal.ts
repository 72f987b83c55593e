// The caller's terminal joined to a container session (exec -it, run -it): raw mode,
// input, window size, and output copied back. Shared by exec and run, apart from both.
import { StringDecoder } from 'node:string_decoder';
import { Writable, type Readable } from 'node:stream';
import type { Writer } from './io';

/** What a terminal session reads and writes: process.stdin and process.stdout in the CLI. */
export interface TerminalStreams {
  input: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output: { isTTY?: boolean; columns?: number; rows?: number; on(event: 'resize', listener: () => void): unknown; removeListener(event: 'resize', listener: () => void): unknown };
}

export const processTerminal = (): TerminalStreams => ({ input: process.stdin, output: process.stdout });

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
