// The one error of the Dockerfile library. Like BuildKit's parser errors it carries the
// file and the line of the instruction at fault ("Dockerfile:7: unknown instruction: RUNN"),
// so `d2p build` and a Build's condition point at the exact place to fix.

export class DockerfileError extends Error {
  readonly code = 'D2P_DOCKERFILE_INVALID';
  readonly file: string;
  /** 1-based line of the instruction (its first line when it spans several). */
  readonly line?: number;
  /** The problem without the "file:line: " prefix. */
  readonly detail: string;

  constructor(file: string, line: number | undefined, detail: string, options: { cause?: unknown } = {}) {
    super(`${line !== undefined ? `${file}:${line}` : file}: ${detail}`, options);
    this.name = 'DockerfileError';
    this.file = file;
    this.line = line;
    this.detail = detail;
  }
}

/**
 * An error of a helper that does not know where it is (word lexing, substitution, flag
 * parsing); the caller re-raises it as a DockerfileError with the file and line.
 */
export class LocalSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LocalSyntaxError';
  }
}

/** Runs `fn`, turning a LocalSyntaxError into a DockerfileError at file:line; other errors pass through. */
export function atLine<T>(file: string, line: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof LocalSyntaxError) throw new DockerfileError(file, line, err.message, { cause: err });
    throw err;
  }
}
