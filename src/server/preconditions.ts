// Checks the server makes before handing a write to the store, and the spec/status split
// of the /status subresource.
import { conflict } from '../api/errors';
import type { ApiObject } from '../api/meta';

/**
 * Checks an update's preconditions against the live object: a stale resourceVersion or a
 * different uid means the writer is working from another version of the object (409).
 */
export function checkUpdatePreconditions(live: ApiObject, desired: ApiObject): void {
  const { namespace, name } = live.metadata;
  const wanted = desired.metadata.resourceVersion;
  if (wanted !== undefined && wanted !== '' && wanted !== live.metadata.resourceVersion) {
    throw conflict(
      live.kind,
      namespace,
      name,
      `the object has been modified; please apply your changes to the latest version and try again (resourceVersion ${wanted} is not the current ${live.metadata.resourceVersion})`,
    );
  }
  const uid = desired.metadata.uid;
  if (uid !== undefined && uid !== '' && uid !== live.metadata.uid) {
    throw conflict(live.kind, namespace, name, `Precondition failed: UID in object meta: ${uid}, UID of the stored object: ${live.metadata.uid}`);
  }
}

/** `obj` with the status of `source` (absent if `source` has none). */
export function withStatusOf(obj: ApiObject, source: ApiObject): ApiObject {
  const { status: _dropped, ...rest } = obj;
  return source.status === undefined ? rest : { ...rest, status: source.status };
}
