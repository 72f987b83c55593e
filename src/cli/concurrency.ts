// Requests over the daemon's socket are cheap but not free; one at a time, applying a
// 100-service app would spend most of its time waiting on round trips. A small pool keeps
// a few in flight while results stay in input order for printing.

export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

/** Runs `fn` over `items` with at most `limit` in flight; never rejects, results in input order. */
export async function settleAll<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<Settled<R>[]> {
  const results: Settled<R>[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await fn(items[i], i) };
      } catch (error) {
        results[i] = { ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** How many requests a command keeps in flight: enough to hide round trips, few enough not to queue behind fsyncs. */
export const REQUEST_CONCURRENCY = 16;
