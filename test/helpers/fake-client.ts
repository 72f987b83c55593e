// An in-memory API for unit tests of controllers: the ResourceClient contract
// (src/client/types.ts) with the store semantics of src/store/types.ts, kept small and
// honest — a store-wide resourceVersion counter, generation bumped only by spec changes,
// 409 on stale resourceVersion, finalizers and deletionTimestamp, owner garbage collection,
// list-then-watch with replay from a resourceVersion and 410 Gone once history is compacted.
// Test hooks make the failure modes reachable: injected errors, lost watch events, ended
// and expired watches.
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { applyPatch as applyJsonPatch, type Operation } from 'fast-json-patch';
import { ApiError, alreadyExists, conflict, notFound } from '../../src/api/errors';
import {
  API_VERSION,
  DEFAULT_NAMESPACE,
  kindInfo,
  objectKey,
  type ApiObject,
  type ObjectList,
  type WatchEvent,
} from '../../src/api/meta';
import type { ClientWatchOptions, DeleteOptions, PatchType, ResourceClient, WriteOptions } from '../../src/client/types';
import type { ListOptions } from '../../src/store/types';

export type Verb = 'list' | 'get' | 'create' | 'update' | 'updateStatus' | 'patch' | 'delete' | 'watch' | 'apply';

interface HistoryEntry {
  resourceVersion: number;
  kind: string;
  event: WatchEvent;
}

interface InjectedFailure {
  kind: string;
  verb: Verb;
  error: Error;
  remaining: number;
}

export class FakeApi {
  private rv = 0;
  private readonly objects = new Map<string, Map<string, ApiObject>>();
  private readonly history: HistoryEntry[] = [];
  private compactedThrough = 0;
  private readonly watchers = new Set<FakeWatch>();
  private readonly failures: InjectedFailure[] = [];
  private readonly clients = new Map<string, ResourceClient>();
  private suppressWatchEvents = false;
  readonly calls: Array<{ kind: string; verb: Verb; key?: string }> = [];

  /**
   * @param opts.releasedFinalizers finalizers whose controller is not part of the test: they
   *   are let go as soon as their object is deleted, as that controller would once done.
   */
  constructor(private readonly opts: { releasedFinalizers?: string[] } = {}) {}

  get resourceVersion(): string {
    return String(this.rv);
  }

  for(kind: string): ResourceClient {
    kindInfo(kind); // unknown kinds are an error, as the API server's 404
    let client = this.clients.get(kind);
    if (!client) {
      client = this.makeClient(kind);
      this.clients.set(kind, client);
    }
    return client;
  }

  /** The stored object, bypassing the API (no call recorded); undefined if absent. */
  peek(kind: string, namespace: string, name: string): ApiObject | undefined {
    const obj = this.bucket(kind).get(`${namespace}/${name}`);
    return obj && structuredClone(obj);
  }

  all(kind: string): ApiObject[] {
    return [...this.bucket(kind).values()].map((o) => structuredClone(o));
  }

  callCount(kind: string, verb: Verb): number {
    return this.calls.filter((c) => c.kind === kind && c.verb === verb).length;
  }

  /** The next `times` calls of `verb` on `kind` reject with `error`. */
  failNext(kind: string, verb: Verb, error: Error, times = 1): void {
    this.failures.push({ kind, verb, error, remaining: times });
  }

  /** Writes made inside `fn` are stored and kept in history, but open watches never see them (lost events). */
  async withoutWatchEvents<T>(fn: () => Promise<T>): Promise<T> {
    this.suppressWatchEvents = true;
    try {
      return await fn();
    } finally {
      this.suppressWatchEvents = false;
    }
  }

  /** Ends open watches (of `kind`, or all), as a server closing its streams does. */
  endWatches(kind?: string): void {
    for (const w of [...this.watchers]) if (!kind || w.kind === kind) w.stop();
  }

  /** Compacts history and sends open watches an ERROR 410 Gone, as etcd compaction does. */
  expireWatches(kind?: string): void {
    this.compactedThrough = this.rv;
    this.history.length = 0;
    for (const w of [...this.watchers]) {
      if (kind && w.kind !== kind) continue;
      w.push({ type: 'ERROR', object: goneStatus() });
      w.stop();
    }
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  private bucket(kind: string): Map<string, ApiObject> {
    let b = this.objects.get(kind);
    if (!b) {
      b = new Map();
      this.objects.set(kind, b);
    }
    return b;
  }

  private async enter(kind: string, verb: Verb, key?: string, opts?: WriteOptions): Promise<void> {
    this.calls.push({ kind, verb, key });
    // Said, not faked: no controller needs a dry run, and a silent real write would lie.
    if (opts?.dryRun) throw new ApiError('BadRequest', `fake API: dryRun is not supported (${verb} ${kind})`);
    // Yield like a real round trip, so callers cannot depend on synchronous completion.
    await Promise.resolve();
    const i = this.failures.findIndex((f) => f.kind === kind && f.verb === verb);
    if (i < 0) return;
    const failure = this.failures[i];
    if (--failure.remaining <= 0) this.failures.splice(i, 1);
    throw failure.error;
  }

  private record(kind: string, type: WatchEvent['type'], obj: ApiObject): void {
    const event: WatchEvent = { type, object: structuredClone(obj) };
    this.history.push({ resourceVersion: this.rv, kind, event });
    if (this.suppressWatchEvents) return;
    for (const w of this.watchers) if (w.kind === kind && w.matches(obj)) w.push(structuredClone(event));
  }

  private existing(kind: string, namespace: string | undefined, name: string): ApiObject {
    const obj = this.bucket(kind).get(`${namespace ?? DEFAULT_NAMESPACE}/${name}`);
    if (!obj) throw notFound(kind, namespace ?? DEFAULT_NAMESPACE, name);
    return obj;
  }

  private checkPrecondition(kind: string, stored: ApiObject, incoming: ApiObject): void {
    const want = incoming.metadata.resourceVersion;
    if (want !== undefined && want !== stored.metadata.resourceVersion) {
      throw conflict(kind, stored.metadata.namespace, stored.metadata.name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
  }

  private checkDeletePreconditions(kind: string, stored: ApiObject, opts: DeleteOptions | undefined): void {
    const { uid, resourceVersion, namespace, name } = stored.metadata;
    if (opts?.preconditionUid !== undefined && opts.preconditionUid !== uid) {
      throw conflict(kind, namespace, name, `precondition failed: uid in precondition: ${opts.preconditionUid}, uid in object meta: ${uid}`);
    }
    if (opts?.preconditionResourceVersion !== undefined && opts.preconditionResourceVersion !== resourceVersion) {
      throw conflict(kind, namespace, name, `precondition failed: resourceVersion in precondition: ${opts.preconditionResourceVersion}, resourceVersion in object meta: ${resourceVersion}`);
    }
  }

  private store(kind: string, obj: ApiObject, type: 'ADDED' | 'MODIFIED'): ApiObject {
    obj.metadata.resourceVersion = String(++this.rv);
    this.bucket(kind).set(objectKey(obj), obj);
    this.record(kind, type, obj);
    return structuredClone(obj);
  }

  private remove(kind: string, obj: ApiObject, propagation: 'Background' | 'Orphan' = 'Background'): ApiObject {
    this.bucket(kind).delete(objectKey(obj));
    obj.metadata.resourceVersion = String(++this.rv);
    this.record(kind, 'DELETED', obj);
    if (propagation === 'Background') this.collectDependents(obj);
    return structuredClone(obj);
  }

  // Garbage collection of dependents whose ownerReferences name the removed owner's uid.
  private collectDependents(owner: ApiObject): void {
    for (const [kind, bucket] of this.objects) {
      for (const dependent of [...bucket.values()]) {
        if (!dependent.metadata.ownerReferences?.some((r) => r.uid === owner.metadata.uid)) continue;
        this.deleteObject(kind, dependent, 'Background');
      }
    }
  }

  private deleteObject(kind: string, obj: ApiObject, propagation?: 'Background' | 'Orphan'): ApiObject {
    const released = this.opts.releasedFinalizers ?? [];
    if (obj.metadata.finalizers?.some((f) => released.includes(f))) obj.metadata.finalizers = obj.metadata.finalizers.filter((f) => !released.includes(f));
    if ((obj.metadata.finalizers ?? []).length === 0) return this.remove(kind, obj, propagation);
    if (obj.metadata.deletionTimestamp) return structuredClone(obj);
    obj.metadata.deletionTimestamp = new Date().toISOString();
    return this.store(kind, obj, 'MODIFIED');
  }

  private doCreate(kind: string, input: ApiObject): ApiObject {
    const info = kindInfo(kind);
    if (!input.metadata?.name) throw new ApiError('Invalid', `${kind}: metadata.name is required`);
    const obj = structuredClone(input);
    obj.apiVersion ??= API_VERSION;
    obj.kind = kind;
    obj.metadata.namespace ??= DEFAULT_NAMESPACE;
    const key = objectKey(obj);
    if (this.bucket(kind).has(key)) throw alreadyExists(kind, obj.metadata.namespace, obj.metadata.name);
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = new Date().toISOString();
    delete obj.metadata.deletionTimestamp;
    if (info.hasStatus) {
      obj.metadata.generation = 1;
      delete obj.status; // status is written only through the /status subresource
    }
    return this.store(kind, obj, 'ADDED');
  }

  private doUpdate(kind: string, input: ApiObject): ApiObject {
    const stored = this.existing(kind, input.metadata.namespace, input.metadata.name);
    this.checkPrecondition(kind, stored, input);
    const info = kindInfo(kind);
    const next = structuredClone(input);
    next.kind = kind;
    next.metadata = {
      ...next.metadata,
      namespace: stored.metadata.namespace,
      uid: stored.metadata.uid,
      creationTimestamp: stored.metadata.creationTimestamp,
      generation: stored.metadata.generation,
      deletionTimestamp: stored.metadata.deletionTimestamp,
      resourceVersion: stored.metadata.resourceVersion,
    };
    if (!next.metadata.deletionTimestamp) delete next.metadata.deletionTimestamp;
    if (info.hasStatus) {
      if (stored.status === undefined) delete next.status;
      else next.status = structuredClone(stored.status);
      if (!isDeepStrictEqual(next.spec, stored.spec)) next.metadata.generation = (stored.metadata.generation ?? 0) + 1;
    }
    if (isDeepStrictEqual(next, stored)) return structuredClone(stored); // a no-op write is not a change
    if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) return this.remove(kind, next);
    return this.store(kind, next, 'MODIFIED');
  }

  private doUpdateStatus(kind: string, input: ApiObject): ApiObject {
    const stored = this.existing(kind, input.metadata.namespace, input.metadata.name);
    this.checkPrecondition(kind, stored, input);
    const next = structuredClone(stored);
    if (input.status === undefined) delete next.status;
    else next.status = structuredClone(input.status);
    if (isDeepStrictEqual(next, stored)) return structuredClone(stored);
    return this.store(kind, next, 'MODIFIED');
  }

  private doList(kind: string, opts: ListOptions = {}): ObjectList {
    const filter = new ObjectFilter(kind, opts);
    const items = [...this.bucket(kind).values()]
      .filter((o) => filter.matches(o))
      .sort((a, b) => objectKey(a).localeCompare(objectKey(b)))
      .map((o) => structuredClone(o));
    return { apiVersion: API_VERSION, kind: `${kind}List`, metadata: { resourceVersion: this.resourceVersion }, items };
  }

  private doWatch(kind: string, opts: ClientWatchOptions = {}): FakeWatch {
    const watch = new FakeWatch(kind, new ObjectFilter(kind, opts), (w) => this.watchers.delete(w));
    const from = opts.resourceVersion;
    if (from === undefined || from === '0') {
      for (const item of this.doList(kind, opts).items) watch.push({ type: 'ADDED', object: item });
    } else if (Number(from) < this.compactedThrough) {
      watch.push({ type: 'ERROR', object: goneStatus() });
      watch.stop();
      return watch;
    } else {
      for (const h of this.history) {
        if (h.kind === kind && h.resourceVersion > Number(from) && watch.matches(h.event.object)) watch.push(structuredClone(h.event));
      }
    }
    this.watchers.add(watch);
    if (opts.timeoutSeconds !== undefined) {
      const timer = setTimeout(() => watch.stop(), opts.timeoutSeconds * 1000);
      timer.unref();
      watch.onEnd(() => clearTimeout(timer));
    }
    return watch;
  }

  private makeClient(kind: string): ResourceClient {
    const api = this;
    const keyOf = (ns: string | undefined, name: string) => `${ns ?? DEFAULT_NAMESPACE}/${name}`;
    return {
      kind,
      async list(opts) {
        await api.enter(kind, 'list');
        return api.doList(kind, opts);
      },
      async get(ns, name) {
        await api.enter(kind, 'get', keyOf(ns, name));
        return structuredClone(api.existing(kind, ns, name));
      },
      async create(obj, opts) {
        await api.enter(kind, 'create', objectKey(obj), opts);
        return api.doCreate(kind, obj);
      },
      async update(obj, opts) {
        await api.enter(kind, 'update', objectKey(obj), opts);
        return api.doUpdate(kind, obj);
      },
      async updateStatus(obj, opts) {
        await api.enter(kind, 'updateStatus', objectKey(obj), opts);
        return api.doUpdateStatus(kind, obj);
      },
      async patch(ns, name, type: PatchType, body, opts) {
        await api.enter(kind, 'patch', keyOf(ns, name), opts);
        const stored = structuredClone(api.existing(kind, ns, name));
        const patched = applyPatch(stored, type, body);
        patched.metadata.resourceVersion ??= stored.metadata.resourceVersion;
        return opts?.subresource === 'status' ? api.doUpdateStatus(kind, patched) : api.doUpdate(kind, patched);
      },
      async delete(ns, name, opts) {
        await api.enter(kind, 'delete', keyOf(ns, name), opts);
        const stored = api.existing(kind, ns, name);
        api.checkDeletePreconditions(kind, stored, opts);
        return api.deleteObject(kind, stored, opts?.propagationPolicy);
      },
      async apply(obj, opts) {
        await api.enter(kind, 'apply', objectKey(obj), opts);
        const stored = api.bucket(kind).get(objectKey({ metadata: { ...obj.metadata } }));
        if (!stored) return { object: api.doCreate(kind, obj), action: 'created' as const };
        const next: ApiObject = {
          ...structuredClone(stored),
          spec: structuredClone(obj.spec),
          metadata: { ...structuredClone(stored.metadata), labels: obj.metadata.labels, annotations: obj.metadata.annotations },
        };
        if (isDeepStrictEqual(next, stored)) return { object: structuredClone(stored), action: 'unchanged' as const };
        return { object: api.doUpdate(kind, next), action: 'configured' as const };
      },
      watch(opts) {
        api.calls.push({ kind, verb: 'watch' });
        const i = api.failures.findIndex((f) => f.kind === kind && f.verb === 'watch');
        if (i >= 0) {
          const failure = api.failures[i];
          if (--failure.remaining <= 0) api.failures.splice(i, 1);
          return new FailedWatch(failure.error);
        }
        return api.doWatch(kind, opts);
      },
    } satisfies ResourceClient;
  }
}

export function createFakeApi(): FakeApi {
  return new FakeApi();
}

function goneStatus(): ApiObject {
  const status = new ApiError('Gone', 'too old resource version').toStatus();
  return status as unknown as ApiObject;
}

function applyPatch(doc: ApiObject, type: PatchType, body: unknown): ApiObject {
  if (type === 'json') {
    return applyJsonPatch(doc, body as Operation[], true, false).newDocument;
  }
  return mergePatch(doc, body) as ApiObject;
}

// RFC 7386: objects merge recursively, null deletes, anything else replaces.
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Namespace, label selector (=, ==, !=, in, notin, exists, !exists) and metadata/involvedObject field selectors. */
class ObjectFilter {
  private readonly labelTests: Array<(labels: Record<string, string>) => boolean>;
  private readonly fieldTests: Array<(obj: ApiObject) => boolean>;

  constructor(
    kind: string,
    private readonly opts: ListOptions,
  ) {
    this.labelTests = splitSelector(opts.labelSelector).map(parseLabelRequirement);
    this.fieldTests = splitSelector(opts.fieldSelector).map((req) => parseFieldRequirement(kind, req));
  }

  matches(obj: ApiObject): boolean {
    if (this.opts.namespace && (obj.metadata.namespace ?? DEFAULT_NAMESPACE) !== this.opts.namespace) return false;
    const labels = obj.metadata.labels ?? {};
    return this.labelTests.every((t) => t(labels)) && this.fieldTests.every((t) => t(obj));
  }
}

function splitSelector(selector: string | undefined): string[] {
  if (!selector) return [];
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(current.trim());
      current = '';
    } else current += ch;
  }
  parts.push(current.trim());
  return parts.filter((p) => p !== '');
}

function parseLabelRequirement(req: string): (labels: Record<string, string>) => boolean {
  const set = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(req);
  if (set) {
    const [, key, op, values] = set;
    const allowed = values.split(',').map((v) => v.trim());
    return op === 'in' ? (l) => key in l && allowed.includes(l[key]) : (l) => !(key in l) || !allowed.includes(l[key]);
  }
  const cmp = /^([^\s!=]+)\s*(==|=|!=)\s*(\S*)$/.exec(req);
  if (cmp) {
    const [, key, op, value] = cmp;
    return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  if (req.startsWith('!')) return (l) => !(req.slice(1) in l);
  if (/^[^\s!=()]+$/.test(req)) return (l) => req in l;
  throw new ApiError('BadRequest', `unable to parse label selector requirement ${JSON.stringify(req)}`);
}

function parseFieldRequirement(kind: string, req: string): (obj: ApiObject) => boolean {
  const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(req);
  if (!m) throw new ApiError('BadRequest', `unable to parse field selector ${JSON.stringify(req)}`);
  const [, field, op, value] = m;
  const supported = ['metadata.name', 'metadata.namespace'].concat(kind === 'Event' ? ['involvedObject.name', 'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.uid'] : []);
  if (!supported.includes(field)) throw new ApiError('BadRequest', `field label not supported: ${field}`);
  const read = (obj: ApiObject) => field.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
  return op === '!=' ? (obj) => read(obj) !== value : (obj) => read(obj) === value;
}

/** One watch stream: events pushed by the store, pulled by `for await`. */
export class FakeWatch implements AsyncIterable<WatchEvent> {
  private readonly buffered: WatchEvent[] = [];
  private waiting: ((r: IteratorResult<WatchEvent>) => void) | undefined;
  private ended = false;
  private readonly endListeners: Array<() => void> = [];

  constructor(
    readonly kind: string,
    private readonly filter: ObjectFilter,
    private readonly onStop: (w: FakeWatch) => void,
  ) {}

  matches(obj: ApiObject): boolean {
    return this.filter.matches(obj);
  }

  onEnd(listener: () => void): void {
    this.endListeners.push(listener);
  }

  push(event: WatchEvent): void {
    if (this.ended) return;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      resolve({ value: event, done: false });
    } else this.buffered.push(event);
  }

  stop(): void {
    if (this.ended) return;
    this.ended = true;
    this.onStop(this);
    for (const listener of this.endListeners) listener();
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = undefined;
      // Buffered events were already handed out or are drained below before `done`.
      resolve({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return {
      next: () => {
        const event = this.buffered.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiting = resolve));
      },
      return: () => {
        this.stop();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** A watch whose stream fails at once, as a dropped connection does. */
class FailedWatch implements AsyncIterable<WatchEvent> {
  constructor(private readonly error: Error) {}
  stop(): void {
    // Nothing to release: this stream never opened.
  }
  [Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    return { next: () => Promise.reject(this.error) };
  }
}
