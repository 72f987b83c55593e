// Wakes the CLI's waiting loops as soon as the objects they wait on change. The loops
// stay level-triggered — each wake-up re-reads the object, and a timeout wakes them anyway
// — so a missed or ended watch only costs latency, never correctness.
import type { ApiObject, WatchEvent } from '../api/meta';
import type { Client } from '../client';

export class ObjectChanges {
  private readonly watch: AsyncIterable<WatchEvent> & { stop(): void };
  private waiters = new Set<() => void>();
  /** A change arrived while nobody was waiting: the next wait returns at once. */
  private pending = false;
  private failure: unknown;
  /** What the last DELETED event carried: the object as it was when it went. */
  private lastRemoved: ApiObject | undefined;
  /** What the last ADDED or MODIFIED event carried. */
  private lastSeen: ApiObject | undefined;

  /**
   * `resourceVersion`: deliver every change after it (the object as created, say), so a
   * deletion that comes before the watch is connected is still seen.
   */
  constructor(client: Client, kind: string, opts: { namespace?: string; name?: string; resourceVersion?: string }) {
    this.watch = client.for(kind).watch({
      namespace: opts.namespace,
      ...(opts.name ? { fieldSelector: `metadata.name=${opts.name}` } : {}),
      ...(opts.resourceVersion ? { resourceVersion: opts.resourceVersion } : {}),
    });
    void this.pump();
  }

  /**
   * The object with `uid` as the last event about it (not its deletion) carried, if one
   * came: with a watch from the object's own resourceVersion, its newest state, without a
   * read of our own.
   */
  latest(uid: string | undefined): ApiObject | undefined {
    return this.lastSeen !== undefined && this.lastSeen.metadata.uid === uid ? this.lastSeen : undefined;
  }

  /** The object with `uid` as its deletion left it, if that event came already. */
  removed(uid: string | undefined): ApiObject | undefined {
    return this.lastRemoved !== undefined && this.lastRemoved.metadata.uid === uid ? this.lastRemoved : undefined;
  }

  /**
   * The object with `uid` as its deletion left it (a DELETED event carries the last
   * version, as in Kubernetes), waiting up to `ms` for that event; undefined if none came.
   * Rejects, as next() does, once the watch has failed.
   */
  async removedObject(uid: string | undefined, ms: number): Promise<ApiObject | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const removed = this.removed(uid);
      if (removed !== undefined) return removed;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await this.next(left);
    }
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
      for await (const event of this.watch) {
        if (event.type === 'DELETED') this.lastRemoved = event.object;
        else if (event.type === 'ADDED' || event.type === 'MODIFIED') this.lastSeen = event.object;
        this.wakeAll();
      }
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
