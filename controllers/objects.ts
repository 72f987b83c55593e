// The two reads and writes every reconciler of a kind starts with: its object, if it still
// exists, and its finalizer, added before anything is made outside the API.
import { isApiError } from '../src/api/errors';
import type { ApiObject } from '../src/api/meta';
import type { ResourceClient } from '../src/client/types';

/** The object, or undefined when the API has none by that name (NotFound); other errors are thrown. */
export async function getIfExists<T extends ApiObject>(client: ResourceClient, namespace: string, name: string): Promise<T | undefined> {
  try {
    return (await client.get(namespace, name)) as T;
  } catch (error) {
    if (isApiError(error, 'NotFound')) return undefined;
    throw error;
  }
}

/**
 * The object with `finalizer` among its finalizers, written when it was missing.
 * Kubernetes adds a finalizer before creating anything outside the API, so that no
 * deletion can race past a half-made resource.
 */
export async function ensureFinalizer<T extends ApiObject>(client: ResourceClient, obj: T, finalizer: string): Promise<T> {
  const finalizers = obj.metadata.finalizers ?? [];
  if (finalizers.includes(finalizer)) return obj;
  return (await client.update({ ...obj, metadata: { ...obj.metadata, finalizers: [...finalizers, finalizer] } })) as T;
}
