// The typed face of the REST API for TypeScript users and for the CLI.
// `client.containers.list({ namespace: 'shop' })`, `client.for('Volume').get('shop', 'data')`.
import type { ApiError } from '../api/errors';
import type { ApiObject, ObjectList, WatchEvent } from '../api/meta';
import type { Build, Container, EventObject, Image, KindMap, KindName, Network, Service, Volume } from '../api/types';
import type { ListOptions, WatchOptions } from '../store/types';

export type PatchType = 'json' | 'merge';

/** dryRun: the server validates and answers with the result, but persists nothing (dryRun=All). */
export interface WriteOptions {
  dryRun?: boolean;
}

export interface DeleteOptions extends WriteOptions {
  propagationPolicy?: 'Background' | 'Orphan';
  /** Delete only if the stored object still has this uid (409 otherwise). */
  preconditionUid?: string;
  /** Delete only if the stored object is still at this resourceVersion (409 otherwise). */
  preconditionResourceVersion?: string;
}

export interface ClientWatchOptions extends WatchOptions {
  /** Ask the server to end the stream after this many seconds (Kubernetes' timeoutSeconds). */
  timeoutSeconds?: number;
}

export interface ResourceClient<T extends ApiObject = ApiObject> {
  readonly kind: string;
  list(opts?: ListOptions): Promise<ObjectList<T>>;
  get(namespace: string | undefined, name: string): Promise<T>;
  create(obj: T, opts?: WriteOptions): Promise<T>;
  update(obj: T, opts?: WriteOptions): Promise<T>;
  updateStatus(obj: T, opts?: WriteOptions): Promise<T>;
  /** json = RFC 6902 operations array; merge = RFC 7386 document. */
  patch(
    namespace: string | undefined,
    name: string,
    type: PatchType,
    body: unknown,
    opts?: { subresource?: 'status' } & WriteOptions,
  ): Promise<T>;
  delete(namespace: string | undefined, name: string, opts?: DeleteOptions): Promise<T>;
  /** Create if missing, else update spec/labels/annotations keeping status (client-side apply). */
  apply(obj: T, opts?: WriteOptions): Promise<{ object: T; action: 'created' | 'configured' | 'unchanged' }>;
  /**
   * Streamed watch; iterate until stop(). Errors the server reports in-band (410 Gone when
   * the resourceVersion is too old) arrive as { type: 'ERROR', object: Status }, as in
   * Kubernetes; a broken connection throws. The iteration ends after stop() or when the
   * server ends the stream.
   */
  watch(opts?: ClientWatchOptions): AsyncIterable<WatchEvent<T>> & { stop(): void };
}

/** One entry of the discovery document (Kubernetes APIResource). */
export interface ApiResource {
  name: string;
  singularName: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
  shortNames?: string[];
}

/** GET /apis/d2p.dev/v1alpha1 (Kubernetes APIResourceList). */
export interface ApiResourceList {
  kind: 'APIResourceList';
  apiVersion: 'v1';
  groupVersion: string;
  resources: ApiResource[];
}

/** One object of applyAll: what apply did (or would do), or why the server refused it. */
export type ApplyAllItem<T extends ApiObject = ApiObject> =
  | { ok: true; action: 'created' | 'configured' | 'unchanged'; object: T }
  | { ok: false; error: ApiError };

export interface ApplyAllResult {
  /** True when every object was accepted and (not on a dry run) all of them are stored. */
  written: boolean;
  /** One per object, in the order given. */
  items: ApplyAllItem[];
}

export interface Client {
  readonly socketPath: string;
  /** By kind ("Volume"), plural ("volumes") or short name ("vol"); typed when given the kind. */
  for<K extends KindName>(kind: K): ResourceClient<KindMap[K]>;
  for<T extends ApiObject = ApiObject>(kind: string): ResourceClient<T>;
  readonly images: ResourceClient<Image>;
  readonly builds: ResourceClient<Build>;
  readonly volumes: ResourceClient<Volume>;
  readonly networks: ResourceClient<Network>;
  readonly containers: ResourceClient<Container>;
  readonly services: ResourceClient<Service>;
  readonly events: ResourceClient<EventObject>;
  /**
   * Applies every object (any kinds, any namespaces) in one request, all or nothing: the
   * server checks all of them before it writes any, and writes them atomically. A refused
   * object is an item with ok: false (then nothing was written), not a thrown error; a
   * request the server cannot evaluate at all throws.
   */
  applyAll(objects: readonly ApiObject[], opts?: WriteOptions): Promise<ApplyAllResult>;
  discovery(): Promise<ApiResourceList>;
  /** Resolves when the daemon answers GET /healthz with 200; throws otherwise. */
  healthz(): Promise<void>;
  /** Stops open watches and closes the connections. Idempotent. */
  close(): Promise<void>;
}
