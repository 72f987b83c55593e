// Cleanup in tests runs every step even when one fails (a failed container delete must not
// leave the cgroup parent or the daemon behind), and then reports all failures: the first
// as itself when it is the only one, otherwise together in an AggregateError.
export function throwCollected(context: string, errors: unknown[]): void {
  const [first, ...rest] = errors;
  if (errors.length > 0) throw combinedError(context, first, rest);
}

/** The one error to throw for `first` and the errors that came after it. */
export function combinedError(context: string, first: unknown, rest: unknown[]): unknown {
  if (rest.length === 0) return first;
  const errors = [first, ...rest];
  const messages = errors.map((e) => (e instanceof Error ? e.message : String(e)));
  return new AggregateError(errors, `${context}: ${errors.length} steps failed: ${messages.join('; ')}`);
}

/** Runs every step in order, whatever the earlier ones did; returns the errors they threw. */
export async function runAllSteps(steps: Array<() => unknown>): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      errors.push(e);
    }
  }
  return errors;
}
