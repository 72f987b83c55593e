// Ordering of writes: per-object mutual exclusion, commits in resourceVersion order, and the
// persisted ceiling that keeps resourceVersion from ever going backwards.

/** Runs tasks one at a time per key; different keys run concurrently. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    // `previous` is always a chain of `done` promises, which never reject.
    const tail = previous.then(() => done);
    this.tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/**
 * Runs `task` holding the locks of every key. Keys are taken one at a time in sorted
 * order, so two callers wanting overlapping sets can never each hold what the other waits
 * for (the classic lock-ordering rule against deadlock); run() holds a single key, which
 * cannot close a cycle either.
 */
export function runWithAll<T>(mutex: KeyedMutex, keys: readonly string[], task: () => Promise<T>): Promise<T> {
  const sorted = [...new Set(keys)].sort();
  const acquire = (i: number): Promise<T> => (i === sorted.length ? task() : mutex.run(sorted[i], () => acquire(i + 1)));
  return acquire(0);
}

interface PendingCommit {
  apply?: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Hands out resourceVersions and makes their effects visible strictly in order: a write
 * whose file reached the disk first still waits for every lower version to be committed
 * (or abandoned after a failure). Watchers therefore see one totally ordered stream, and a
 * client resuming "after N" can never miss a change below a version it has already seen —
 * the guarantee etcd's revisions give the Kubernetes watch cache.
 */
export class CommitSequencer {
  private allocated: number;
  private committed: number;
  private readonly settled = new Map<number, PendingCommit>();

  constructor(start: number) {
    this.allocated = start;
    this.committed = start;
  }

  /** Every version up to this one is committed or abandoned. */
  get committedVersion(): number {
    return this.committed;
  }

  allocate(): number {
    return ++this.allocated;
  }

  /** Runs `apply` once all lower versions are settled; resolves when it has run. */
  commit(version: number, apply: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.settled.set(version, { apply, resolve, reject });
      this.drain();
    });
  }

  /** Gives up a version whose write failed; later versions stop waiting for it. */
  abandon(version: number): void {
    this.settled.set(version, { resolve: () => undefined, reject: () => undefined });
    this.drain();
  }

  private drain(): void {
    for (;;) {
      const entry = this.settled.get(this.committed + 1);
      if (!entry) return;
      this.settled.delete(this.committed + 1);
      this.committed++;
      try {
        entry.apply?.();
        entry.resolve();
      } catch (err) {
        entry.reject(err);
      }
    }
  }
}

/**
 * The persisted upper bound of handed-out resourceVersions. Deletes leave no object
 * behind to remember their version, so after a restart the counter resumes from this
 * ceiling instead; raising it in blocks costs one extra atomic write per block of writes
 * (the same trick as a database sequence cache). Versions are opaque to clients, as
 * Kubernetes documents, so the jump after a restart is harmless.
 */
export class ResourceVersionCeiling {
  private durable: number;
  private pending?: { target: number; promise: Promise<void> };

  constructor(
    durable: number,
    private readonly persist: (ceiling: number) => Promise<void>,
    private readonly blockSize = 1000,
  ) {
    this.durable = durable;
  }

  get value(): number {
    return this.durable;
  }

  /** Resolves once a ceiling at or above `version` is durable. */
  cover(version: number): Promise<void> {
    if (version <= this.durable) return Promise.resolve();
    if (this.pending && version <= this.pending.target) return this.pending.promise;
    const target = version + this.blockSize;
    const previous = this.pending?.promise;
    const promise = this.raise(target, previous);
    this.pending = { target, promise };
    return promise;
  }

  private async raise(target: number, previous: Promise<void> | undefined): Promise<void> {
    // Ceilings are written one after the other, so a lower one can never land last.
    await Promise.allSettled([previous]);
    try {
      if (target > this.durable) await this.persist(target);
      this.durable = Math.max(this.durable, target);
    } finally {
      if (this.pending?.target === target) this.pending = undefined;
    }
  }
}
