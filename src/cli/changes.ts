// Wakes the CLI's waiting loops as soon as the objects they wait on change. The loops
// stay level-triggered — each wake-up re-reads the object, and a timeout wakes them anyway
// — so a missed or ended watch only costs latency, never correctness.
import type { Client } from '../client';

export class ObjectChanges {
  private readonly watch: AsyncIterable<unknown> & { stop(): void };
  private waiters = new Set<() => void>();
  /** A change arrived while nobody was waiting: the next wait returns at once. */
  private pending = false;
  private failure: unknown;

  constructor(client: Client, kind: string, opts: { namespace?: string; name?: string }) {
    this.watch = client.for(kind).watch({
      namespace: opts.namespace,
      ...(opts.name ? { fieldSelector: `metadata.name=${opts.name}` } : {}),
    });
    void this.pump();
  }

  /** Resolves at the next change (or one already seen), after `ms`, or when `signal` aborts. */
  next(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.pending || signal?.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', wake);
        this.waiters.delete(wake);
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      signal?.addEventListener('abort', wake, { once: true });
      this.waiters.add(wake);
    });
  }

  stop(): void {
    this.watch.stop();
  }

  private async pump(): Promise<void> {
    try {
      for await (const _event of this.watch) this.wakeAll();
    } catch (err) {
      // The next wait reports it: the daemon went away, which the loop's own reads would
      // show a moment later anyway.
      this.failure = err;
      this.wakeAll();
    }
  }

  private wakeAll(): void {
    this.pending = true;
    for (const wake of [...this.waiters]) wake();
  }
}
