// The embedded store: every object in memory, every write durable on disk before it is
// acknowledged or seen, semantics of the Kubernetes API server over etcd (DESIGN.md §2).
//
// A write runs under its object's lock: decide from the committed state (preconditions,
// generation, finalizers), take the next resourceVersion, append it to the write-ahead log
// (wal.ts) and wait for that to be durable, then commit in resourceVersion order (memory,
// history, watchers, garbage collection). Reads and watches only ever see committed,
// durable state. Checkpoints write the log's newest content into the object files behind
// the callers, and remove the log segments they covered.
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { API_VERSION, type ApiObject, type KindInfo, type ObjectList, type OwnerReference } from '../api/meta';
import { ApiError, alreadyExists, conflict, invalid, notFound } from '../api/errors';
import type { BatchOutcome, BatchResult, BatchWrite, ListOptions, Store, Watch, WatchOptions, WriteOptions } from './types';
import { acquireStoreLock, DirectoryMaker, DirectorySyncer, readDirectory, removeTempFiles, writeFileAtomic } from './disk';
import { compileSelectors } from './labels';
import { journalPath, redo, replayJournals, type JournalEntry } from './journal';
import { encodeStoreMeta, loadObjects, META_FILE, OBJECTS_DIR, readStoreMeta } from './load';
import { CommitSequencer, KeyedMutex, ResourceVersionCeiling, runWithAll } from './ordering';
import { ObjectTable, refKey, type ObjectRef } from './table';
import {
  checkObject,
  jsonEqual,
  type ObjectIdentity,
  namespaceOrDefault,
  nowTimestamp,
  requireKind,
  requireParamName,
  RESOURCE_VERSION_PATTERN,
  sameObjectIgnoringVersion,
} from './validate';
import { EventHistory, goneEvent, StoreWatch, type ChangeEvent } from './watch';
import { readLog, WriteAheadLog, type SealedLog } from './wal';

export { parseLabelSelector, parseFieldSelector, compileSelectors } from './labels';
export type { BatchOutcome, BatchResult, BatchWrite, Store, Watch, WatchOptions, ListOptions, WriteOptions } from './types';

export interface StoreOptions {
  /** Directory of the store (normally Paths.store); created if missing. */
  dir: string;
  /** How many recent changes a watch can resume from (default 1,000). */
  historySize?: number;
  /** Receives failures of background garbage collection and checkpoints (default: process.emitWarning). */
  onBackgroundError?: (err: Error) => void;
}

/**
 * How long written objects wait in the write-ahead log before a checkpoint writes them out:
 * long enough that a container created and removed within it (`run --rm`) never touches
 * the objects folder, short enough that a restart replays little.
 */
const CHECKPOINT_DELAY_MS = 1_000;
/** A log segment this large is checkpointed at once. */
const CHECKPOINT_BYTES = 4 << 20;
/** Object files written at once by a checkpoint: enough to share directory fsyncs. */
const CHECKPOINT_CONCURRENCY = 32;

// Each change holds the object and its previous version: 10,000 of them were most of the
// daemon's memory with 1,000 objects. A watcher further behind gets 410 Gone and re-lists,
// as with Kubernetes' bounded watch cache, which our informers handle.
const DEFAULT_HISTORY_SIZE = 1_000;
/** Dependents collected at once: enough to share directory fsyncs, few enough to stay fair. */
const GC_BATCH = 32;

/** What a write decides from the committed state of its object. */
type Decision =
  | { type: 'unchanged'; object?: ApiObject }
  | { type: 'write'; event: 'ADDED' | 'MODIFIED'; object: ApiObject }
  | { type: 'remove'; object: ApiObject };

type Change = Exclude<Decision, { type: 'unchanged' }>;

/** A create or update checked for shape, waiting to decide under its object's lock. */
interface PreparedWrite {
  info: KindInfo;
  namespace: string;
  name: string;
  decide: (current: ApiObject | undefined) => Decision;
}

/** One change of a batch, decided, on its way to the disk. */
interface BatchChange {
  info: KindInfo;
  ref: ObjectRef;
  decision: Change;
  previous: ApiObject | undefined;
}

type Attempt<T> = { ok: true; value: T } | { ok: false; error: ApiError };

/** A refusal (ApiError) becomes a value so that a batch can report every one; anything else is a bug and propagates. */
function attempt<T>(f: () => T): Attempt<T> {
  try {
    return { ok: true, value: f() };
  } catch (err) {
    if (err instanceof ApiError) return { ok: false, error: err };
    throw err;
  }
}

function toJsonObject(input: unknown): Record<string, unknown> {
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(input));
  } catch (err) {
    throw new ApiError('BadRequest', `object is not JSON: ${(err as Error).message}`);
  }
  if (typeof copy !== 'object' || copy === null || Array.isArray(copy)) throw new ApiError('BadRequest', 'object must be a JSON object');
  return copy as Record<string, unknown>;
}

function dropUndefined<T extends object>(o: T): T {
  for (const key of Object.keys(o) as (keyof T)[]) if (o[key] === undefined) delete o[key];
  return o;
}

function checkPreconditions(current: ApiObject, sent: ApiObject['metadata'], info: KindInfo): void {
  const { namespace, name } = current.metadata;
  if (sent.uid !== undefined && sent.uid !== current.metadata.uid) {
    // Kubernetes treats a uid in the body as a precondition: a different one means another object.
    throw conflict(info.kind, namespace, name, `Precondition failed: UID in precondition: ${sent.uid}, UID in object meta: ${current.metadata.uid}`);
  }
  if (sent.resourceVersion !== undefined && sent.resourceVersion !== current.metadata.resourceVersion) {
    throw conflict(info.kind, namespace, name, 'the object has been modified; please apply your changes to the latest version and try again');
  }
}

/**
 * Deleting: with finalizers the object only gets deletionTimestamp (once) and waits for
 * them to be removed; without, it goes. Setting deletionTimestamp bumps generation, as
 * Kubernetes' markAsDeleting does, so controllers comparing observedGeneration notice.
 */
function deletionDecision(current: ApiObject): Decision {
  if ((current.metadata.finalizers ?? []).length === 0) return { type: 'remove', object: current };
  if (current.metadata.deletionTimestamp) return { type: 'unchanged', object: current };
  const marked = structuredClone(current);
  marked.metadata.deletionTimestamp = nowTimestamp();
  marked.metadata.generation = (marked.metadata.generation ?? 0) + 1;
  return { type: 'write', event: 'MODIFIED', object: marked };
}

function rejectNewFinalizersWhileDeleting(current: ApiObject, next: ApiObject, info: KindInfo): void {
  if (!current.metadata.deletionTimestamp) return;
  const before = new Set(current.metadata.finalizers ?? []);
  const added = (next.metadata.finalizers ?? []).filter((f) => !before.has(f));
  if (added.length > 0) {
    throw invalid(info.kind, current.metadata.name, [
      {
        field: 'metadata.finalizers',
        reason: 'FieldValueForbidden',
        message: `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`,
      },
    ]);
  }
}

function serializeObject(obj: ApiObject): string {
  return JSON.stringify(obj) + '\n';
}

/** A change as the journal records it: the file's whole new content, or null for its removal. */
function journalEntry(c: BatchChange): { path: string; content: string | null } {
  return {
    path: journalPath(c.info.plural, c.ref.namespace, c.ref.name),
    content: c.decision.type === 'remove' ? null : serializeObject(c.decision.object),
  };
}

function changeEvent(info: KindInfo, ref: ObjectRef, decision: Change, version: number, previous: ApiObject | undefined): ChangeEvent {
  return {
    type: decision.type === 'remove' ? 'DELETED' : decision.event,
    kind: info.kind,
    namespace: ref.namespace,
    resourceVersion: version,
    object: decision.object,
    previous,
  };
}

/** The object a rebase function makes of the stored one; it may not turn into another object. */
function rebased(rebase: NonNullable<BatchWrite['rebase']>, current: ApiObject, identity: ObjectIdentity): ApiObject | undefined {
  const out = rebase(structuredClone(current));
  if (out === undefined) return undefined;
  const obj = toJsonObject(out) as unknown as ApiObject;
  const { info, namespace, name } = checkObject(obj);
  if (info !== identity.info || namespace !== identity.namespace || name !== identity.name) {
    throw new ApiError('BadRequest', `an update of ${identity.info.kind} "${identity.namespace}/${identity.name}" cannot become ${info.kind} "${namespace}/${name}"`, {
      kind: identity.info.kind,
      name: identity.name,
    });
  }
  return obj;
}

/** The second and later writes of one object in a batch are refused: their order would be a guess. */
function refuseRepeatedObjects(prepared: Attempt<PreparedWrite>[]): void {
  const seen = new Set<string>();
  prepared.forEach((p, i) => {
    if (!p.ok) return;
    const { info, namespace, name } = p.value;
    const key = refKey({ kind: info.kind, namespace, name });
    if (!seen.has(key)) {
      seen.add(key);
      return;
    }
    prepared[i] = {
      ok: false,
      error: new ApiError('BadRequest', `${info.kind.toLowerCase()} "${namespace}/${name}" appears more than once in the batch`, { kind: info.kind, name }),
    };
  });
}

export class EmbeddedStore implements Store {
  private readonly table = new ObjectTable();
  private readonly locks = new KeyedMutex();
  private readonly sequencer: CommitSequencer;
  private readonly ceiling: ResourceVersionCeiling;
  private readonly history: EventHistory;
  private readonly watchers = new Map<string, Set<StoreWatch>>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly gcQueue = new Map<string, ObjectRef>();
  private gcRunner?: Promise<void>;
  private closed = false;
  private closing?: Promise<void>;
  private brokenBy?: Error;
  private checkpointTimer?: NodeJS.Timeout;
  private checkpointing?: Promise<void>;
  /** Sealed log segments a checkpoint has not written out yet (one failed: the next retries). */
  private sealed: SealedLog[] = [];

  constructor(
    private readonly dir: string,
    objects: ApiObject[],
    storedCeiling: number,
    private readonly syncer: DirectorySyncer,
    private readonly directories: DirectoryMaker,
    private readonly wal: WriteAheadLog,
    private readonly releaseLock: () => Promise<void>,
    private readonly opts: StoreOptions,
  ) {
    let newest = storedCeiling;
    for (const obj of objects) {
      this.table.put(obj);
      newest = Math.max(newest, Number(obj.metadata.resourceVersion));
    }
    this.sequencer = new CommitSequencer(newest);
    this.ceiling = new ResourceVersionCeiling(storedCeiling, (c) => writeFileAtomic(this.dir, META_FILE, encodeStoreMeta(c), this.syncer));
    // Nothing from before this open is in the history: older resume points get 410 Gone.
    this.history = new EventHistory(newest, opts.historySize ?? DEFAULT_HISTORY_SIZE);
  }

  get resourceVersion(): string {
    return String(this.sequencer.committedVersion);
  }

  // --- reads ------------------------------------------------------------------------------

  async get(kind: string, namespace: string | undefined, name: string): Promise<ApiObject> {
    this.assertOpen();
    const info = requireKind(kind);
    const ns = namespaceOrDefault(namespace, kind);
    requireParamName('name', name, kind);
    const obj = this.table.get(info.kind, ns, name);
    if (!obj) throw notFound(info.kind, ns, name);
    return structuredClone(obj);
  }

  async list(kind: string, opts: ListOptions = {}): Promise<ObjectList> {
    const list = await this.listForResponse(kind, opts);
    return { ...list, items: list.items.map((o) => structuredClone(o)) };
  }

  // Controllers list whole kinds on every reconcile: copying each object only to serialize
  // it was most of the API server's time under load (a profile of applies of 100 services).
  async listForResponse(kind: string, opts: ListOptions = {}): Promise<ObjectList> {
    this.assertOpen();
    const info = requireKind(kind);
    if (opts.namespace !== undefined) requireParamName('namespace', opts.namespace, kind);
    const matches = compileSelectors(opts);
    return {
      apiVersion: API_VERSION,
      kind: `${info.kind}List`,
      metadata: { resourceVersion: this.resourceVersion },
      items: this.table.list(info.kind, opts.namespace).filter(matches),
    };
  }

  watch(kind: string, opts: WatchOptions = {}): Watch {
    this.assertOpen();
    const info = requireKind(kind);
    if (opts.namespace !== undefined) requireParamName('namespace', opts.namespace, kind);
    const matches = compileSelectors(opts);
    const from = opts.resourceVersion;
    if (from !== undefined && from !== '' && !RESOURCE_VERSION_PATTERN.test(from)) {
      throw new ApiError('BadRequest', `watch of ${info.kind}: resourceVersion ${JSON.stringify(from)} is not a decimal string`);
    }
    const initial = from === undefined || from === '' || from === '0';
    // From "0" the snapshot covers everything committed so far; from N, everything after N
    // (a version ahead of the store waits for it, rather than replaying what came before).
    const afterVersion = initial ? this.sequencer.committedVersion : Number(from);
    const watch = new StoreWatch(info.kind, opts.namespace, matches, afterVersion, (w) => this.watchers.get(info.kind)?.delete(w));
    if (initial) {
      for (const obj of this.table.list(info.kind, opts.namespace)) watch.offerInitial(obj);
    } else {
      const changes = this.history.since(Number(from));
      if (!changes) {
        watch.push(goneEvent(Number(from), this.history.floor));
        watch.finish();
        return watch;
      }
      for (const change of changes) watch.offer(change);
    }
    let set = this.watchers.get(info.kind);
    if (!set) this.watchers.set(info.kind, (set = new Set()));
    set.add(watch);
    return watch;
  }

  /** Watches of `kind` still open: a client that went away must not leave one behind. */
  openWatchCount(kind: string): number {
    return this.watchers.get(kind)?.size ?? 0;
  }

  // --- writes -----------------------------------------------------------------------------

  async create(input: ApiObject, opts: WriteOptions = {}): Promise<ApiObject> {
    this.assertOpen();
    const w = this.prepareCreate(input);
    return (await this.mutate(w.info, w.namespace, w.name, opts, w.decide))!;
  }

  async update(input: ApiObject, opts: WriteOptions = {}): Promise<ApiObject> {
    this.assertOpen();
    const w = this.prepareUpdate(input);
    return (await this.mutate(w.info, w.namespace, w.name, opts, w.decide))!;
  }

  private prepareCreate(input: ApiObject): PreparedWrite {
    const obj = toJsonObject(input) as unknown as ApiObject;
    const { info, namespace, name } = checkObject(obj);
    if (obj.metadata.resourceVersion !== undefined) {
      // Kubernetes: "resourceVersion should not be set on objects to be created".
      throw new ApiError('BadRequest', `${info.kind} "${namespace}/${name}": resourceVersion should not be set on objects to be created`, {
        kind: info.kind,
        name,
      });
    }
    const decide = (current: ApiObject | undefined): Decision => {
      if (current) throw alreadyExists(info.kind, namespace, name);
      const metadata = dropUndefined({
        ...obj.metadata,
        namespace,
        uid: randomUUID(),
        creationTimestamp: nowTimestamp(),
        generation: 1,
        deletionTimestamp: undefined,
      });
      const object: ApiObject = { ...obj, apiVersion: API_VERSION, metadata };
      // Status is written only through the status subresource; on create it is dropped,
      // as for Kubernetes resources with a status subresource.
      if (info.hasStatus) delete object.status;
      return { type: 'write', event: 'ADDED', object };
    };
    return { info, namespace, name, decide };
  }

  private prepareUpdate(input: ApiObject, rebase?: BatchWrite['rebase']): PreparedWrite {
    const sent = toJsonObject(input) as unknown as ApiObject;
    const { info, namespace, name } = checkObject(sent);
    const decide = (current: ApiObject | undefined): Decision => {
      if (!current) throw notFound(info.kind, namespace, name);
      const obj = rebase ? rebased(rebase, current, { info, namespace, name }) : sent;
      if (!obj) return { type: 'unchanged', object: current };
      checkPreconditions(current, obj.metadata, info);
      const system = current.metadata;
      const specChanged = info.hasStatus && !jsonEqual(obj.spec, current.spec);
      const next: ApiObject = {
        ...obj,
        apiVersion: API_VERSION,
        metadata: dropUndefined({
          ...obj.metadata,
          namespace,
          name,
          // System-owned fields keep their stored values, whatever the client sent.
          uid: system.uid,
          creationTimestamp: system.creationTimestamp,
          deletionTimestamp: system.deletionTimestamp,
          generation: (system.generation ?? 1) + (specChanged ? 1 : 0),
          resourceVersion: system.resourceVersion,
        }),
      };
      if (info.hasStatus) {
        if (current.status === undefined) delete next.status;
        else next.status = current.status;
      }
      rejectNewFinalizersWhileDeleting(current, next, info);
      if (next.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) return { type: 'remove', object: next };
      if (sameObjectIgnoringVersion(next, current)) return { type: 'unchanged', object: current };
      return { type: 'write', event: 'MODIFIED', object: next };
    };
    return { info, namespace, name, decide };
  }

  async writeBatch(writes: readonly BatchWrite[], opts: WriteOptions = {}): Promise<BatchResult> {
    this.assertOpen();
    this.assertWritable();
    const prepared = writes.map((w) => attempt(() => (w.verb === 'create' ? this.prepareCreate(w.object) : this.prepareUpdate(w.object, w.rebase))));
    refuseRepeatedObjects(prepared);
    const keys = prepared.flatMap((p) => (p.ok ? [refKey({ kind: p.value.info.kind, namespace: p.value.namespace, name: p.value.name })] : []));
    // The caller is answered as soon as the batch is committed (its log record durable, its
    // objects in memory and sent to watchers).
    let answer!: (result: BatchResult) => void;
    const committed = new Promise<BatchResult>((resolve) => (answer = resolve));
    const run = runWithAll(this.locks, keys, () => this.decideAndPersistBatch(prepared, opts, answer));
    this.inflight.add(run);
    // Bookkeeping only: a failure reaches the caller through `run`.
    const forget = () => this.inflight.delete(run);
    run.then(forget, forget);
    return Promise.race([committed, run]);
  }

  /** Runs under the locks of every object of the batch. */
  private async decideAndPersistBatch(prepared: readonly Attempt<PreparedWrite>[], opts: WriteOptions, onCommitted: (result: BatchResult) => void): Promise<BatchResult> {
    const decided = prepared.map((p): Attempt<{ write: PreparedWrite; decision: Decision; stored?: ApiObject }> => {
      if (!p.ok) return p;
      const { info, namespace, name, decide } = p.value;
      const stored = this.table.get(info.kind, namespace, name);
      return attempt(() => ({ write: p.value, decision: decide(stored && structuredClone(stored)), stored }));
    });
    const outcomeOf = (d: (typeof decided)[number]): BatchOutcome => {
      if (!d.ok) return { ok: false, error: d.error };
      return { ok: true, object: structuredClone(d.value.decision.object ?? d.value.stored!) };
    };
    if (opts.dryRun || decided.some((d) => !d.ok)) return { written: false, outcomes: decided.map(outcomeOf) };
    const changes: BatchChange[] = [];
    for (const d of decided) {
      if (!d.ok || d.value.decision.type === 'unchanged') continue;
      const { info, namespace, name } = d.value.write;
      changes.push({ info, ref: { kind: info.kind, namespace, name }, decision: d.value.decision, previous: d.value.stored });
    }
    const result = (): BatchResult => ({ written: true, outcomes: decided.map(outcomeOf) });
    await this.persistBatch(changes, () => onCommitted(result()));
    return result();
  }

  async updateStatus(input: ApiObject, opts: WriteOptions = {}): Promise<ApiObject> {
    this.assertOpen();
    const obj = toJsonObject(input) as unknown as ApiObject;
    const { info, namespace, name } = checkObject(obj);
    if (!info.hasStatus) throw new ApiError('MethodNotAllowed', `${info.kind} has no status subresource`, { kind: info.kind, name });
    const updated = await this.mutate(info, namespace, name, opts, (current) => {
      if (!current) throw notFound(info.kind, namespace, name);
      checkPreconditions(current, obj.metadata, info);
      const next = structuredClone(current);
      if (obj.status === undefined) delete next.status;
      else next.status = obj.status;
      if (sameObjectIgnoringVersion(next, current)) return { type: 'unchanged', object: current };
      return { type: 'write', event: 'MODIFIED', object: next };
    });
    return updated!;
  }

  async delete(
    kind: string,
    namespace: string | undefined,
    name: string,
    opts: WriteOptions & { preconditionUid?: string; propagationPolicy?: 'Background' | 'Orphan' } = {},
  ): Promise<ApiObject> {
    this.assertOpen();
    const info = requireKind(kind);
    const ns = namespaceOrDefault(namespace, kind);
    requireParamName('name', name, kind);
    const policy = opts.propagationPolicy ?? 'Background';
    if (policy !== 'Background' && policy !== 'Orphan') {
      throw new ApiError('BadRequest', `propagationPolicy ${JSON.stringify(policy)} is not supported (Background or Orphan)`, { kind, name });
    }
    let preconditionUid = opts.preconditionUid;
    if (policy === 'Orphan' && !opts.dryRun) {
      const owner = this.table.get(info.kind, ns, name);
      if (!owner) throw notFound(info.kind, ns, name);
      preconditionUid ??= owner.metadata.uid;
      // Orphaning first means a crash in between leaves the owner and free dependents, never
      // dependents that the next open would collect.
      await this.orphanDependents(preconditionUid!);
    }
    const deleted = await this.mutate(info, ns, name, opts, (current) => {
      if (!current) throw notFound(info.kind, ns, name);
      if (preconditionUid !== undefined && preconditionUid !== current.metadata.uid) {
        throw conflict(info.kind, ns, name, `Precondition failed: UID in precondition: ${preconditionUid}, UID in object meta: ${current.metadata.uid}`);
      }
      return deletionDecision(current);
    });
    return deleted!;
  }

  /** Resolves when background garbage collection has nothing left to do. */
  async waitForGarbageCollection(): Promise<void> {
    while (this.gcRunner) await this.gcRunner;
  }

  /** Waits for writes in flight, ends every watch and releases the directory. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.shutdown();
    }
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    await this.waitForGarbageCollection();
    for (const set of this.watchers.values()) for (const w of [...set]) w.finish();
    this.watchers.clear();
    clearTimeout(this.checkpointTimer);
    await this.checkpointing;
    // A clean close leaves no log behind; a failed checkpoint leaves it to the next open.
    if (!this.brokenBy) await this.checkpoint();
    await this.wal.close();
    await this.releaseLock();
  }

  // --- the write path ---------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ApiError('ServiceUnavailable', `store ${this.dir} is closed`);
  }

  private assertWritable(): void {
    if (this.brokenBy) {
      throw new ApiError('InternalError', `store ${this.dir} stopped accepting writes after a failed disk write: ${this.brokenBy.message}`);
    }
  }

  private mutate(
    info: KindInfo,
    namespace: string,
    name: string,
    opts: WriteOptions,
    decide: (current: ApiObject | undefined) => Decision,
  ): Promise<ApiObject | undefined> {
    this.assertWritable();
    const ref: ObjectRef = { kind: info.kind, namespace, name };
    const run = this.locks.run(refKey(ref), async () => {
      const stored = this.table.get(info.kind, namespace, name);
      const decision = decide(stored && structuredClone(stored));
      if (decision.type === 'unchanged') return decision.object && structuredClone(decision.object);
      // A dry run has passed every check the real write makes; it stops short of the disk.
      if (opts.dryRun) return structuredClone(decision.object);
      await this.persist(info, ref, decision, stored);
      return structuredClone(decision.object);
    });
    this.inflight.add(run);
    // Bookkeeping only: the outcome, error included, reaches the caller through `run`.
    const forget = () => this.inflight.delete(run);
    run.then(forget, forget);
    return run;
  }

  private async persist(info: KindInfo, ref: ObjectRef, decision: Change, previous: ApiObject | undefined): Promise<void> {
    return this.persistBatch([{ info, ref, decision, previous }], () => undefined);
  }

  /**
   * Persists the changes of a write or a batch as one log record (a record is whole or
   * absent after a crash, so a batch is atomic); `onCommitted` runs once they are durable
   * and visible.
   */
  private async persistBatch(changes: readonly BatchChange[], onCommitted: () => void): Promise<void> {
    if (changes.length === 0) {
      onCommitted();
      return;
    }
    this.assertWritable();
    const versions = changes.map((c) => {
      const version = this.sequencer.allocate();
      c.decision.object.metadata.resourceVersion = String(version);
      return version;
    });
    try {
      await this.ceiling.cover(versions[versions.length - 1]);
      await this.wal.append(changes.map(journalEntry));
    } catch (err) {
      for (const version of versions) this.sequencer.abandon(version);
      // A failed append may have reached the disk in part: like an uncertain fsync, that
      // ends writing until a restart, whose open replays what the log holds.
      this.brokenBy ??= err as Error;
      throw err;
    }
    await Promise.all(
      changes.map((c, i) => this.sequencer.commit(versions[i], () => this.apply(changeEvent(c.info, c.ref, c.decision, versions[i], c.previous)))),
    );
    onCommitted();
    this.scheduleCheckpoint();
  }

  // --- checkpoints ------------------------------------------------------------------------

  private scheduleCheckpoint(): void {
    if (this.checkpointTimer || this.checkpointing || this.closed) return;
    this.checkpointTimer = setTimeout(
      () => {
        this.checkpointTimer = undefined;
        this.checkpointing = this.checkpoint().finally(() => {
          this.checkpointing = undefined;
          // Writes made during the checkpoint are in the new segment: they need one too.
          if (this.wal.size > 0) this.scheduleCheckpoint();
        });
      },
      this.wal.size >= CHECKPOINT_BYTES ? 0 : CHECKPOINT_DELAY_MS,
    );
    // A process that ends without close() leaves the log to the next open's replay.
    this.checkpointTimer.unref();
  }

  /** Writes out what the sealed log segments hold, durably, then removes them. Never rejects. */
  private async checkpoint(): Promise<void> {
    try {
      if (this.wal.size > 0) this.sealed.push(await this.wal.seal());
      if (this.sealed.length === 0) return;
      await writeOut(this.dir, newestWrites(this.sealed.map((sealed) => sealed.latest)), this.syncer, this.directories);
      await this.wal.remove(this.sealed.map((sealed) => sealed.segment));
      this.sealed = [];
    } catch (err) {
      // The log still holds every write: the next checkpoint, or the next open, retries.
      const error = new Error(`store: checkpoint of the write-ahead log failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      if (this.opts.onBackgroundError) this.opts.onBackgroundError(error);
      else process.emitWarning(error);
    }
  }

  /** Makes a durable change visible: memory, history, watchers, then garbage collection. */
  private apply(change: ChangeEvent): void {
    const ref: ObjectRef = { kind: change.kind, namespace: change.namespace, name: change.object.metadata.name };
    if (change.type === 'DELETED') this.table.remove(ref);
    else this.table.put(change.object);
    this.history.append(change);
    for (const w of this.watchers.get(change.kind) ?? []) w.offer(change);
    if (change.type === 'DELETED') {
      for (const dependent of this.table.dependentsOf(change.object.metadata.uid!)) this.enqueueCollection(dependent);
    } else if (this.danglingOwners(change.object).length > 0) {
      this.enqueueCollection(ref);
    }
  }

  // --- garbage collection -----------------------------------------------------------------

  private danglingOwners(obj: ApiObject): OwnerReference[] {
    return (obj.metadata.ownerReferences ?? []).filter((o) => !this.table.ownerExists(o.uid, obj.metadata.namespace!));
  }

  /** Queues every object with an owner reference for a check; used on open. */
  collectOrphans(): void {
    for (const obj of this.table.all()) {
      if (this.danglingOwners(obj).length > 0) {
        this.enqueueCollection({ kind: obj.kind, namespace: obj.metadata.namespace!, name: obj.metadata.name });
      }
    }
  }

  private enqueueCollection(ref: ObjectRef): void {
    this.gcQueue.set(refKey(ref), ref);
    this.startCollector();
  }

  private startCollector(): void {
    // Once closing, what is left is finished by the next open's orphan pass.
    if (this.gcRunner || this.closed) return;
    this.gcRunner = this.drainCollectionQueue().finally(() => {
      this.gcRunner = undefined;
      // Work queued between the last batch and this callback must not be stranded.
      if (this.gcQueue.size > 0) this.startCollector();
    });
  }

  private async drainCollectionQueue(): Promise<void> {
    while (this.gcQueue.size > 0 && !this.closed) {
      const batch = [...this.gcQueue.values()].slice(0, GC_BATCH);
      for (const ref of batch) this.gcQueue.delete(refKey(ref));
      await Promise.all(batch.map((ref) => this.collect(ref).then(undefined, (err: unknown) => this.reportBackgroundError(ref, err))));
    }
  }

  /**
   * Kubernetes' garbage collector (attemptToDeleteItem): an object none of whose owners
   * exist any more is deleted through the normal path (its own finalizers hold it; its own
   * dependents follow); one that still has some owner only loses the dangling references.
   */
  private async collect(ref: ObjectRef): Promise<void> {
    await this.mutate(requireKind(ref.kind), ref.namespace, ref.name, {}, (current) => {
      if (!current) return { type: 'unchanged' };
      const owners = current.metadata.ownerReferences ?? [];
      const dangling = new Set(this.danglingOwners(current).map((o) => o.uid));
      if (dangling.size === 0) return { type: 'unchanged' };
      if (owners.every((o) => dangling.has(o.uid))) return deletionDecision(current);
      current.metadata.ownerReferences = owners.filter((o) => !dangling.has(o.uid));
      return { type: 'write', event: 'MODIFIED', object: current };
    });
  }

  private async orphanDependents(ownerUid: string): Promise<void> {
    const dependents = this.table.dependentsOf(ownerUid);
    await Promise.all(
      dependents.map((ref) =>
        this.mutate(requireKind(ref.kind), ref.namespace, ref.name, {}, (current) => {
          const owners = current?.metadata.ownerReferences ?? [];
          if (!current || !owners.some((o) => o.uid === ownerUid)) return { type: 'unchanged' };
          const remaining = owners.filter((o) => o.uid !== ownerUid);
          if (remaining.length > 0) current.metadata.ownerReferences = remaining;
          else delete current.metadata.ownerReferences;
          return { type: 'write', event: 'MODIFIED', object: current };
        }),
      ),
    );
  }

  private reportBackgroundError(ref: ObjectRef, err: unknown): void {
    const error = new Error(`store: garbage collection of ${ref.kind} ${ref.namespace}/${ref.name} failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
    if (this.opts.onBackgroundError) this.opts.onBackgroundError(error);
    else process.emitWarning(error);
  }
}

/** The last write of each object file among `records`, in their order: what the disk must end up holding. */
function newestWrites(records: readonly (readonly JournalEntry[])[]): JournalEntry[] {
  const newest = new Map<string, JournalEntry>();
  for (const record of records) for (const e of record) newest.set(e.path, e);
  return [...newest.values()];
}

/** Makes `entries` (one per object file) durable in the object files, some at a time. */
async function writeOut(dir: string, entries: readonly JournalEntry[], syncer: DirectorySyncer, directories: DirectoryMaker): Promise<void> {
  for (let i = 0; i < entries.length; i += CHECKPOINT_CONCURRENCY) {
    await Promise.all(entries.slice(i, i + CHECKPOINT_CONCURRENCY).map((e) => redo(dir, e, syncer, directories)));
  }
}

/**
 * Opens (creating if needed) the store in opts.dir: takes its lock, removes temporary files
 * of interrupted writes, writes out what the write-ahead log holds, loads every object, and collects dependents whose owners are gone
 * (a crash between an owner's removal and its dependents' must not leave them forever).
 */
export async function openStore(opts: StoreOptions): Promise<EmbeddedStore> {
  const dir = path.resolve(opts.dir);
  const syncer = new DirectorySyncer();
  const directories = new DirectoryMaker(syncer);
  await directories.ensure(dir);
  const releaseLock = await acquireStoreLock(dir);
  try {
    const entries = await readDirectory(dir);
    await removeTempFiles(dir, entries);
    // Before anything is loaded: a batch cut short by a crash (journals of older versions)
    // is completed, and what the write-ahead log holds is written out, in its order.
    await replayJournals(dir, entries, syncer, directories);
    const log = await readLog(dir, entries);
    await writeOut(dir, newestWrites(log.records), syncer, directories);
    const ceiling = await readStoreMeta(dir);
    const objectsDir = path.join(dir, OBJECTS_DIR);
    await directories.ensure(objectsDir);
    const objects = await loadObjects(objectsDir);
    const wal = await WriteAheadLog.create(dir, syncer, WriteAheadLog.newestSegment(log.segments));
    await wal.remove(log.segments);
    const store = new EmbeddedStore(dir, objects, ceiling, syncer, directories, wal, releaseLock, opts);
    store.collectOrphans();
    await store.waitForGarbageCollection();
    return store;
  } catch (err) {
    await releaseLock();
    throw err;
  }
}
