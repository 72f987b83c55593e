// List-then-watch for one kind, with a cache of the last state seen: client-go's
// Reflector + Informer in miniature (k8s.io/client-go/tools/cache).
// The loop never trusts a watch to be complete: whenever a watch ends, fails, or the server
// answers 410 Gone (the resourceVersion was compacted away), it lists again and diffs the
// list against the cache, so a change that happened while nobody was watching still
// reaches the handlers — including deletions, which appear as objects missing from the list.
import { isApiError } from '../src/api/errors';
import { objectKey, type ApiObject, type WatchEvent } from '../src/api/meta';
import type { ResourceClient } from '../src/client/types';
import { describeError } from './errors';
import type { Logger } from './logger';

export interface InformerEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: ApiObject;
  /** The cached state before this change (MODIFIED and DELETED). */
  previous?: ApiObject;
}

export type InformerHandler = (event: InformerEvent) => void;

export interface InformerOptions {
  logger: Logger;
  /** First delay after a failed list or watch; doubles per consecutive failure. Default 100 ms. */
  retryBaseDelayMs?: number;
  /** Ceiling of that delay. Default 30 s. */
  retryMaxDelayMs?: number;
  /** A watch that ends sooner than this without delivering anything counts as a failure. Default 1 s. */
  minHealthyWatchMs?: number;
}

type WatchOutcome = 'healthy' | 'gone' | 'failed';

export class Informer {
  private readonly cache = new Map<string, ApiObject>();
  private readonly handlers: InformerHandler[] = [];
  private currentWatch: { stop(): void } | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wakeSleep: (() => void) | undefined;
  private lists = 0;
  private readonly opts: Required<InformerOptions>;

  constructor(
    private readonly client: ResourceClient,
    opts: InformerOptions,
  ) {
    this.opts = {
      logger: opts.logger,
      retryBaseDelayMs: opts.retryBaseDelayMs ?? 100,
      retryMaxDelayMs: opts.retryMaxDelayMs ?? 30_000,
      minHealthyWatchMs: opts.minHealthyWatchMs ?? 1_000,
    };
  }

  get kind(): string {
    return this.client.kind;
  }

  /** How many times the kind was listed (the first sync plus every re-list). */
  get listCount(): number {
    return this.lists;
  }

  onEvent(handler: InformerHandler): void {
    this.handlers.push(handler);
  }

  /** The last state seen of the object with `key` ("namespace/name"). */
  get(key: string): ApiObject | undefined {
    return this.cache.get(key);
  }

  keys(): string[] {
    return [...this.cache.keys()];
  }

  /**
   * Starts the list/watch loop. Resolves after the first list attempt: on success every
   * object has been handed to the handlers as ADDED; on failure the loop keeps retrying.
   */
  start(): Promise<void> {
    if (this.loop) throw new Error(`informer for ${this.kind} already started`);
    return new Promise((firstAttemptDone) => {
      this.loop = this.run(firstAttemptDone);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.currentWatch?.stop();
    this.wakeSleep?.();
    await this.loop;
  }

  private async run(firstAttemptDone: () => void): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let resourceVersion: string;
      try {
        resourceVersion = await this.relist();
      } catch (error) {
        this.opts.logger.warn('list failed; retrying', { kind: this.kind, error: describeError(error) });
        firstAttemptDone();
        await this.sleep(this.retryDelay(failures++));
        continue;
      }
      firstAttemptDone();
      const outcome = await this.watchFrom(resourceVersion);
      if (outcome === 'failed') await this.sleep(this.retryDelay(failures++));
      else failures = 0;
    }
  }

  /** Lists the kind, hands every difference from the cache to the handlers, returns the list's resourceVersion. */
  private async relist(): Promise<string> {
    const list = await this.client.list();
    this.lists++;
    if (this.stopped) return list.metadata.resourceVersion;
    const seen = new Set<string>();
    for (const object of list.items) {
      const key = objectKey(object);
      seen.add(key);
      const previous = this.cache.get(key);
      if (previous && previous.metadata.resourceVersion === object.metadata.resourceVersion) continue;
      this.cache.set(key, object);
      this.emit({ type: previous ? 'MODIFIED' : 'ADDED', object, previous });
    }
    for (const [key, previous] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emit({ type: 'DELETED', object: previous, previous });
    }
    return list.metadata.resourceVersion;
  }

  private async watchFrom(resourceVersion: string): Promise<WatchOutcome> {
    const startedAt = Date.now();
    let delivered = 0;
    const watch = this.client.watch({ resourceVersion });
    this.currentWatch = watch;
    if (this.stopped) watch.stop();
    try {
      for await (const event of watch) {
        if (this.stopped) break;
        if (event.type === 'ERROR') return this.watchErrorOutcome(event);
        if (event.type === 'BOOKMARK') continue;
        delivered++;
        this.apply(event);
      }
    } catch (error) {
      if (isApiError(error, 'Gone')) return 'gone';
      // After stop() a failing stream is the expected end of it, not news.
      const level = this.stopped ? 'debug' : 'warn';
      this.opts.logger[level]('watch failed; re-listing', { kind: this.kind, error: describeError(error) });
      return 'failed';
    } finally {
      watch.stop();
      this.currentWatch = undefined;
    }
    const healthy = delivered > 0 || Date.now() - startedAt >= this.opts.minHealthyWatchMs;
    return healthy ? 'healthy' : 'failed';
  }

  // Kubernetes reports watch errors in-band: {type: ERROR, object: Status}; 410 means the
  // requested resourceVersion is too old and the client must list again.
  private watchErrorOutcome(event: WatchEvent): WatchOutcome {
    const status = event.object as unknown as { code?: number; reason?: string; message?: string };
    if (status.code === 410 || status.reason === 'Gone' || status.reason === 'Expired') return 'gone';
    this.opts.logger.warn('watch error; re-listing', { kind: this.kind, reason: status.reason, message: status.message });
    return 'failed';
  }

  private apply(event: WatchEvent): void {
    const key = objectKey(event.object);
    const previous = this.cache.get(key);
    if (event.type === 'DELETED') {
      this.cache.delete(key);
      this.emit({ type: 'DELETED', object: event.object, previous });
      return;
    }
    this.cache.set(key, event.object);
    this.emit({ type: previous ? 'MODIFIED' : 'ADDED', object: event.object, previous });
  }

  private emit(event: InformerEvent): void {
    for (const handler of this.handlers) handler(event);
  }

  private retryDelay(failures: number): number {
    return Math.min(this.opts.retryBaseDelayMs * 2 ** Math.min(failures, 30), this.opts.retryMaxDelayMs);
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleep = done;
    });
  }
}
