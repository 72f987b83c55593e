// The typed face of the REST API for TypeScript users and for the CLI.
// `client.containers.list({ namespace: 'shop' })`, `client.for('Volume').get('shop', 'data')`.
import type { ApiObject, ObjectList, WatchEvent } from '../api/meta';
import type { ListOptions, WatchOptions } from '../store/types';

export type PatchType = 'json' | 'merge';

export interface ResourceClient<T extends ApiObject = ApiObject> {
  readonly kind: string;
  list(opts?: ListOptions): Promise<ObjectList<T>>;
  get(namespace: string | undefined, name: string): Promise<T>;
  create(obj: T): Promise<T>;
  update(obj: T): Promise<T>;
  updateStatus(obj: T): Promise<T>;
  /** json = RFC 6902 operations array; merge = RFC 7386 document. */
  patch(namespace: string | undefined, name: string, type: PatchType, body: unknown, opts?: { subresource?: 'status' }): Promise<T>;
  delete(namespace: string | undefined, name: string, opts?: { propagationPolicy?: 'Background' | 'Orphan' }): Promise<T>;
  /** Create if missing, else update spec/labels/annotations keeping status (client-side apply). */
  apply(obj: T): Promise<{ object: T; action: 'created' | 'configured' | 'unchanged' }>;
  /** Streamed watch; iterate until stop(). */
  watch(opts?: WatchOptions): AsyncIterable<WatchEvent<T>> & { stop(): void };
}
