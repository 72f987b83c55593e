// A rate-limited work queue with the semantics of client-go's workqueue
// (k8s.io/client-go/util/workqueue), which controller-runtime builds on:
//  - a key queued many times before a worker takes it is processed once (the "dirty" set);
//  - a key added while it is being processed is processed again afterwards, never by two
//    workers at the same time (the "processing" set);
//  - addAfter() delays an add; addRateLimited() delays it by a per-key exponential back-off
//    (ItemExponentialFailureRateLimiter) that forget() resets after a success.
// Unlike client-go the queue runs its own workers, so callers supply one async handler.

export interface WorkQueueOptions {
  /** Number of keys processed concurrently (distinct keys only). Default 1. */
  workers?: number;
  /** First back-off delay. Default 100 ms. */
  baseDelayMs?: number;
  /** Back-off ceiling. Default 5 min. */
  maxDelayMs?: number;
  /** Told about a handler that rejected; the key is then requeued with back-off. */
  onHandlerError?: (key: string, error: unknown) => void;
}

export type KeyHandler = (key: string) => Promise<void>;

export class WorkQueue {
  private readonly pending: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { readyAt: number; timer: NodeJS.Timeout }>();
  private readonly idleWorkers: Array<(key: string | undefined) => void> = [];
  private readonly workerLoops: Promise<void>[] = [];
  private shuttingDown = false;
  private readonly opts: Required<Omit<WorkQueueOptions, 'onHandlerError'>> & Pick<WorkQueueOptions, 'onHandlerError'>;

  constructor(
    private readonly handler: KeyHandler,
    opts: WorkQueueOptions = {},
  ) {
    this.opts = {
      workers: opts.workers ?? 1,
      baseDelayMs: opts.baseDelayMs ?? 100,
      maxDelayMs: opts.maxDelayMs ?? 5 * 60_000,
      onHandlerError: opts.onHandlerError,
    };
    if (!Number.isInteger(this.opts.workers) || this.opts.workers < 1) {
      throw new RangeError(`work queue: workers must be a positive integer, got ${this.opts.workers}`);
    }
  }

  /** Starts the workers. Keys added before start() wait for it. */
  start(): void {
    if (this.workerLoops.length > 0 || this.shuttingDown) return;
    for (let i = 0; i < this.opts.workers; i++) this.workerLoops.push(this.runWorker());
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    // A key being processed is re-queued by done(); queuing it now would let a second
    // worker pick it up concurrently.
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `delayMs`. If it is already waiting, the earlier of the two times wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const readyAt = Date.now() + delayMs;
    const waiting = this.delayed.get(key);
    if (waiting && waiting.readyAt <= readyAt) return;
    if (waiting) clearTimeout(waiting.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { readyAt, timer });
  }

  /** Adds `key` after its next back-off delay: base·2^failures, capped at maxDelayMs. */
  addRateLimited(key: string): void {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    this.addAfter(key, this.backoffDelay(failures));
  }

  /** Resets the back-off of `key` (call after it was processed successfully). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How many times `key` was rate-limited since the last forget(). */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Keys waiting for a worker (not counting delayed ones). */
  get length(): number {
    return this.pending.length;
  }

  /** True when nothing is queued, delayed or being processed. */
  get idle(): boolean {
    return this.pending.length === 0 && this.processing.size === 0 && this.delayed.size === 0;
  }

  /**
   * Stops accepting keys, drops queued and delayed ones, and resolves when the handlers
   * already running have finished.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.pending.length = 0;
    this.dirty.clear();
    for (const wake of this.idleWorkers.splice(0)) wake(undefined);
    await Promise.all(this.workerLoops);
  }

  private backoffDelay(failures: number): number {
    // Cap the exponent first: 2^failures overflows to Infinity after ~1000 failures.
    const exponent = Math.min(failures, 62);
    return Math.min(this.opts.baseDelayMs * 2 ** exponent, this.opts.maxDelayMs);
  }

  private push(key: string): void {
    const wake = this.idleWorkers.shift();
    if (wake) wake(key);
    else this.pending.push(key);
  }

  private next(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.pending.shift();
    if (key !== undefined) return Promise.resolve(key);
    return new Promise((resolve) => this.idleWorkers.push(resolve));
  }

  private async runWorker(): Promise<void> {
    for (let key = await this.next(); key !== undefined; key = await this.next()) {
      this.processing.add(key);
      this.dirty.delete(key);
      try {
        await this.handler(key);
      } catch (error) {
        // The handler is meant to settle its own errors; if one escapes, report it and
        // retry rather than lose the key.
        this.opts.onHandlerError?.(key, error);
        if (!this.opts.onHandlerError) process.emitWarning(`work queue handler failed for ${key}: ${String(error)}`);
        this.addRateLimited(key);
      } finally {
        this.done(key);
      }
    }
  }

  private done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
  }
}
