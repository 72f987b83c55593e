// The contract of the embedded store. The API server is its only writer in the daemon;
// unit tests use it directly. Semantics follow the Kubernetes API server over etcd.
import type { ApiError } from '../api/errors';
import type { ApiObject, ObjectList, WatchEvent } from '../api/meta';

export interface ListOptions {
  /** Omit for all namespaces. Ignored for cluster-scoped kinds. */
  namespace?: string;
  /** Kubernetes label selector syntax: "app=web,tier!=db,env in (a,b),!legacy,has". */
  labelSelector?: string;
  /** Only `metadata.name=X` / `metadata.namespace=X` / `involvedObject.name=X` style equality. */
  fieldSelector?: string;
}

export interface WatchOptions extends ListOptions {
  /** Deliver every change after this resourceVersion ("0" or omitted: start with ADDED for all current objects). */
  resourceVersion?: string;
}

export interface Watch {
  /** Async iteration of events; ends when stop() is called or the store closes. */
  [Symbol.asyncIterator](): AsyncIterator<WatchEvent>;
  stop(): void;
}

/** dryRun: run every check and compute the result, persist nothing (Kubernetes' dryRun=All). */
export interface WriteOptions {
  dryRun?: boolean;
}

/** One write of a batch, with exactly the rules of create() or update(). */
export interface BatchWrite {
  verb: 'create' | 'update';
  /** The object to write; for an update with `rebase`, it names the object (kind, namespace, name). */
  object: ApiObject;
  /**
   * Update only: computes the object to write from the stored one, under the batch's locks,
   * so that a write made since the caller read the object is built upon instead of being
   * refused as a Conflict (the tryUpdate function of Kubernetes' storage GuaranteedUpdate).
   * Returns undefined to leave the object as it is. A thrown ApiError refuses the write.
   */
  rebase?: (stored: ApiObject) => ApiObject | undefined;
}

/** What one write of a batch made (or, when the batch was refused or a dry run, would make). */
export type BatchOutcome = { ok: true; object: ApiObject } | { ok: false; error: ApiError };

export interface BatchResult {
  /** False when any write was refused (then nothing was written) or on a dry run. */
  written: boolean;
  /** One per write, in order. */
  outcomes: BatchOutcome[];
}

export interface Store {
  /** Current store-wide resourceVersion. */
  readonly resourceVersion: string;

  get(kind: string, namespace: string | undefined, name: string): Promise<ApiObject>;
  list(kind: string, opts?: ListOptions): Promise<ObjectList>;
  /**
   * As list, but the items are the store's own objects, not copies: for a caller that only
   * serializes them (the API server's list response). The store never changes an object
   * in place (a write puts a new one in its table), so they stay what they were; a caller
   * must not change them either.
   */
  listForResponse(kind: string, opts?: ListOptions): Promise<ObjectList>;

  /** Validates, assigns uid/creationTimestamp/generation=1/resourceVersion. 409 AlreadyExists. */
  create(obj: ApiObject, opts?: WriteOptions): Promise<ApiObject>;
  /**
   * Replaces spec+metadata (status is kept as stored: the /status subresource writes it).
   * If obj.metadata.resourceVersion is set and stale → 409 Conflict.
   * generation increments only when spec changed. Clearing the last finalizer of an object
   * with deletionTimestamp removes it.
   */
  update(obj: ApiObject, opts?: WriteOptions): Promise<ApiObject>;
  /** Replaces only status (same resourceVersion precondition rules). */
  updateStatus(obj: ApiObject, opts?: WriteOptions): Promise<ApiObject>;
  /**
   * Without finalizers: removes now (and emits DELETED). With finalizers: sets
   * deletionTimestamp once and returns the object. Dependents (ownerReferences with this
   * uid) are garbage-collected in the background (propagationPolicy Background).
   */
  delete(
    kind: string,
    namespace: string | undefined,
    name: string,
    opts?: WriteOptions & { preconditionUid?: string; propagationPolicy?: 'Background' | 'Orphan' },
  ): Promise<ApiObject>;

  /**
   * All or nothing: every write is checked, under the locks of all its objects, before any
   * is made; when one is refused nothing is written and every refusal is reported. On disk
   * the batch is atomic as a whole: a crash leaves all of it or none of it.
   */
  writeBatch(writes: readonly BatchWrite[], opts?: WriteOptions): Promise<BatchResult>;

  watch(kind: string, opts?: WatchOptions): Watch;

  close(): Promise<void>;
}
