// What every command writes to, and how it fails. Commands are functions of (options, io)
// so tests capture their output instead of spawning a process (dist/ may be stale).

/** Anything with a write(string): process.stdout, a test's collector. */
export interface Writer {
  write(chunk: string): unknown;
}

export interface CliIO {
  stdout: Writer;
  stderr: Writer;
}

/** An expected failure: printed as `error: <message>` without a stack trace. */
export class CliError extends Error {
  readonly code: string;
  /** Process exit status; kubectl uses 1 for errors, `diff` uses >1 (1 means "differences"). */
  readonly exitCode: number;

  constructor(message: string, opts: { code?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CliError';
    this.code = opts.code ?? 'D2P_CLI_ERROR';
    this.exitCode = opts.exitCode ?? 1;
  }
}

/**
 * Thrown after the command already printed its own per-item errors (apply's list of
 * invalid objects, get's NotFound names): main prints the summary, if any, and sets the
 * exit status.
 */
export class ReportedError extends CliError {
  constructor(summary = '', exitCode = 1) {
    super(summary, { code: 'D2P_CLI_REPORTED', exitCode });
    this.name = 'ReportedError';
  }
}

/** Collects writes into a string; used by tests and by commands that render before printing. */
export class StringWriter implements Writer {
  private chunks: string[] = [];
  write(chunk: string): true {
    this.chunks.push(chunk);
    return true;
  }
  toString(): string {
    return this.chunks.join('');
  }
  clear(): void {
    this.chunks = [];
  }
}
