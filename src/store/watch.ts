// Watch streams and the event history they resume from, after the Kubernetes API server's
// watch cache (k8s.io/apiserver/pkg/storage/cacher): a bounded window of recent events,
// a "too old resource version" 410 Gone for anything before it, and per-watcher filtering
// that turns an object leaving a selector into DELETED and entering it into ADDED.
import type { ApiObject, WatchEvent } from '../api/meta';
import { ApiError } from '../api/errors';
import type { Watch } from './types';

/** One committed change, as the store records it. Objects are never mutated after commit. */
export interface ChangeEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  kind: string;
  namespace: string;
  resourceVersion: number;
  object: ApiObject;
  /** The stored object before the change (MODIFIED, DELETED). */
  previous?: ApiObject;
}

export type ObjectFilter = (obj: ApiObject) => boolean;

function withResourceVersion(obj: ApiObject, resourceVersion: number): ApiObject {
  const copy = structuredClone(obj);
  copy.metadata.resourceVersion = String(resourceVersion);
  return copy;
}

/**
 * What a watcher with this filter sees of a change (cache_watcher.go convertToWatchEvent):
 * entering the filter is ADDED, staying is MODIFIED, leaving is DELETED carrying the
 * previous content at the event's resourceVersion, and nothing when it never matched.
 */
export function viewThroughFilter(change: ChangeEvent, filter: ObjectFilter): WatchEvent | undefined {
  const currentPasses = change.type !== 'DELETED' && filter(change.object);
  const previousPasses = change.previous !== undefined && filter(change.previous);
  if (currentPasses && !previousPasses) return { type: 'ADDED', object: change.object };
  if (currentPasses && previousPasses) return { type: 'MODIFIED', object: change.object };
  if (previousPasses) {
    const object = change.type === 'DELETED' ? change.object : withResourceVersion(change.previous!, change.resourceVersion);
    return { type: 'DELETED', object };
  }
  return undefined;
}

/** A watch stream: an unbounded buffer (writers never wait for readers), freed by stop(). */
export class StoreWatch implements Watch {
  private buffer: WatchEvent[] = [];
  private waiting?: (result: IteratorResult<WatchEvent>) => void;
  private ended = false;

  constructor(
    readonly kind: string,
    private readonly namespace: string | undefined,
    private readonly filter: ObjectFilter,
    /** Changes at or below this resourceVersion were already covered (or not asked for). */
    private readonly afterVersion: number,
    private readonly onStop: (w: StoreWatch) => void,
  ) {}

  /** Offers a committed change; the watch keeps what its namespace and selectors let through. */
  offer(change: ChangeEvent): void {
    if (change.kind !== this.kind || change.resourceVersion <= this.afterVersion) return;
    if (this.namespace !== undefined && change.namespace !== this.namespace) return;
    const event = viewThroughFilter(change, this.filter);
    if (event) this.push(event);
  }

  /** The initial ADDED of a watch from "0": the object is as stored, untouched by any change. */
  offerInitial(obj: ApiObject): void {
    if (this.filter(obj)) this.push({ type: 'ADDED', object: obj });
  }

  push(event: WatchEvent): void {
    if (this.ended) return;
    if (this.waiting) {
      const deliver = this.waiting;
      this.waiting = undefined;
      deliver({ done: false, value: this.copyOf(event) });
      return;
    }
    this.buffer.push(event);
  }

  /** Ends the stream after the events already buffered (used after an ERROR event). */
  finish(): void {
    this.ended = true;
    if (this.waiting) {
      const deliver = this.waiting;
      this.waiting = undefined;
      deliver({ done: true, value: undefined });
    }
    this.onStop(this);
  }

  stop(): void {
    this.buffer = [];
    this.finish();
  }

  get stopped(): boolean {
    return this.ended;
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return {
      next: () => this.next(),
      return: async () => {
        this.stop();
        return { done: true, value: undefined };
      },
    };
  }

  private next(): Promise<IteratorResult<WatchEvent>> {
    const event = this.buffer.shift();
    if (event) return Promise.resolve({ done: false, value: this.copyOf(event) });
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    if (this.waiting) return Promise.reject(new Error(`watch of ${this.kind}: next() called again before the previous call resolved`));
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  // Stored objects are shared by every watcher and the store itself; each consumer gets its own copy.
  private copyOf(event: WatchEvent): WatchEvent {
    return { type: event.type, object: structuredClone(event.object) };
  }
}

/** A bounded window of the most recent changes; every change after `floor` is in it. */
export class EventHistory {
  private events: ChangeEvent[] = [];
  /** Index of the oldest kept change; the array is compacted once this passes the capacity. */
  private start = 0;
  private floorVersion: number;

  constructor(
    floor: number,
    private readonly capacity: number,
  ) {
    this.floorVersion = floor;
  }

  get floor(): number {
    return this.floorVersion;
  }

  append(change: ChangeEvent): void {
    this.events.push(change);
    if (this.events.length - this.start > this.capacity) {
      this.floorVersion = this.events[this.start].resourceVersion;
      this.start++;
      if (this.start >= this.capacity) {
        this.events = this.events.slice(this.start);
        this.start = 0;
      }
    }
  }

  /** Changes after `resourceVersion`, or undefined when some of them are no longer kept. */
  since(resourceVersion: number): ChangeEvent[] | undefined {
    if (resourceVersion < this.floorVersion) return undefined;
    let low = this.start;
    let high = this.events.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.events[mid].resourceVersion <= resourceVersion) low = mid + 1;
      else high = mid;
    }
    return this.events.slice(low);
  }
}

/** The single event a watch from a too-old resourceVersion gets before it ends, as Kubernetes sends. */
export function goneEvent(requested: number, oldest: number): WatchEvent {
  const status = new ApiError('Gone', `too old resource version: ${requested} (${oldest})`).toStatus();
  return { type: 'ERROR', object: status as unknown as ApiObject };
}
