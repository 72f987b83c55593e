// The contract of the embedded store. The API server is its only writer in the daemon;
// unit tests use it directly. Semantics follow the Kubernetes API server over etcd.
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

export interface Store {
  /** Current store-wide resourceVersion. */
  readonly resourceVersion: string;

  get(kind: string, namespace: string | undefined, name: string): Promise<ApiObject>;
  list(kind: string, opts?: ListOptions): Promise<ObjectList>;

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

  watch(kind: string, opts?: WatchOptions): Watch;

  close(): Promise<void>;
}
