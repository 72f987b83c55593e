// Errors a reconciler throws to tell the manager how to treat a failure.
// controller-runtime's contract (pkg/reconcile): an ordinary error is retried with
// exponential back-off; reconcile.TerminalError marks a problem retrying cannot fix (a
// spec problem), so it is recorded and left alone until the object changes.

export class TerminalError extends Error {
  /** Stable machine-readable code, in the style of ApiError's. */
  readonly code = 'D2P_TERMINAL';
  /** CamelCase reason, used for the Ready condition and the Warning event (e.g. "InvalidSpec"). */
  readonly reason: string;

  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
    this.reason = reason;
  }
}

export function isTerminalError(e: unknown): e is TerminalError {
  return e instanceof TerminalError;
}

/** The message of anything thrown, with its cause chain, for conditions, events and logs. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // Add an errno name (EBUSY…) the message lacks; stable D2P_* codes say nothing new to a reader.
  const code = (e as NodeJS.ErrnoException).code;
  const errno = typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
  const own = errno && !e.message.includes(errno) ? `${e.message} (${errno})` : e.message;
  if (e.cause === undefined) return own;
  // A wrapper that repeats its cause's message (a TerminalError made from a NetworkError)
  // would print it twice: the cause says only what it adds.
  const cause = describeError(e.cause);
  return own.endsWith(cause) ? own : `${own}: ${cause}`;
}
